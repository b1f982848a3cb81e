"""The HTTP API channel against a real ledger and a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentbridge.channels.http_api import HttpApiChannel, register_channels
from agentbridge.channels.http_auth import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from agentbridge.config import ConfigError, parse_config
from agentbridge.plugin.protocols import Channel
from agentbridge.testing import async_wait_until
from agentbridge.testing.bridge import ContractBridge, complete_next, contract_bridge

SECRET = b"s3cret-s3cret-s3cret"


@dataclass
class Api:
    """A started channel and a client session pointed at it."""

    channel: HttpApiChannel
    bridge: ContractBridge
    session: aiohttp.ClientSession
    token: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.channel.port}"

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    async def post(self, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(
            self.base + "/v1/messages", data=data, headers=self.auth(**headers)
        ) as r:
            return r.status, await r.json()

    async def get(self, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.base + path, headers=self.auth(**headers)) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    secret_file = tmp_path / "hmac.secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o600)
    channel = HttpApiChannel(
        {"port": 0, "hmac_secret_file": str(secret_file), "max_body_bytes": 4096}
    )
    async with contract_bridge("http", tmp_path) as bridge:
        await channel.start(bridge.ctx)
        token = (tmp_path / "http-api.token").read_text().strip()
        async with aiohttp.ClientSession() as session:
            yield Api(channel, bridge, session, token)
        await channel.stop()


async def test_token_file_is_generated_private(api: Api, tmp_path: Path) -> None:
    mode = stat.S_IMODE((tmp_path / "http-api.token").stat().st_mode)
    assert mode == 0o600 and len(api.token) >= 32
    assert api.channel.url == f"http://127.0.0.1:{api.channel.port}/v1/messages"


async def test_post_answers_after_the_commit(api: Api) -> None:
    status, body = await api.post({"text": "hello", "conversation": "ci"})
    assert status == 202 and body["state"] == "queued" and body["created"] is True
    msg = await api.bridge.ledger.get(body["id"])  # the 202 means it is already durable
    assert (msg.channel, msg.conversation, msg.sender, msg.text) == ("http", "ci", "http", "hello")


async def test_idempotency_key_header_and_body(api: Api) -> None:
    first = await api.post({"text": "once"}, **{"Idempotency-Key": "k1"})
    again = await api.post({"text": "once"}, **{"Idempotency-Key": "k1"})
    assert first[0] == again[0] == 202
    assert first[1]["id"] == again[1]["id"] and again[1]["created"] is False
    status, body = await api.post({"text": "other"}, **{"Idempotency-Key": "k1"})
    assert status == 409 and "k1" in body["error"]
    by_body = await api.post({"text": "once", "key": "k1"})
    assert by_body[1]["id"] == first[1]["id"]
    status, body = await api.post({"text": "x", "key": "a"}, **{"Idempotency-Key": "b"})
    assert status == 400 and "differ" in body["error"]
    assert len(await api.bridge.ledger.list_messages(channel="http")) == 1


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"conversation": "c"}, "'text'"),
        ({"text": "  "}, "'text'"),
        ({"text": "hi", "colour": "red"}, "unknown field 'colour'"),
        ({"text": "hi", "sender": 5}, "'sender'"),
    ],
)
async def test_bad_bodies_get_one_clear_line(api: Api, body: Any, needle: str) -> None:
    status, answer = await api.post(body)
    assert status == 400 and needle in answer["error"] and "\n" not in answer["error"]


async def test_lone_surrogates_are_stored_as_replacement_characters(api: Api) -> None:
    """A ``\\ud800`` escape is valid JSON but unstorable: U+FFFD, never a 5xx (every field)."""
    raw = b'{"text": "a\\ud800b", "conversation": "c\\udfff", "key": "k\\ud800"}'
    status, body = await api.post(raw)
    assert status == 202, body
    msg = await api.bridge.ledger.get(body["id"])
    assert (msg.text, msg.conversation) == ("a\ufffdb", "c\ufffd")
    # a sender name no credential allows is refused with one line, never a 5xx
    refused, answer = await api.post(b'{"text": "x", "sender": "s\\udcff"}')
    assert refused == 403 and "not allowed" in answer["error"] and "\n" not in answer["error"]
    again = await api.post(raw)  # a retry is the same message, not a new one or an error
    assert again[0] == 202 and again[1]["id"] == body["id"] and again[1]["created"] is False


async def test_invalid_utf8_body_is_one_clear_400(api: Api) -> None:
    status, answer = await api.post(b'{"text": "caf\xe9"}')
    assert status == 400 and "not valid UTF-8" in answer["error"] and "\n" not in answer["error"]
    assert await api.bridge.ledger.list_messages(channel="http") == []


async def test_credentials_are_required(api: Api) -> None:
    url = api.base + "/v1/messages"
    for headers, needle in [
        ({}, "missing credentials"),
        ({"Authorization": "Bearer wrong-token"}, "bad token"),
        ({"Authorization": f"Basic {api.token}"}, "Bearer"),
    ]:
        async with api.session.post(url, json={"text": "x"}, headers=headers) as r:
            assert r.status == 401 and needle in (await r.json())["error"]
    assert await api.bridge.ledger.list_messages(channel="http") == []


async def test_foreign_host_header_is_refused(api: Api) -> None:
    status, body = await api.post({"text": "x"}, Host="evil.example:8766")
    assert status == 403 and "Host" in body["error"]
    assert (await api.post({"text": "x"}, Host=f"localhost:{api.channel.port}"))[0] == 202


async def test_body_size_is_limited(api: Api) -> None:
    status, body = await api.post({"text": "x" * 5000})
    assert status == 413 and "4096" in body["error"]


async def test_hmac_signature_fresh_once_and_bound_to_the_request(api: Api) -> None:
    url = api.base + "/v1/messages"
    body = json.dumps({"text": "signed"}).encode()

    async def post(stamp: str, signature: str, data: bytes = body) -> tuple[int, str]:
        headers = {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp}
        async with api.session.post(url, data=data, headers=headers) as r:
            return r.status, (await r.json()).get("error", "")

    now = str(int(time.time()))
    good = sign(SECRET, now, "POST", "/v1/messages", body)
    assert (await post(now, good))[0] == 202
    status, reason = await post(now, good)
    assert status == 401 and reason.startswith("replayed signature")
    assert (await post(now, good, body + b" "))[1] == "bad signature"
    assert (await post(now, sign(SECRET, now, "POST", "/v1/other", body)))[1] == "bad signature"
    old = str(int(time.time()) - 3600)
    assert "window" in (await post(old, sign(SECRET, old, "POST", "/v1/messages", body)))[1]


async def test_get_unknown_or_foreign_message_is_404(api: Api) -> None:
    assert (await api.get("/v1/messages/999"))[0] == 404
    assert (await api.get("/v1/messages/abc"))[0] == 404
    other = await api.bridge.ledger.ingest("telegram", "c", "s", "private", agent="demo")
    status, body = await api.get(f"/v1/messages/{other.message.id}")
    assert status == 404 and body == {"error": "no such message"}


async def test_long_poll_wakes_on_completion(api: Api) -> None:
    _, posted = await api.post({"text": "question"})
    path = f"/v1/messages/{posted['id']}"
    status, now = await api.get(path)
    assert status == 200 and now["state"] == "queued" and now["final"] is False
    started = time.monotonic()
    poll = asyncio.create_task(api.get(path + "?wait=20"))
    await async_wait_until(
        lambda: asyncio.sleep(0, bool(api.channel._waiters)), what="the long-poll is waiting"
    )
    await complete_next(api.bridge.ledger, "the answer")
    status, done = await asyncio.wait_for(poll, 10)
    assert status == 200 and done["state"] == "completed" and done["reply"] == "the answer"
    assert time.monotonic() - started < 5, "the long-poll did not wake on the ledger change"
    assert api.channel._waiters == {}


async def test_long_poll_times_out_with_current_state(api: Api) -> None:
    _, posted = await api.post({"text": "nobody answers"})
    started = time.monotonic()
    status, body = await api.get(f"/v1/messages/{posted['id']}?wait=0.3")
    assert status == 200 and body["state"] == "queued"
    assert 0.25 <= time.monotonic() - started < 5
    assert (await api.get(f"/v1/messages/{posted['id']}?wait=soon"))[0] == 400


async def test_event_stream_until_final(api: Api) -> None:
    _, posted = await api.post({"text": "stream me"})
    url = f"{api.base}/v1/messages/{posted['id']}/events"
    states: list[str] = []
    limit = aiohttp.ClientTimeout(total=10)  # a stream that never closes fails, not hangs
    async with api.session.get(url, headers=api.auth(), timeout=limit) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        async for raw in r.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                states.append(json.loads(line[6:])["state"])
                if states == ["queued"]:
                    await complete_next(api.bridge.ledger, "streamed")
    assert states[0] == "queued" and states[-1] == "completed"


async def test_failed_ingest_is_not_received(api: Api) -> None:
    api.bridge.fail_ingest = True
    status, body = await api.post({"text": "lost?"})
    assert status == 503 and "NOT received" in body["error"]
    api.bridge.fail_ingest = False
    assert await api.bridge.ledger.list_messages(channel="http") == []


async def test_deliver_names_the_outbox_row(api: Api) -> None:
    _, posted = await api.post({"text": "q"})
    await complete_next(api.bridge.ledger, "r")
    item = await api.bridge.ledger.enqueue_reply("http", "default", "r", "k", posted["id"])
    assert await api.channel.deliver(item) == f"http-{item.id}"


async def test_stop_wakes_long_polls(api: Api) -> None:
    _, posted = await api.post({"text": "q"})
    poll = asyncio.create_task(api.get(f"/v1/messages/{posted['id']}?wait=60"))
    await async_wait_until(lambda: asyncio.sleep(0, bool(api.channel._waiters)))
    await api.channel.stop()
    status, body = await asyncio.wait_for(poll, 10)
    assert status == 200 and body["state"] == "queued"


async def test_world_readable_token_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 40)
    os.chmod(token, 0o644)
    channel = HttpApiChannel({"port": 0, "token_file": str(token)})
    async with contract_bridge("http", tmp_path) as bridge:
        with pytest.raises(ConfigError, match="chmod 600"):
            await channel.start(bridge.ctx)
        await channel.stop()


def test_registered_only_when_configured() -> None:
    found: list[Channel] = []
    register_channels(found.append, parse_config({}))
    assert found == []
    register_channels(found.append, parse_config({"channels": {"http": {"port": 9999}}}))
    assert [c.name for c in found] == ["http"]
    assert isinstance(found[0], HttpApiChannel) and found[0].settings.port == 9999


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"prot": 1}, "unknown key channels.http.'prot'"),
        ({"port": "80"}, "channels.http.port must be an integer"),
        ({"port": 70000}, "channels.http.port must be 0..65535"),
        ({"allowed_hosts": "x"}, "channels.http.allowed_hosts"),
    ],
)
def test_bad_config_names_the_key(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        register_channels(lambda c: None, parse_config({"channels": {"http": table}}))
    assert needle in str(info.value)


# ---------------------------------------------------------------------- senders per credential


def private(path: Path, content: str | bytes) -> str:
    """A credential file as a user would create it (mode 0600)."""
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    path.chmod(0o600)
    return str(path)


async def test_each_token_sends_only_as_its_senders(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ci_token, bob_token = "ci-" + "c" * 30, "bob-" + "b" * 30
    channel = HttpApiChannel(
        {
            "port": 0,
            "tokens": [
                {"token_file": private(tmp_path / "ci.token", ci_token), "senders": ["ci"]},
                {"token_file": private(tmp_path / "bob.token", bob_token), "senders": ["bob"]},
            ],
        }
    )
    async with contract_bridge("http", tmp_path) as bridge, aiohttp.ClientSession() as session:
        await channel.start(bridge.ctx)
        url = f"http://127.0.0.1:{channel.port}/v1/messages"

        async def post(token: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.post(url, json=body, headers=headers) as r:
                return r.status, await r.json()

        assert (await post(ci_token, {"text": "build done", "sender": "ci"}))[0] == 202
        assert (await post(bob_token, {"text": "hi"}))[0] == 202  # no sender: its own
        with caplog.at_level("WARNING", logger="agentbridge.channels.http_api"):
            status, body = await post(ci_token, {"text": "rm -rf /", "sender": "bob"})
        assert status == 403 and "'bob' is not allowed" in body["error"]
        assert "allowed: ci" in body["error"] and "\n" not in body["error"]
        assert "refused sender 'bob'" in caplog.text and "ci.token" in caplog.text
        assert ci_token not in caplog.text and bob_token not in caplog.text
        assert (await post(bob_token, {"text": "x", "sender": "ci"}))[0] == 403
        stored = await bridge.ledger.list_messages(channel="http")
        assert [(m.sender, m.text) for m in stored] == [("ci", "build done"), ("bob", "hi")]
        assert stored[0].meta["credential"].endswith("ci.token")
        await channel.stop()


async def test_a_token_without_senders_sends_only_as_http(api: Api) -> None:
    # today's configs (one token_file, or the generated token) keep working, as sender "http"
    status, body = await api.post({"text": "hi", "sender": "root"})
    assert status == 403 and "'root' is not allowed" in body["error"]
    assert (await api.post({"text": "hi", "sender": "http"}))[0] == 202
    assert [m.sender for m in await api.bridge.ledger.list_messages(channel="http")] == ["http"]


async def test_hmac_keys_are_bound_to_senders_too(tmp_path: Path) -> None:
    hook_key, other_key = b"k" * 24, b"o" * 24
    channel = HttpApiChannel(
        {
            "port": 0,
            "hmac_secret_file": private(tmp_path / "plain.key", other_key),
            "hmac_keys": [
                {"secret_file": private(tmp_path / "hook.key", hook_key), "senders": ["github"]}
            ],
        }
    )
    async with contract_bridge("http", tmp_path) as bridge, aiohttp.ClientSession() as session:
        await channel.start(bridge.ctx)

        async def post(secret: bytes, body: dict[str, Any]) -> int:
            data = json.dumps(body).encode()
            stamp = str(time.time())
            signature = sign(secret, stamp, "POST", "/v1/messages", data)
            headers = {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: stamp}
            url = f"http://127.0.0.1:{channel.port}/v1/messages"
            async with session.post(url, data=data, headers=headers) as r:
                return r.status

        assert await post(hook_key, {"text": "push", "sender": "github"}) == 202
        assert await post(hook_key, {"text": "push", "sender": "alice"}) == 403
        assert await post(other_key, {"text": "plain", "sender": "github"}) == 403
        assert await post(other_key, {"text": "plain"}) == 202
        stored = await bridge.ledger.list_messages(channel="http")
        assert [(m.sender, m.text) for m in stored] == [("github", "push"), ("http", "plain")]
        await channel.stop()


async def test_replayed_signature_is_refused_by_a_new_channel_on_the_same_ledger(
    tmp_path: Path,
) -> None:
    settings = {"port": 0, "hmac_secret_file": private(tmp_path / "h.key", SECRET)}
    data = json.dumps({"text": "once"}).encode()
    stamp = str(int(time.time()))
    headers = {
        SIGNATURE_HEADER: sign(SECRET, stamp, "POST", "/v1/messages", data),
        TIMESTAMP_HEADER: stamp,
    }
    statuses = []
    async with contract_bridge("http", tmp_path) as bridge, aiohttp.ClientSession() as session:
        for _ in range(2):  # the second channel has no memory of the first: only the ledger
            channel = HttpApiChannel(settings)
            await channel.start(bridge.ctx)
            url = f"http://127.0.0.1:{channel.port}/v1/messages"
            async with session.post(url, data=data, headers=headers) as r:
                statuses.append((r.status, (await r.json()).get("error", "")))
            await channel.stop()
        assert len(await bridge.ledger.list_messages(channel="http")) == 1
    assert statuses[0][0] == 202
    assert statuses[1][0] == 401 and statuses[1][1].startswith("replayed signature")


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"tokens": "x"}, "channels.http.tokens must be a list"),
        ({"tokens": [{"file": "x"}]}, "channels.http.tokens[0] must be"),
        ({"tokens": [{"token_file": "x", "senders": []}]}, "tokens[0].senders must be"),
        ({"tokens": [{"token_file": "x", "senders": "ci"}]}, "tokens[0].senders must be"),
        ({"hmac_keys": [{"senders": ["a"]}]}, "hmac_keys[0].secret_file must be a file path"),
    ],
)
def test_bad_credential_config_names_the_key(table: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        register_channels(lambda c: None, parse_config({"channels": {"http": table}}))
    assert needle in str(info.value) and "\n" not in str(info.value)


async def test_two_credentials_with_one_secret_are_refused(tmp_path: Path) -> None:
    same = "s" * 40
    tokens = [
        {"token_file": private(tmp_path / "a.token", same), "senders": ["a"]},
        {"token_file": private(tmp_path / "b.token", same), "senders": ["b"]},
    ]
    channel = HttpApiChannel({"port": 0, "tokens": tokens})
    async with contract_bridge("http", tmp_path) as bridge:
        with pytest.raises(ConfigError, match="two entries hold the same secret"):
            await channel.start(bridge.ctx)
        await channel.stop()
