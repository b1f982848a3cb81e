"""Victims after a session died: reconcile against the agent's own record, then replay.

Reconcile first: when the old transcript (or hook log) already shows a victim's turn completed
(the bridge died before recording it), record that completion and its reply instead of
replaying. When it shows the turn was interrupted (Esc in the pane: a deliberate stop), end it
``interrupted``, never replay it. Otherwise requeue the victim at the head of its conversation
with attempt + 1 (quarantined at the attempt limit, by the ledger).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentbridge.events import AgentEventKind
from agentbridge.kinds import ReceiptKind
from agentbridge.ledger.store import LedgerError, LedgerStore
from agentbridge.models import Message
from agentbridge.plugin.protocols import PromptLearner, RuntimeProfile
from agentbridge.states import MessageState
from agentbridge.supervisor.interrupts import INTERRUPTED_DETAIL

log = logging.getLogger(__name__)


@dataclass
class Evidence:
    """What the agent's own record says about bridge-injected turns: (id, attempt) → answer."""

    completed: dict[tuple[int, int], str] = field(default_factory=dict)
    recorded: set[tuple[int, int]] = field(default_factory=set)
    #: turns whose last word is an interrupt (a prompt recorded again after it reopens the turn)
    aborted: set[tuple[int, int]] = field(default_factory=set)
    corrupt_lines: int = 0


def read_evidence(
    profile: RuntimeProfile, transcript: Path | None, hook_log: Path | None
) -> Evidence:
    """Parse whole files with fresh parsers; unreadable files give no evidence, never raise."""
    evidence = Evidence()

    def take(events: list[object], ordered: bool = True) -> None:
        # in one file's order a prompt written again after an interrupt reopens the turn; the
        # hook log is read after the transcript, so its prompt records must not
        for event in events:
            env = getattr(event, "envelope", None)
            kind = getattr(event, "kind", None)
            if env is None:
                continue
            key = (env.message_id, env.attempt)
            if kind == AgentEventKind.TURN_COMPLETED:
                evidence.completed.setdefault(key, str(getattr(event, "text", "")))
            elif kind == AgentEventKind.PROMPT_RECORDED:
                evidence.recorded.add(key)
                if ordered:
                    evidence.aborted.discard(key)
            elif kind == AgentEventKind.TURN_ABORTED:
                evidence.aborted.add(key)

    hook_parser = profile.new_hook_parser() if hook_log is not None else None
    learner = hook_parser if isinstance(hook_parser, PromptLearner) else None
    if transcript is not None and transcript.exists():
        parser = profile.new_parser()
        try:
            with transcript.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if line.endswith("\n"):
                        events = parser.feed(line.rstrip("\n"))
                        take(list(events))
                        if learner is not None:  # the hook log is read next: nothing is held
                            for event in events:
                                learner.learn(event)
        except OSError as exc:
            log.warning("cannot read transcript %s for reconcile: %s", transcript, exc)
        evidence.corrupt_lines += parser.corrupt_lines
    if hook_parser is not None and hook_log is not None and hook_log.exists():
        try:
            with hook_log.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.endswith("\n"):
                        break  # a relay still writing its record (one write, not yet whole)
                    try:
                        record = json.loads(line)
                    except ValueError:
                        evidence.corrupt_lines += 1
                        continue
                    if isinstance(record, dict):
                        take(list(hook_parser.feed(record)), ordered=False)
        except OSError as exc:
            log.warning("cannot read hook log %s for reconcile: %s", hook_log, exc)
    return evidence


@dataclass(frozen=True)
class RecoveryReport:
    """What recovery did, for logs and ``status``."""

    reconciled: list[int]
    replayed: list[int]
    quarantined: list[int]
    interrupted: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        """For ``status`` (``last_recovery``)."""
        return asdict(self)


async def recover_victims(
    ledger: LedgerStore,
    victims: list[Message],
    evidence: Evidence,
    reason: str,
    receipts: Any = None,
    *,
    enforce_limit: bool = True,
) -> RecoveryReport:
    """Reconcile or replay each victim, in original order (``receipts`` tells the senders)."""
    reconciled: list[int] = []
    replayed: list[int] = []
    quarantined: list[int] = []
    interrupted: list[int] = []
    for victim in victims:
        key = (victim.id, victim.attempt)
        try:
            if key in evidence.aborted and key not in evidence.completed:
                moved = await ledger.interrupt(
                    victim.id,
                    victim.fence,
                    f"{INTERRUPTED_DETAIL} (seen in the transcript after the session ended)",
                    actor="reconcile",
                )
                interrupted.append(victim.id)
                log.info(
                    "message %s: the transcript shows it interrupted (not replayed)", victim.id
                )
                if receipts is not None:
                    receipts.emit(moved, ReceiptKind.INTERRUPTED, INTERRUPTED_DETAIL)
                continue
            if key in evidence.completed:
                await ledger.complete(
                    victim.id,
                    victim.fence,
                    evidence.completed[key],
                    actor="reconcile",
                    detail="the transcript shows the turn completed before the session ended",
                )
                reconciled.append(victim.id)
                log.info("message %s: reconciled from the transcript (not replayed)", victim.id)
                continue
            moved = await ledger.requeue_victim(
                victim.id, victim.fence, reason, enforce_limit=enforce_limit
            )
        except LedgerError as exc:
            log.warning("message %s: recovery refused: %s", victim.id, exc)
            continue
        if moved.state == MessageState.QUARANTINED:
            quarantined.append(victim.id)
            log.warning("message %s: quarantined: %s", victim.id, moved.reason)
            if receipts is not None:
                receipts.emit(victim, ReceiptKind.FAILED, "quarantined after repeated failures")
        else:
            replayed.append(victim.id)
            log.info(
                "message %s: requeued for replay as attempt %s (%s)",
                victim.id,
                moved.attempt,
                reason,
            )
    return RecoveryReport(reconciled, replayed, quarantined, interrupted)
