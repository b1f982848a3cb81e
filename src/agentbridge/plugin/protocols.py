"""The objects plugins register: channels and agent runtime profiles.

Pluggy never awaits, so hooks only *register* these objects; the bridge then calls their
methods (async where they do I/O) directly. These Protocols are the contract.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentbridge.kinds import ReceiptKind

if TYPE_CHECKING:
    from agentbridge.config import AgentConfig
    from agentbridge.events import AgentEvent, TranscriptParser
    from agentbridge.ledger.store import ChannelLedger, IngestResult
    from agentbridge.models import Message, OutboxItem


# --------------------------------------------------------------------------- channels


@dataclass(frozen=True)
class ChannelLimits:
    """What a platform accepts in one outgoing message; the relay chunks replies to fit."""

    max_message_length: int = 4000
    supports_formatting: bool = False
    #: the largest file a ``FileChannel`` uploads natively (0: the reply text names the file)
    max_file_bytes: int = 0


class ErrorClass(enum.StrEnum):
    """How the outbox relay treats a failed delivery (replies go out at most once)."""

    #: the platform provably did not act on the request (refused connection, DNS failure,
    #: 429 with retry_after, a 4xx it documents as not acted on): retried with backoff
    TRANSIENT = "transient"
    #: never retry (chat not found, bot blocked, bad request)
    PERMANENT = "permanent"
    #: the platform may have acted (timeout after the request went out, connection reset
    #: mid-response, a 5xx after the body was sent): never resent blindly; reconciled or
    #: surfaced to a human (the outbox row becomes ``unknown``)
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DeliveryError(Exception):
    """Raised by ``Channel.deliver``; ``retry_after`` (seconds) overrides the backoff schedule.

    ``error_class`` defaults to ``UNKNOWN``: say ``TRANSIENT`` only when the platform provably
    did not act on the request, or a retry may deliver the reply twice.
    """

    message: str
    error_class: ErrorClass = ErrorClass.UNKNOWN
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Reconciled:
    """What a channel found out about a reply part whose send ended ``unknown``.

    ``landed``: True, the platform has it (``platform_message_id`` if known); False, it
    provably never arrived (the relay sends it again); None, the platform cannot tell (the
    row stays ``unknown`` for a human).
    """

    landed: bool | None
    platform_message_id: str | None = None


@dataclass(frozen=True)
class Receipt:
    """What the sender sees of a message's progress (glossary: receipt)."""

    message_id: int
    channel: str
    conversation: str
    status: ReceiptKind  # a StrEnum: compares equal to its bare string ("waiting")
    detail: str = ""
    platform_message_id: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A file that came with an inbound message (photo, document, voice note).

    Give ``data`` (the bytes) or ``path`` (a file the channel downloaded; the bridge copies
    it); ``size`` when known lets an oversized file be refused before it is read.
    """

    name: str
    media_type: str = "application/octet-stream"
    data: bytes | None = None
    path: Path | None = None
    size: int | None = None


class AttachmentTooLarge(Exception):
    """Raised by ``ctx.ingest``: a file is over ``[attachments] max_bytes``; nothing is stored.

    ``str()`` is the refusal text for the sender."""


class Ingest(Protocol):
    """The bridge's ``ctx.ingest``: route, commit, return; the return is the ingress ack."""

    async def __call__(
        self,
        conversation: str,
        sender: str,
        text: str,
        key: str | None = None,
        meta: dict[str, Any] | None = None,
        priority: int = 0,
        agent: str | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> IngestResult:
        """Store one inbound message of this channel; ``agent`` skips routing (schedules).

        ``attachments`` are on disk under the agent's cwd (fsynced) before this returns, and
        the pasted text names them; an oversized one raises ``AttachmentTooLarge``.

        Idempotent on ``key`` (the platform's message id): a redelivery returns the stored row
        with ``created=False``; the same key with other text raises ``IdempotencyConflict``.
        """
        ...


StatusSnapshot = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class ChannelContext:
    """What the bridge hands a channel at start.

    ``ingest(conversation, sender, text, key=None, meta=None, priority=0)`` is the one way in:
    it routes to the right agent, commits, and returns an ``IngestResult``; only after it returns
    may the channel tell its platform "received". ``ledger`` is the part of the bridge's ledger a
    channel may use (``ChannelLedger``: message state, replies, ``events_since`` and
    ``on_change`` for live views, nonces, and a human's requeue or drop).
    ``status()`` returns the live snapshot ``agentbridge status --json`` prints.
    ``max_attachment_bytes`` is ``[attachments] max_bytes``: ``ingest`` refuses a larger file,
    so a channel refuses one before downloading it.
    """

    name: str
    config: dict[str, Any]
    ingest: Ingest
    state_dir: Path
    ledger: ChannelLedger | None = None
    status: StatusSnapshot | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    max_attachment_bytes: int = 20 * 1024 * 1024


@runtime_checkable
class Channel(Protocol):
    """A place messages come from and replies go to (web console, Telegram, scheduler…)."""

    name: str
    limits: ChannelLimits

    async def start(self, ctx: ChannelContext) -> None:
        """Begin receiving. Tell the platform "received" only after ``ctx.ingest`` returned."""

    async def stop(self) -> None:
        """Stop receiving and release resources; must be safe to call twice."""

    async def deliver(self, item: OutboxItem) -> str | None:
        """Send one reply chunk; return the platform message id. Raise ``DeliveryError``."""

    def classify_error(self, exc: BaseException) -> ErrorClass | None:
        """Transient (provably not acted on), permanent or unknown (may have been acted on)
        for ``exc`` from ``deliver``; None means the relay's built-in rules."""

    async def receipt(self, receipt: Receipt) -> None:
        """Show the sender a receipt (reaction, typing…); best effort, never raises."""


@runtime_checkable
class ReconcilingChannel(Protocol):
    """Optional: a channel that can look up whether a reply it sent landed on the platform."""

    async def reconcile(self, item: OutboxItem) -> Reconciled:
        """Did this part (``item.text``, index ``item.parts_sent``) reach the platform?

        Called by the relay for a part whose send ended ``unknown`` (right after, and at
        start for rows a dead bridge left); must not send anything. Raising = cannot tell.
        """


@dataclass(frozen=True)
class OutFile:
    """A file the relay hands a ``FileChannel``: checked (roots, size) and read already."""

    name: str
    data: bytes
    media_type: str = "application/octet-stream"
    caption: str = ""


@runtime_checkable
class FileChannel(Protocol):
    """Optional: a channel that uploads files (``agentbridge mcp``'s ``send_file``, a reply
    too long for ``[outbox] max_parts``) up to ``limits.max_file_bytes``."""

    async def deliver_file(self, item: OutboxItem, file: OutFile) -> str | None:
        """Upload ``file`` as the whole of ``item``; return the platform id or raise like
        ``deliver`` (an upload whose outcome is unknown must say ``UNKNOWN``)."""


@runtime_checkable
class FileReconcilingChannel(Protocol):
    """Optional, with ``FileChannel``: a channel that can look up an upload in doubt."""

    async def reconcile_file(self, item: OutboxItem, file: OutFile) -> Reconciled:
        """Did the upload of ``file`` (as ``item``'s whole) reach the platform?

        Like ``reconcile``: called for an upload that ended ``unknown`` (right after, and at
        start); must not send anything; raising = cannot tell. Match by ``file.name`` and
        ``file.caption``: ``file.data`` is empty when asked later (the bytes are not kept).
        """


@runtime_checkable
class EditingChannel(Protocol):
    """Optional: a channel that can change a message it sent (progress edits one in place)."""

    async def edit_message(self, message: Message, text: str, status_id: str | None) -> str:
        """Show ``text`` about ``message`` (in flight) in its conversation: post it when
        ``status_id`` is None, else replace that status message's text; return its id.
        Best effort, never retried: an error only costs this one update."""


# --------------------------------------------------------------------------- runtimes


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one agent CLI in its tmux session (never contains message text)."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    session_id: str | None = None
    hook_events: Path | None = None
    config_dir: Path | None = None
    #: the regex that says the screen is ready (the ``generic`` runtime), from the agent's config
    ready_pattern: str | None = None


class ScreenKind(enum.StrEnum):
    """What the pane shows, as far as a profile can read it (the weakest evidence we use)."""

    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    RATE_LIMITED = "rate_limited"
    CONTEXT_FULL = "context_full"
    API_ERROR = "api_error"
    LOGIN_REQUIRED = "login_required"
    PERMISSION_PROMPT = "permission_prompt"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ScreenState:
    """A reading of the screen; ``input_text`` is what sits in the input box (None: no box)."""

    kind: ScreenKind
    input_text: str | None = None
    detail: str = ""
    reset_at: str | None = None  # as printed by the CLI, e.g. "3:45pm"


class ErrorText(Protocol):
    """A CLI's words for its faults: what an API-error record's text names, when a limit ends."""

    def classify(self, text: str) -> tuple[ScreenKind, str | None]:
        """Rate limited (with the reset time as printed), context full, else API error."""

    def seconds_until_reset(self, reset_at: str | None) -> float | None:
        """Seconds until a reset time as the CLI prints it; None when unreadable."""


class HookParser(Protocol):
    """Stateful: maps hook records (``{"event", "payload"}``) to events of the right turn."""

    def feed(self, record: dict[str, Any]) -> list[AgentEvent]:
        """Events for one hook relay record; unknown records give an empty list."""


@runtime_checkable
class PromptLearner(Protocol):
    """A hook parser that also learns prompts from the transcript (optional): Claude's relay
    has no ``UserPromptSubmit`` hook (it costs every message ~20 ms before the model request,
    even async), so a ``Stop`` names its prompt only by id, and the transcript's prompt
    record says which envelope that id carries."""

    def learn(self, event: AgentEvent) -> list[AgentEvent]:
        """Take one transcript event; returns hook events it completes (held turn ends)."""


@runtime_checkable
class RuntimeProfile(Protocol):
    """How a kind of agent CLI is launched, injected into and read back."""

    name: str
    #: False for screen-only evidence (the ``generic`` profile): completion is weaker
    strong_completion: bool
    #: the longest message body (characters) pasted whole; longer ones go to a file in the
    #: agent's cwd (``inbox.py``). Measured per CLI by ``scripts/measure_paste_limit.py``;
    #: ``injection.spill_threshold`` in the config overrides it
    paste_limit: int

    @property
    def error_text(self) -> ErrorText:
        """The CLI's words for its faults (a class attribute will do); a profile without it
        gets the plain-words default, ``agentbridge.runtimes.errors.GENERIC``."""

    def prepare(self, agent: AgentConfig, state_dir: Path, resume: bool) -> LaunchSpec:
        """Seed config files and hooks (idempotent, merging) and say how to launch."""

    def transcript_path(self, spec: LaunchSpec, pane_pid: int | None) -> Path | None:
        """The transcript file the running CLI writes (it may not exist yet)."""

    def new_parser(self) -> TranscriptParser:
        """A fresh stateful parser for one transcript file."""

    def new_hook_parser(self) -> HookParser | None:
        """A fresh stateful parser of hook relay records, or None when hooks are not used."""

    def agent_status(self, spec: LaunchSpec, pane_pid: int | None) -> str | None:
        """The agent's own idle/busy/waiting state when it publishes one, else None."""

    def screen_state(self, screen: str, spec: LaunchSpec | None = None) -> ScreenState:
        """Read the screen: fallback evidence for readiness, idleness and known fault screens."""


__all__ = [
    "Attachment",
    "AttachmentTooLarge",
    "Channel",
    "ChannelContext",
    "ChannelLimits",
    "DeliveryError",
    "EditingChannel",
    "ErrorClass",
    "ErrorText",
    "FileChannel",
    "FileReconcilingChannel",
    "HookParser",
    "Ingest",
    "LaunchSpec",
    "OutFile",
    "Receipt",
    "ReceiptKind",
    "Reconciled",
    "ReconcilingChannel",
    "RuntimeProfile",
    "ScreenKind",
    "ScreenState",
    "StatusSnapshot",
]
