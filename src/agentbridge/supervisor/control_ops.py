"""The CLI's writes as control-socket requests: one write path, whoever runs it.

Each op checks its request's fields, calls the one ``LedgerStore`` method the supervisor
itself would use and answers the record as JSON. The running supervisor serves them on its
control socket; with none running, the CLI runs the very same ``run_op`` on the ledger it
opens itself. So both paths print the same lines and the same errors, and the CLI never
writes SQL. ``send`` and ``reply`` carry an idempotency key, so a request whose answer was
lost (the supervisor died mid-request) can be done again without a duplicate; the others
can not, and the CLI says so instead of guessing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agentbridge.config import Config
from agentbridge.crashpoints import crash_point
from agentbridge.ledger.store import LedgerError, LedgerStore, text_hash
from agentbridge.supervisor.commands import command_lane
from agentbridge.supervisor.control import Handler
from agentbridge.supervisor.fleet_commands import routed
from agentbridge.supervisor.permission_send import not_waiting

__all__ = ["IDEMPOTENT", "OPS", "BadRequest", "handlers", "retry_safe", "run_op"]

log = logging.getLogger(__name__)

Op = Callable[[LedgerStore, Config, dict[str, Any]], Awaitable[dict[str, Any]]]
_MAX_ID = 2**63 - 1  # what SQLite can bind; beyond it a row cannot exist


class BadRequest(ValueError):
    """A request field is missing or of the wrong type (a bad client, not a ledger refusal)."""


def _text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"bad control request: {name!r} must be a string")
    return value


def _optional_text(request: dict[str, Any], name: str) -> str | None:
    return None if request.get(name) is None else _text(request, name)


def _int(request: dict[str, Any], name: str) -> int:
    value = request.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_ID:
        raise BadRequest(f"bad control request: {name!r} must be an integer")
    return value


async def _send(ledger: LedgerStore, config: Config, request: dict[str, Any]) -> dict[str, Any]:
    agent = _text(request, "agent")
    if agent not in config.agents:
        raise BadRequest(f"no agent named {agent!r} (configured: {', '.join(config.agents)})")
    channel, conversation = _text(request, "channel"), _text(request, "conversation")
    sender, text = _text(request, "sender"), _text(request, "text")
    if refusal := await not_waiting(ledger, channel, conversation, text):  # no relay here
        raise BadRequest(refusal)
    result = await ledger.ingest(
        channel,
        conversation,
        sender,
        text,
        key=_optional_text(request, "key"),
        **await routed(ledger, config, command_lane(text, agent)),  # a command: to a lane
        priority=_int(request, "priority") if "priority" in request else 0,
    )
    return {"message": result.message.to_json(), "created": result.created}


async def _reply(ledger: LedgerStore, config: Config, request: dict[str, Any]) -> dict[str, Any]:
    text, asked = _text(request, "text"), _optional_text(request, "key")
    message = await ledger.get(_int(request, "id"))
    key = f"agent-reply:{message.id}:{asked or text_hash(text)[:16]}"
    item = await ledger.enqueue_reply(
        message.channel,
        message.conversation,
        text,
        key,
        message_id=message.id,
        reply_to=message.platform_id,
    )
    return {"reply": item.to_json()}


async def _requeue(ledger: LedgerStore, config: Config, request: dict[str, Any]) -> dict[str, Any]:
    return {"message": (await ledger.requeue_quarantined(_int(request, "id"))).to_json()}


async def _drop(ledger: LedgerStore, config: Config, request: dict[str, Any]) -> dict[str, Any]:
    return {"message": (await ledger.drop(_int(request, "id"))).to_json()}


async def _landed(ledger: LedgerStore, config: Config, request: dict[str, Any]) -> dict[str, Any]:
    return {"reply": (await ledger.mark_landed(_int(request, "id"))).to_json()}


async def _resend(ledger: LedgerStore, config: Config, request: dict[str, Any]) -> dict[str, Any]:
    return {"reply": (await ledger.retry_reply(_int(request, "id"))).to_json()}


#: request name → op; each is one ledger method (``reply`` reads its message first)
OPS: dict[str, Op] = {
    "send": _send,
    "reply": _reply,
    "quarantine-requeue": _requeue,
    "quarantine-drop": _drop,
    "outbox-sent": _landed,
    "outbox-retry": _resend,
}
#: ops that may be done again after a lost answer: their key makes a repeat return the same row
IDEMPOTENT = frozenset({"send", "reply"})


def retry_safe(name: str, request: dict[str, Any]) -> bool:
    """May this request be done again when its answer was lost? (A ``send`` only with a key.)"""
    return name in IDEMPOTENT and (name != "send" or request.get("key") is not None)


async def run_op(
    ledger: LedgerStore, config: Config, name: str, request: dict[str, Any]
) -> dict[str, Any]:
    """``{"ok": True, <record>}`` or ``{"ok": False, "error": line, "error_kind": class}``.

    Ledger refusals (``NotFound``, ``IllegalTransition``, ``IdempotencyConflict``) and bad
    fields become answers; anything else is a bug and propagates (the socket server answers
    it as an error and keeps serving).
    """
    op = OPS.get(name)
    if op is None:
        return {"ok": False, "error": f"unknown write {name!r}", "error_kind": "BadRequest"}
    try:
        return {"ok": True, **(await op(ledger, config, request))}
    except (LedgerError, BadRequest) as exc:
        kind = next(c.__name__ for c in type(exc).__mro__ if not c.__name__.startswith("_"))
        return {"ok": False, "error": str(exc), "error_kind": kind}  # the public class's name


def handlers(ledger: LedgerStore, config: Config) -> dict[str, Handler]:
    """The control-socket handlers of every op (``Supervisor.startup`` registers them)."""

    def handler(name: str) -> Handler:
        async def handle(request: dict[str, Any]) -> dict[str, Any]:
            answer = await run_op(ledger, config, name, request)
            record = answer.get("message") or answer.get("reply") or {}
            log.info(
                "control: %s for the CLI: %s",
                name,
                f"#{record.get('id')} {record.get('state')}"
                if answer["ok"]
                else f"refused ({answer['error_kind']})",
            )
            if answer["ok"]:
                crash_point("after_control_write")
            return answer

        return handle

    return {name: handler(name) for name in OPS}
