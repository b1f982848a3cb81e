"""The channel contract for files: what a ``FileChannel`` (and a ``FileReconcilingChannel``)
must do, mixed into ``ChannelContract`` (a channel without ``deliver_file`` skips it).

An agent's file goes out through the real relay as one upload of the whole item (its bytes,
never its text as chunks); an upload whose answer was lost must be classified ``unknown``
(a retry could post it twice); ``reconcile_file`` must tell whether it landed and send
nothing while it looks. The harness reports what the platform received with
``sent_files()`` (``HarnessBase.sent_uploads``): a channel with a platform (``can_fail``)
that shows no upload fails here.
"""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path

import pytest

from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.delivery.classify import classify
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import ErrorClass, FileChannel, FileReconcilingChannel, OutFile
from agentbridge.states import OutboxState
from agentbridge.testing.bridge import ContractBridge
from agentbridge.testing.harness import ChannelHarness
from agentbridge.testing.relaying import running_relay, settled

__all__ = ["FileChannelContract"]

FILE_DATA = b"agentbridge contract file\n" * 40  # about 1 KB: under any platform's limit
CAPTION = "the contract's file"


class FileChannelContract:
    """Mixed into ``ChannelContract``: its ``harness`` and ``bridge`` fixtures drive these."""

    conversation = "contract-conversation"

    async def _file_item(
        self, bridge: ContractBridge, channel_name: str, path: Path, data: bytes
    ) -> OutboxItem:
        """What ``send_file`` queues for the agent's file at ``path`` (written here)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return await bridge.ledger.enqueue_reply(
            channel_name,
            self.conversation,
            file_text(path, len(data), CAPTION),
            key=f"{FILE_KEY_PREFIX}contract-{time.monotonic_ns()}",
        )

    @pytest.mark.asyncio
    async def test_a_file_goes_as_one_upload(
        self, harness: ChannelHarness, bridge: ContractBridge, tmp_path: Path
    ) -> None:
        """The real relay hands an agent's file to ``deliver_file`` once: the platform gets
        the bytes whole, in one upload, and never the item's text (a path) as a message."""
        channel = harness.channel
        if not isinstance(channel, FileChannel):
            pytest.skip("this channel does not implement FileChannel")
        cwd = tmp_path / "contract-agent"
        item = await self._file_item(bridge, channel.name, cwd / "contract.txt", FILE_DATA)
        async with running_relay(bridge.ledger, channel, cwds={"demo": cwd}):
            row = await settled(bridge.ledger, item.id)
        assert row.state is OutboxState.SENT, f"the file ended {row.state}: {row.last_error}"
        assert row.platform_message_id is None or isinstance(row.platform_message_id, str)
        assert all(str(cwd) not in text for text in harness.sent()), (
            "the item's text (the file's path) reached the platform: send the file instead"
        )
        if not harness.can_fail and not harness.sent_files():
            return  # no platform (the file is read from the ledger): nothing to count
        assert harness.sent_files() == [("contract.txt", FILE_DATA)], (
            "the platform did not get the file whole, exactly once (does the harness's"
            " sent_files() report what the platform received?)"
        )

    @pytest.mark.asyncio
    async def test_an_upload_in_doubt_is_unknown_and_looked_up_without_sending(
        self, harness: ChannelHarness, bridge: ContractBridge, tmp_path: Path
    ) -> None:
        """The platform takes the upload and the answer is lost: ``deliver_file`` must raise
        what the relay classifies ``unknown``. A ``FileReconcilingChannel`` then finds that
        upload (landed) and not one never made, sending nothing while it looks."""
        channel = harness.channel
        if not isinstance(channel, FileChannel):
            pytest.skip("this channel does not implement FileChannel")
        if not harness.can_fail:
            pytest.skip("this channel has no platform that can fail a delivery")
        cwd = tmp_path / "contract-agent"
        item = await self._file_item(bridge, channel.name, cwd / "doubt.txt", FILE_DATA)
        media_type = mimetypes.guess_type("doubt.txt")[0] or "application/octet-stream"
        harness.fail_deliveries(ErrorClass.UNKNOWN)
        try:
            await channel.deliver_file(item, OutFile("doubt.txt", FILE_DATA, media_type, CAPTION))
        except Exception as exc:
            got, _ = classify(exc, channel, None)
            assert got == ErrorClass.UNKNOWN, (
                f"an upload the platform took, whose answer was lost, was classified {got}:"
                " the relay would upload it again"
            )
        else:
            pytest.fail("deliver_file() returned although the platform's answer was lost")
        finally:
            harness.fail_deliveries(None)
        assert harness.sent_files().count(("doubt.txt", FILE_DATA)) == 1, (
            "fail_deliveries(ErrorClass.UNKNOWN) must let the platform take the upload, then"
            " lose the answer (and sent_files() report it)"
        )
        if not isinstance(channel, FileReconcilingChannel):
            return
        never = await self._file_item(bridge, channel.name, cwd / "never.txt", b"never sent")
        before = (harness.sent(), harness.sent_files())
        found = await channel.reconcile_file(item, OutFile("doubt.txt", b"", media_type, CAPTION))
        assert found.landed is True, "reconcile_file missed an upload the platform has"
        missing = await channel.reconcile_file(never, OutFile("never.txt", b"", "text/plain"))
        assert missing.landed is False, "reconcile_file found an upload that was never made"
        assert (harness.sent(), harness.sent_files()) == before, "reconcile_file sent something"
