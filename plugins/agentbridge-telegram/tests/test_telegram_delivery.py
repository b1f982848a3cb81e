"""Outbound: replies fit Telegram, fall back to plain text, and fail in ways the relay can use."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from agentbridge.ledger.sqlite import Ledger
from agentbridge.models import OutboxItem
from agentbridge.plugin.protocols import DeliveryError, ErrorClass, Receipt
from agentbridge.testing import async_wait_until
from telegram_helpers import ALICE, CHAT

from agentbridge_telegram.api import TelegramApiError, TelegramNetworkError, classify
from agentbridge_telegram.formatting import utf16_len
from agentbridge_telegram.sending import EMPTY_REPLY
from agentbridge_telegram.testing import FakeBotApi

_keys = iter(range(10**6))


async def reply(
    ledger: Ledger, text: str, reply_to: str | None = None, chat: int = CHAT
) -> OutboxItem:
    return await ledger.enqueue_reply(
        "telegram", str(chat), text, key=f"reply-{next(_keys)}", reply_to=reply_to
    )


async def test_deliver_replies_to_the_original_message(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    item = await reply(ledger, "done: <b> & co", reply_to=f"{CHAT}:77")
    platform_id = await channel.deliver(item)
    [sent] = fake.sent
    assert platform_id == str(sent.message_id)
    assert sent.chat_id == CHAT
    assert sent.reply_to == 77
    assert sent.parse_mode == "HTML"
    assert sent.visible == "done: <b> & co"  # escaped, so shown literally


async def test_code_fences_become_pre_blocks(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    await channel.deliver(await reply(ledger, "Run:\n```bash\necho '<hi>' && ls\n```\nand `x<y`"))
    [sent] = fake.sent
    assert (
        "<pre><code class=\"language-bash\">echo '&lt;hi&gt;' &amp;&amp; ls</code></pre>"
        in sent.text
    )
    assert "<code>x&lt;y</code>" in sent.text


async def test_long_reply_chunked_within_4096(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    words = " ".join(f"word{i}" for i in range(1800))  # ~ 10,000 chars
    text = (words[:5000] + "\n```python\n" + "x = 1\n" * 400 + "```\n" + words)[:10_000]
    assert len(text) == 10_000
    first = await channel.deliver(await reply(ledger, text, reply_to="5"))
    assert len(fake.sent) >= 3
    assert all(utf16_len(s.visible) <= 4096 for s in fake.sent)
    assert first == str(fake.sent[0].message_id)
    assert [s.reply_to for s in fake.sent] == [5] + [None] * (len(fake.sent) - 1)
    joined = "".join(s.visible for s in fake.sent)
    assert joined.replace("\n", "").replace(" ", "").count("x=1") == 400


async def test_emoji_counted_as_telegram_counts_them(fake, ledger, start_channel) -> None:
    channel = await start_channel(parse_mode="none")
    await channel.deliver(await reply(ledger, "😀" * 3000))  # 6000 UTF-16 units
    assert len(fake.sent) == 2
    assert "".join(s.text for s in fake.sent) == "😀" * 3000


async def test_empty_reply_still_tells_the_sender(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    assert await channel.deliver(await reply(ledger, ""))
    assert [s.visible for s in fake.sent] == [EMPTY_REPLY]


async def test_html_refused_falls_back_to_plain_text(fake, ledger, start_channel, caplog) -> None:
    caplog.set_level(logging.INFO)
    channel = await start_channel()
    fake.fail_next("parse")
    await channel.deliver(await reply(ledger, "**bold** and `code`"))
    [sent] = fake.sent
    assert sent.parse_mode is None
    assert sent.text == "**bold** and `code`"
    assert "sending plain text" in caplog.text


async def test_429_raises_retry_after(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    fake.fail_next("429")
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(await reply(ledger, "slow down"))
    assert caught.value.error_class is ErrorClass.TRANSIENT
    assert caught.value.retry_after == 7
    assert channel.classify_error(caught.value) is ErrorClass.TRANSIENT


async def test_retry_resumes_after_the_parts_already_sent(fake, ledger, start_channel) -> None:
    channel = await start_channel(parse_mode="none")
    item = await reply(ledger, "a" * 4000 + "\n" + "b" * 4000 + "\n" + "c" * 100)
    fake.fail_next("ok", "429")  # part 1 goes, part 2 is rate limited
    with pytest.raises(DeliveryError):
        await channel.deliver(item)
    assert len(fake.sent) == 1
    first = await channel.deliver(item)  # the relay's retry
    assert [s.text[0] for s in fake.sent] == ["a", "b", "c"]  # no duplicate of part 1
    assert first == str(fake.sent[0].message_id)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("blocked", ErrorClass.PERMANENT),
        ("kicked", ErrorClass.PERMANENT),
        ("deactivated", ErrorClass.PERMANENT),
        ("chat_not_found", ErrorClass.PERMANENT),
        ("chat_id_empty", ErrorClass.PERMANENT),
        ("429_now", ErrorClass.TRANSIENT),
        ("500", ErrorClass.UNKNOWN),  # Telegram may have posted it
        ("502", ErrorClass.UNKNOWN),
    ],
)
async def test_errors_classified(fake, ledger, start_channel, fault, expected) -> None:
    channel = await start_channel()
    fake.fail_next(fault)
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(await reply(ledger, "hi"))
    assert caught.value.error_class is expected
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_refused_connection_is_transient(fake, ledger, start_channel) -> None:
    """Nothing listening: the request never left, so a retry cannot double it."""
    channel = await start_channel()
    await fake.stop()
    with pytest.raises(DeliveryError) as caught:
        await channel.deliver(await reply(ledger, "anyone?"))
    assert caught.value.error_class is ErrorClass.TRANSIENT


def test_classify_table() -> None:
    def api(status: int, description: str, **params: Any) -> TelegramApiError:
        return TelegramApiError("sendMessage", status, description, params)

    assert (
        classify(api(403, "Forbidden: bot can't initiate conversation with a user")) == "permanent"
    )
    assert classify(api(400, "Bad Request: user not found")) is ErrorClass.PERMANENT
    assert classify(api(429, "Too Many Requests", retry_after=3)) is ErrorClass.TRANSIENT
    assert classify(api(401, "Unauthorized")) is ErrorClass.TRANSIENT  # fix the token, resend
    assert classify(api(409, "Conflict")) is ErrorClass.TRANSIENT
    assert classify(api(503, "Service Unavailable")) is ErrorClass.UNKNOWN
    assert classify(api(200, "unreadable answer (HTTP 200)")) is ErrorClass.UNKNOWN
    assert classify(TelegramNetworkError("refused")) is ErrorClass.TRANSIENT  # never left
    assert classify(TelegramNetworkError("reset", sent=True)) is ErrorClass.UNKNOWN
    assert classify(TimeoutError()) is ErrorClass.UNKNOWN
    assert classify(aiohttp.ServerDisconnectedError()) is ErrorClass.UNKNOWN
    assert classify(ValueError("not ours")) is None


async def test_group_migrated_to_supergroup_is_followed(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    fake.migrated_chats[-4] = -1004
    await channel.deliver(await reply(ledger, "moved?", chat=-4))
    assert [s.chat_id for s in fake.sent] == [-1004]


async def _received(fake: FakeBotApi, what: str, n: int = 1) -> None:
    async def check() -> bool:
        return len(getattr(fake, what)) >= n

    await async_wait_until(check, what=what)


async def test_receipts_react_on_the_original_message(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    update = fake.add_message(chat_id=CHAT, user_id=ALICE, text="work please")
    message_id = update["message"]["message_id"]

    async def stored() -> list[Any]:
        return list(await ledger.list_messages(channel="telegram"))

    [row] = await async_wait_until(stored, what="ingest")
    base = {"message_id": row.id, "channel": "telegram", "conversation": str(CHAT)}
    await channel.receipt(Receipt(status="working", **base))
    await _received(fake, "actions")
    assert fake.actions[0] == {"chat_id": str(CHAT), "action": "typing"}
    await channel.receipt(Receipt(status="replied", **base))
    await channel.receipt(Receipt(status="waiting", detail="rate-limited until 15:45", **base))
    await channel.receipt(Receipt(status="waiting", detail="rate-limited until 15:45", **base))
    emojis = [r["reaction"][0]["emoji"] for r in fake.reactions]
    assert emojis == ["👍", "😴", "😴"]
    assert {r["message_id"] for r in fake.reactions} == {message_id}
    assert [s.text for s in fake.sent] == ["⏳ rate-limited until 15:45"]  # once, quietly


async def test_receipt_after_restart_finds_the_message_in_the_ledger(
    fake, ledger, start_channel
) -> None:
    result = await ledger.ingest("telegram", str(CHAT), str(ALICE), "old", key=f"{CHAT}:4242")
    channel = await start_channel()
    await channel.receipt(
        Receipt(result.message.id, "telegram", str(CHAT), "failed", detail="agent crashed")
    )
    assert [(r["message_id"], r["reaction"][0]["emoji"]) for r in fake.reactions] == [(4242, "👎")]


async def test_receipt_never_raises(fake, ledger, start_channel) -> None:
    channel = await start_channel()
    await fake.stop()
    await channel.receipt(Receipt(1, "telegram", str(CHAT), "replied"))  # no row, no server
    await channel.receipt(Receipt(10**9, "telegram", "nonsense", "failed"))
