"""Control-socket handlers behind ``agentbridge mcp``: the agent's own tools, scoped to it.

Each request names the agent whose MCP server sent it. A call made while that agent has a
message in flight is correlated to it: ``reply`` answers that message's conversation (outbox
row with its ``message_id``) and the message's audit trail notes the call. Without one, the
call is *agent-initiated*: sent to the agent's default conversation (``[mcp] notify_channel`` /
``notify_conversation``, per agent under ``[mcp.agents.NAME]``), rate-limited (``[mcp]
rate_per_minute``, 10 by default) and marked by its key (``agent-initiated:``). ``notify`` is
always agent-initiated. Everything is an outbox row, so the relay's guarantees hold (written
ahead, at most once, retried, ``unknown`` never resent blindly). Files stay under the agent's
cwd and under ``[mcp] max_file_bytes``; the item shape is ``delivery/attachments.py``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentbridge.agent.socket_pointer import agent_pointer_dir, write_pointer
from agentbridge.config import Config, ConfigError
from agentbridge.delivery.attachments import FILE_KEY_PREFIX, file_text
from agentbridge.delivery.outfiles import bridge_private, name_problem
from agentbridge.ledger.store import LedgerStore, text_hash
from agentbridge.models import Message
from agentbridge.supervisor.control import Handler
from agentbridge.supervisor.control_ops import BadRequest

__all__ = ["INITIATED_PREFIX", "McpSettings", "handlers", "mcp_settings"]

log = logging.getLogger(__name__)

INITIATED_PREFIX = "agent-initiated:"  #: key prefix of every reply no message asked for
_MAX_TEXT = 64 * 1024


class _Worker(Protocol):
    """What these handlers read of a ``dispatcher.AgentWorker``: its message in flight."""

    @property
    def session(self) -> Any: ...


@dataclass(frozen=True)
class McpSettings:
    """``[mcp]`` for one agent: where its own messages go, how many, how large a file."""

    notify_channel: str | None = None
    notify_conversation: str | None = None
    rate_per_minute: int = 10
    max_file_bytes: int = 20 * 1024 * 1024


def mcp_settings(config: Config, agent: str) -> McpSettings:
    """The ``[mcp]`` table with ``[mcp.agents.<agent>]`` over it; a bad one → ``ConfigError``."""
    table = {k: v for k, v in config.mcp.items() if k != "agents"}
    per_agent = config.mcp.get("agents", {})
    if isinstance(per_agent, dict) and isinstance(per_agent.get(agent), dict):
        table.update(per_agent[agent])
    allowed = set(McpSettings.__dataclass_fields__)
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(
            f"config: unknown key(s) in [mcp]: {', '.join(sorted(unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    settings = McpSettings(**table)
    for name in ("rate_per_minute", "max_file_bytes"):  # 0 refused everything (or crashed)
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            own = isinstance(per_agent, dict) and name in (per_agent.get(agent) or {})
            key = f"mcp.agents.{agent}.{name}" if own else f"mcp.{name}"
            raise ConfigError(
                f"config: {key} must be an integer >= 1, not {value!r}: raise it, "
                "or delete the line for the default"
            )
    for name in ("notify_channel", "notify_conversation"):
        if not isinstance(getattr(settings, name), str | None):
            raise ConfigError(f"config: mcp.{name} must be a string")
    return settings


def _text(request: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = request.get(name, default)
    if not isinstance(value, str):
        raise BadRequest(f"bad mcp request: {name!r} must be a string")
    if len(value) > _MAX_TEXT:
        raise BadRequest(f"bad mcp request: {name!r} is over {_MAX_TEXT} characters")
    return value


class McpHandlers:
    """The ``mcp-*`` requests of every configured agent (one instance per supervisor)."""

    def __init__(self, ledger: LedgerStore, config: Config, workers: Mapping[str, _Worker]) -> None:
        self.ledger = ledger
        self.config = config
        self.workers = workers
        self._sent: dict[str, deque[float]] = {}
        for name in config.agents:  # a bad [mcp] table stops `up` now, not at a tool call
            mcp_settings(config, name)
        for name, worker in workers.items():  # tell each agent's MCP registration our socket
            _write_pointer(config, name, getattr(worker, "state_dir", None))

    def _agent(self, request: Mapping[str, Any]) -> str:
        agent = _text(request, "agent")
        if agent not in self.config.agents:
            raise BadRequest(f"no agent named {agent!r}")
        return agent

    def in_flight(self, agent: str) -> Message | None:
        """The message the agent is working on now (the dispatcher's session knows it)."""
        session = self.workers[agent].session if agent in self.workers else None
        flight = getattr(session, "current", None)
        return getattr(flight, "message", None)

    def _take_rate(self, agent: str, limit: int) -> None:
        """One more agent-initiated message in the last minute, or a refusal saying when."""
        window = self._sent.setdefault(agent, deque())
        now = time.monotonic()
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= limit:
            wait = 60 - (now - window[0])
            raise BadRequest(
                f"rate limit: {limit} agent-initiated messages per minute; retry in {wait:.0f}s"
            )
        window.append(now)

    async def _initiated(self, agent: str, text: str, kind: str) -> dict[str, Any]:
        settings = mcp_settings(self.config, agent)
        if not settings.notify_channel or not settings.notify_conversation:
            raise BadRequest(
                f"agent {agent} has no default conversation: set [mcp] notify_channel and "
                "notify_conversation (or [mcp.agents.NAME]) in the config"
            )
        self._take_rate(agent, settings.rate_per_minute)
        key = f"{kind}{INITIATED_PREFIX}{agent}:{secrets.token_hex(8)}"
        item = await self.ledger.enqueue_reply(
            settings.notify_channel, settings.notify_conversation, text, key
        )
        log.info("mcp: agent %s initiated outbox #%d (%s)", agent, item.id, kind or "message")
        flight = self.in_flight(agent)
        if flight is not None:  # not its reply, but the trail says it happened during it
            await self.ledger.note(
                flight.id, f"agent:{agent}", "mcp-notify", f"agent-initiated outbox #{item.id}"
            )
        return {"reply": item.to_json(), "initiated": True, "message_id": None}

    async def _correlated(
        self, agent: str, message: Message, text: str, kind: str
    ) -> dict[str, Any]:
        key = f"{kind}agent-mcp:{message.id}:{text_hash(text)[:16]}"
        item = await self.ledger.enqueue_reply(
            message.channel,
            message.conversation,
            text,
            key,
            message_id=message.id,
            reply_to=message.platform_id,
        )
        await self.ledger.note(
            message.id, f"agent:{agent}", "mcp-" + (kind.rstrip(":") or "reply"), f"#{item.id}"
        )
        return {"reply": item.to_json(), "initiated": False, "message_id": message.id}

    async def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer the conversation of the message in flight now; with none, agent-initiated."""
        agent, text = self._agent(request), _text(request, "text")
        if not text.strip():
            raise BadRequest("reply: the text is empty")
        message = self.in_flight(agent)
        if message is None:
            return await self._initiated(agent, text, "")
        return await self._correlated(agent, message, text, "")

    async def notify(self, request: dict[str, Any]) -> dict[str, Any]:
        """An agent-initiated message to the agent's default conversation."""
        agent, text = self._agent(request), _text(request, "text")
        if not text.strip():
            raise BadRequest("notify: the text is empty")
        return await self._initiated(agent, text, "")

    async def send_file(self, request: dict[str, Any]) -> dict[str, Any]:
        """A file under the agent's cwd, as an outbox item (``delivery/attachments.py``)."""
        agent = self._agent(request)
        cwd = self._cwd(agent)
        raw = _text(request, "path")
        if "\x00" in raw:  # Path() would raise a bare "embedded null byte"
            raise BadRequest("send_file: the path holds control characters")
        given = Path(raw)
        shown = raw if name_problem(raw) is None else ascii(raw)[1:-1]  # safe for any log
        try:
            path = (given if given.is_absolute() else cwd / given).resolve()
            if not path.is_relative_to(cwd):
                raise BadRequest(f"send_file: {shown} is outside the agent's directory {cwd}")
            if bridge_private(path, self.config.state_dir, [cwd]):
                raise BadRequest(f"send_file: {shown} is in the bridge's own state directory")
            if (problem := name_problem(str(path))) is not None:
                raise BadRequest(f"send_file: the path {problem}")
            if not path.is_file():
                raise BadRequest(f"send_file: {shown} is not a file")
            size = path.stat().st_size
        except OSError as exc:  # a name too long, a loop, no permission: one line, no crash
            raise BadRequest(f"send_file: {shown} cannot be read ({exc.strerror})") from None
        limit = mcp_settings(self.config, agent).max_file_bytes
        if size > limit:
            raise BadRequest(f"send_file: {shown} is {size} bytes, over the {limit}-byte limit")
        text = file_text(path, size, _text(request, "caption", ""))
        message = self.in_flight(agent)
        if message is None:
            return await self._initiated(agent, text, FILE_KEY_PREFIX)
        return await self._correlated(agent, message, text, FILE_KEY_PREFIX)

    def _cwd(self, agent: str) -> Path:
        session = getattr(self.workers.get(agent), "session", None)
        spec = getattr(session, "spec", None)
        cwd = getattr(spec, "cwd", None) or self.config.agents[agent].cwd
        if cwd is None:
            raise BadRequest(f"send_file: agent {agent} has no working directory yet")
        return Path(cwd).resolve()

    async def conversations(self, request: dict[str, Any]) -> dict[str, Any]:
        """The conversations that talked to this agent lately, newest first, and the default."""
        agent = self._agent(request)
        seen: dict[tuple[str, str], float] = {}
        for message in await self.ledger.list_messages(agent=agent, limit=500):
            seen[(message.channel, message.conversation)] = message.created_at
        flight = self.in_flight(agent)
        settings = mcp_settings(self.config, agent)
        rows = [
            {
                "channel": channel,
                "conversation": conversation,
                "last_message_at": at,
                "current": flight is not None
                and (flight.channel, flight.conversation) == (channel, conversation),
            }
            for (channel, conversation), at in sorted(seen.items(), key=lambda kv: -kv[1])
        ]
        default = None
        if settings.notify_channel and settings.notify_conversation:
            default = {
                "channel": settings.notify_channel,
                "conversation": settings.notify_conversation,
            }
        flight_id = flight.id if flight is not None else None
        return {"conversations": rows, "default": default, "in_flight_message": flight_id}


def _write_pointer(config: Config, agent: str, state_dir: Any) -> None:
    """``<agent state dir>/control-socket``: the socket path the agent's MCP registration
    reads (the runtime profile knows the state dir, not the supervisor's config)."""
    from agentbridge.supervisor.control import socket_path

    where = Path(state_dir) if state_dir else agent_pointer_dir(config.state_dir, agent)
    write_pointer(where, socket_path(config))


def handlers(
    ledger: LedgerStore, config: Config, workers: Mapping[str, _Worker]
) -> dict[str, Handler]:
    """The ``mcp-*`` control-socket handlers (``Supervisor.startup`` registers them)."""
    mcp = McpHandlers(ledger, config, workers)

    def guarded(name: str, method: Handler) -> Handler:
        async def handle(request: dict[str, Any]) -> dict[str, Any]:
            try:
                return await method(request)
            except (BadRequest, ConfigError) as exc:  # an answer for the agent, not a crash
                log.info("mcp: %s refused: %s", name, exc)
                return {"ok": False, "error": str(exc), "error_kind": "BadRequest"}

        return handle

    return {
        f"mcp-{name}": guarded(name, method)
        for name, method in {
            "reply": mcp.reply,
            "notify": mcp.notify,
            "send-file": mcp.send_file,
            "conversations": mcp.conversations,
        }.items()
    }
