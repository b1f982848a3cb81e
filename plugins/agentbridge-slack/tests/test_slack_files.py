"""Files: shared files come in through the core's attachment path; the agent's files go out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from agentbridge.agent import attachments as core_files
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.ledger.sqlite import Ledger
from agentbridge.plugin.protocols import OutFile
from agentbridge.states import OutboxState
from agentbridge.testing import async_wait_until
from agentbridge.testing.relaying import running_relay, settled
from slack_helpers import ALICE, CHAN, DM, ledger_ingest

from agentbridge_slack.files import FileRefused, fetch, file_refs
from agentbridge_slack.testing import BOT_TOKEN, Envelope, FakeSlack


async def acked(env: Envelope) -> None:
    async def check() -> bool:
        return bool(env.ack_times)

    await async_wait_until(check, timeout=10, what="the ack")


def last(fake: FakeSlack) -> Envelope:
    return list(fake.envelopes.values())[-1]


async def test_a_shared_file_without_text_is_a_message_with_its_file(
    fake: FakeSlack, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    cwd = tmp_path / "project"
    await start_channel(ingest=ledger_ingest(ledger, cwd=cwd))
    data = b"line one\n" * 1000
    shared = fake.add_file("notes.txt", data)
    fake.user_message(DM, ALICE, "", files=[shared])
    await acked(last(fake))
    [row] = await ledger.list_messages(channel="slack")
    assert (row.conversation, row.sender, row.text) == (DM, ALICE, "")
    [stored] = row.meta["attachments"]["files"]
    on_disk = core_files.dir_of(cwd, row.id) / stored["name"]
    assert on_disk.read_bytes() == data  # placed under the agent's cwd before the ack
    assert fake.downloads == [(shared["id"], f"Bearer {BOT_TOKEN}")]
    assert not list((tmp_path / "state" / "downloads").iterdir())  # scratch copy gone


async def test_too_large_or_foreign_files_are_refused_with_a_note(
    fake: FakeSlack, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    await start_channel(ingest=ledger_ingest(ledger, cwd=tmp_path / "p"), max_download_bytes=1000)
    big = fake.add_file("big.bin", b"x" * 10, size=5000)  # Slack says 5 kB: never fetched
    top = fake.user_message(CHAN, ALICE, "look", mention=True, files=[big])
    await acked(last(fake))
    liar = fake.add_file("liar.bin", b"y" * 5000, size=10)  # fetched, cut off at the cap
    fake.user_message(DM, ALICE, "and this", files=[liar])
    await acked(last(fake))
    elsewhere = dict(fake.add_file("x.txt", b"x"), url_private_download="http://10.9.9.9/x.txt")
    fake.user_message(DM, ALICE, "and that", files=[elsewhere])
    await acked(last(fake))
    assert await ledger.list_messages(channel="slack") == []
    assert [d[0] for d in fake.downloads] == [liar["id"]]  # the token went nowhere else

    async def noted() -> bool:
        return len(fake.posted) >= 3

    await async_wait_until(noted, timeout=10, what="three refusal notes")
    note = {
        name: next(p for p in fake.posted if name in p["text"]) for name in ("big", "liar", "x")
    }
    assert note["big"]["text"] == (
        "Not delivered: the file 'big.bin' is 5.0 kB; the limit is 1.0 kB per file."
    )
    assert (note["big"]["channel"], note["big"]["thread_ts"]) == (CHAN, top["ts"])  # its thread
    assert "'liar.bin' is 5.0 kB" in note["liar"]["text"] and note["liar"]["channel"] == DM
    assert "'x.txt' has no download link" in note["x"]["text"]


async def test_a_token_without_files_read_gets_a_clear_refusal(
    fake: FakeSlack, tmp_path: Path
) -> None:
    """Slack answers a download without a good token with its sign-in page and a 200."""
    [ref] = file_refs({"files": [fake.add_file("a.txt", b"a")]})
    hosts = frozenset({f"127.0.0.1:{fake.port}"})
    with pytest.raises(FileRefused, match="files:read"):
        async with fetch((ref,), "xoxb-no-scope", hosts, tmp_path, 1000, 5):
            pass
    async with fetch((ref,), BOT_TOKEN, hosts, tmp_path, 1000, 5) as [got]:
        assert got.path is not None and got.path.read_bytes() == b"a"
        assert (got.name, got.media_type, got.size) == ("a.txt", "text/plain", 1)
    assert not got.path.exists()  # the scratch copy is gone on exit


def work(tmp_path: Path) -> dict[str, Path]:
    """The agent's cwd: the relay sends files only from under it."""
    (tmp_path / "work").mkdir(exist_ok=True)
    return {"demo": tmp_path / "work"}


def text_for(path: Path, caption: str) -> str:
    return file_text(path, path.stat().st_size if path.exists() else 0, caption)


async def file_item(ledger: Ledger, path: Path, conversation: str, caption: str = "") -> Any:
    """What ``send_file`` queues (agent-initiated: no message in flight)."""
    key = f"{FILE_KEY_PREFIX}{time.monotonic_ns()}"
    return await ledger.enqueue_reply("slack", conversation, text_for(path, caption), key=key)


async def test_the_agents_file_is_uploaded_in_three_steps_through_the_relay(
    fake: FakeSlack, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel()
    cwds = work(tmp_path)
    report = cwds["demo"] / "report.csv"
    report.write_bytes(b"a,b\n1,2\n")
    async with running_relay(ledger, channel, cwds=cwds):
        item = await file_item(ledger, report, f"{CHAN}:1700.1", "the **numbers**")
        row = await settled(ledger, item.id)
    assert row.state is OutboxState.SENT
    [up] = fake.uploaded
    assert up["files"][0]["id"] == row.platform_message_id and up["data"] == [b"a,b\n1,2\n"]
    assert (up["channel"], up["thread_ts"], up["text"]) == (CHAN, "1700.1", "the *numbers*")
    steps = [c for c in fake.calls if c.startswith("files.")]
    assert steps == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    assert fake.posted == []  # no text message besides the file


@pytest.mark.parametrize("case", ["too_large", "gone"])
async def test_files_over_the_limit_or_gone_fail_for_good_with_a_note(
    fake: FakeSlack, ledger: Ledger, start_channel, tmp_path: Path, case: str
) -> None:
    channel = await start_channel(max_upload_bytes=100)
    assert channel.limits.max_file_bytes == 100
    cwds = work(tmp_path)
    path = cwds["demo"] / "dump.bin"
    path.write_bytes(b"z" * 500)
    item = await file_item(ledger, path, DM)
    if case == "gone":
        path.unlink()
    async with running_relay(ledger, channel, cwds=cwds):
        row = await settled(ledger, item.id)

        async def noted() -> bool:
            return len(fake.posted) == 1

        await async_wait_until(noted, timeout=10, what="the note to the user")
    assert row.state is OutboxState.FAILED
    want = "is 500 bytes, over slack's 100-byte limit" if case == "too_large" else "file gone"
    assert want in (row.last_error or "") and "dump.bin" in (row.last_error or "")
    [note] = fake.posted
    assert "dump.bin" in note["text"] and note["channel"] == DM
    assert "files.getUploadURLExternal" not in fake.calls


async def test_a_lost_answer_to_the_upload_is_reconciled_not_resent(
    fake: FakeSlack, ledger: Ledger, start_channel, tmp_path: Path
) -> None:
    channel = await start_channel()
    cwds = work(tmp_path)
    path = cwds["demo"] / "plot.png"
    path.write_bytes(b"\x89PNG" + b"0" * 100)
    fake.upload_faults.append("reset")  # posted, then the connection is cut
    async with running_relay(ledger, channel, cwds=cwds):
        item = await file_item(ledger, path, DM)
        row = await settled(ledger, item.id, (OutboxState.SENT, OutboxState.FAILED))
    assert row.state is OutboxState.SENT
    assert len(fake.uploaded) == 1, "uploaded twice"
    assert row.platform_message_id == fake.uploaded[0]["files"][0]["id"]
    details = [e.detail for e in await ledger.events_since(0) if e.outbox_id == item.id]
    assert details[-1] == "reconcile: it arrived", details
    other = cwds["demo"] / "other.txt"
    other.write_text("never sent")
    never = await file_item(ledger, other, DM)
    assert (await channel.reconcile_file(never, OutFile("other.txt", b""))).landed is False
