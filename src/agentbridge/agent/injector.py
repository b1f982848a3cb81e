"""Inject one message into an agent's input box, safely, and say what happened.

The recipe (measured on Claude Code and Codex, see the field notes): sanitize → bracketed paste
via a tmux buffer → wait until the text (or a ``[Pasted text #N …]`` placeholder) shows in the
input box → Enter as its own command, at once → verify acceptance from the agent's own record →
if not accepted and the text is still in the box, Enter again (never re-paste; an unconditional
second Enter costs ~400 ms per turn).

The first re-press may come early: when the whole screen is still exactly as it was before the
Enter ``retry_after`` later (the text in the box, no spinner, no redraw at all) the agent did not
react, so waiting out ``verify_timeout`` only delays the message. Any change on screen (the box
cleared, a newline, a busy line) means the full window. A second Enter can only submit what is in
the box, so even a mistaken early one never submits twice; later re-presses wait the full window.

Why Enter follows visibility and no fixed delay: Claude Code swallows an Enter that reaches it
while it is still taking in the paste (paste and Enter in one tmux command: 1 of 8 swallowed);
once the pasted text is drawn the paste is over, and an Enter right then was taken every time
(0 swallowed in 150+ sends on 2.1.197; Codex likewise). A fixed 100 ms guard cost every message
100 ms. A rare swallowed Enter is still caught by the verification and pressed again.

The injector never sends message text with send-keys and never pastes over text already in the
box (a human typing, or leftovers): then it returns ``box_not_empty`` and sends nothing. Nothing
is pasted either when the pane is dead (``pane_dead``) or shows no box (``box_not_found``).
``TmuxError`` propagates if tmux fails mid-way (e.g. the session was killed).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from agentbridge.agent.tmux import TmuxServer
from agentbridge.crashpoints import crash_point
from agentbridge.sanitize import sanitize_text

__all__ = [
    "AcceptSignal",
    "InjectionOutcome",
    "InjectionResult",
    "Injector",
    "InjectorConfig",
    "InputBoxReader",
    "text_visible",
]

#: Reads the input box from a captured screen: its text ("" = empty), or None = no box found.
#: Each runtime owns its reader (``RuntimeProfile.screen_state(...).input_text``): the injector
#: knows no CLI's screen.
InputBoxReader = Callable[[str], "str | None"]
#: The agent's own record of the prompt: an Event the caller sets, or an awaitable predicate.
AcceptSignal = asyncio.Event | Callable[[], Awaitable[bool]]

# Claude Code: "[Pasted text #2 +11 lines]"; Codex: "[Pasted Content 1234 chars]".
_PLACEHOLDER = re.compile(r"\[Pasted text #\d+(?: \+\d+ lines?)?\]|\[Pasted Content \d+ chars\]")
_WS = re.compile(r"\s+")


class InjectionOutcome(StrEnum):
    """How an injection ended."""

    #: The agent's own record (transcript / hook) shows the prompt.
    ACCEPTED = "accepted"
    #: The text left the input box after Enter but no record confirmed it in time.
    SUBMITTED_UNVERIFIED = "submitted_unverified"
    #: Text was already in the box: nothing pasted, nothing pressed. Wait and retry/report.
    BOX_NOT_EMPTY = "box_not_empty"
    #: No input box on screen (dialog, not ready): nothing pasted, nothing pressed.
    BOX_NOT_FOUND = "box_not_found"
    #: The pane's process has exited (or the pane is gone): nothing pasted, nothing pressed.
    PANE_DEAD = "pane_dead"
    #: Pasted, but the text never showed in the box: no Enter pressed; the box may hold text.
    PASTE_NOT_VISIBLE = "paste_not_visible"
    #: Every allowed Enter pressed, the text is still in the box and nothing accepted it.
    NOT_SUBMITTED = "not_submitted"


@dataclass(frozen=True)
class InjectorConfig:
    """Timing knobs, seconds."""

    #: wait after the text is visible, before Enter: none needed by the measured CLIs (the
    #: text being drawn proves the paste has ended); a knob for CLIs that need one
    settle: float = 0.0
    visible_timeout: float = 3.0  #: how long the pasted text may take to show
    verify_timeout: float = 1.0  #: per Enter: how long to wait for the agent's record
    #: the first re-press, when the screen has not changed at all since before the Enter
    retry_after: float = 0.3
    max_enters: int = 3  #: total Enter presses allowed
    poll_interval: float = 0.002  #: screen polling period (a capture costs ~0.3 ms in control mode)
    #: after an Enter, with an accept Event: how often the screen is read meanwhile (the Event
    #: itself ends the wait at once). The CLI builds its model request in those ms; a capture
    #: every 2 ms (tmux server, control client and our parse) took CPU from it on 2 cores.
    enter_poll_interval: float = 0.02


@dataclass(frozen=True)
class InjectionResult:
    """What the injector did; ``timings`` in ms from the start of :meth:`Injector.inject`."""

    outcome: InjectionOutcome
    enter_presses: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    box: str | None = None  #: last input-box text seen (for reports)

    @property
    def submitted(self) -> bool:
        """True when the prompt very likely reached the agent."""
        return self.outcome in (InjectionOutcome.ACCEPTED, InjectionOutcome.SUBMITTED_UNVERIFIED)


def _squash(text: str) -> str:
    return _WS.sub("", text)


def text_visible(box: str, text: str, tail: int = 40) -> bool:
    """True when ``box`` shows ``text``: its placeholder, or its last characters (whitespace-free).

    The tail is what matters: the app shows the end of a long paste only once it has all of it.
    Characters a terminal may render differently (emoji, combining marks) are compared loosely:
    if the text has no plain ASCII tail, any non-empty box counts.
    """
    if not box.strip():
        return False
    if _PLACEHOLDER.search(box):
        return True
    plain_box = "".join(c for c in _squash(box) if c.isascii())
    plain_text = "".join(c for c in _squash(text) if c.isascii())
    if not plain_text:
        return True
    return plain_text[-tail:] in plain_box


class Injector:
    """Injects messages into one pane; one injection at a time."""

    def __init__(
        self,
        tmux: TmuxServer,
        pane_id: str,
        input_box: InputBoxReader,
        config: InjectorConfig | None = None,
        escapes: bool = True,
    ) -> None:
        """``escapes``: hand ``input_box`` a ``capture-pane -e`` screen (attributes kept)."""
        self.tmux = tmux
        self.escapes = escapes
        self.pane_id = pane_id
        self.input_box = input_box
        self.config = config or InjectorConfig()
        self._lock = asyncio.Lock()

    async def read_box(self) -> str | None:
        """The input box's current text ("" = empty), None = no box on screen."""
        return self.input_box(await self.tmux.capture(self.pane_id, escapes=self.escapes))

    async def clear_box(self, max_presses: int = 3) -> bool:
        """Empty the input box with C-u (e.g. after ``paste_not_visible`` / ``not_submitted``).

        Only for text the bridge put there: a human's draft is theirs. True when the box is empty.
        """
        for _ in range(max_presses):
            box = await self._wait_box(lambda b: b == "", 0)
            if box == "":
                return True
            await self.tmux.send_key(self.pane_id, "C-u")
            box = await self._wait_box(lambda b: b == "", self.config.verify_timeout)
            if box == "":
                return True
        return False

    async def inject(self, text: str | bytes, accepted: AcceptSignal | None) -> InjectionResult:
        """Paste ``text`` (sanitized here) and submit it; see the module doc for the recipe.

        ``accepted`` is the agent's own record of the prompt; with None the injector can only
        tell that the text left the box (``submitted_unverified`` at best).
        """
        async with self._lock:
            return await self._inject(sanitize_text(text), accepted)

    async def _inject(self, clean: str, accepted: AcceptSignal | None) -> InjectionResult:
        cfg = self.config
        t0 = time.monotonic()
        timings: dict[str, float] = {}

        def mark(name: str) -> None:
            timings[name] = round((time.monotonic() - t0) * 1000, 2)

        if not clean.strip():
            raise ValueError("message is empty after sanitizing")
        if isinstance(accepted, asyncio.Event) and accepted.is_set():
            raise ValueError("accept event is already set: it must be fresh for this message")
        screen = await self.tmux.capture_if_alive(self.pane_id, self.escapes)
        mark("check")
        if screen is None:
            return InjectionResult(InjectionOutcome.PANE_DEAD, 0, timings, None)
        box = self.input_box(screen)
        if box is None:
            return InjectionResult(InjectionOutcome.BOX_NOT_FOUND, 0, timings, box)
        if box:
            return InjectionResult(InjectionOutcome.BOX_NOT_EMPTY, 0, timings, box)

        await self.tmux.load_and_paste(self.pane_id, clean)
        crash_point("after_paste")
        mark("paste")
        screen, box = await self._wait_screen(
            lambda b: b is not None and text_visible(b, clean), cfg.visible_timeout
        )
        if box is None or not text_visible(box, clean):
            mark("total")
            return InjectionResult(InjectionOutcome.PASTE_NOT_VISIBLE, 0, timings, box)
        mark("visible")
        if cfg.settle > 0:
            await asyncio.sleep(cfg.settle)
            screen = await self.tmux.capture(self.pane_id, escapes=self.escapes)

        presses = 0
        while True:
            # ``before`` (only the first press compares it): the screen that showed the text,
            # read just now, so no capture stands between visibility and the Enter. A redraw
            # after it only costs the early re-press (the full window applies), never a press.
            before = screen
            await self.tmux.send_enter(self.pane_id)
            crash_point("after_enter")
            presses += 1
            mark(f"enter{presses}")
            early = cfg.retry_after if presses == 1 else None
            taken, box = await self._after_enter(clean, accepted, before, early)
            if taken:
                mark("accepted")
                mark("total")
                return InjectionResult(InjectionOutcome.ACCEPTED, presses, timings, None)
            still_there = box is not None and text_visible(box, clean)
            if not still_there:
                break
            if presses >= cfg.max_enters:
                mark("total")
                return InjectionResult(InjectionOutcome.NOT_SUBMITTED, presses, timings, box)

        # The text left the box: give the record one more window before calling it unverified.
        if accepted is not None and await self._wait_accepted(accepted, cfg.verify_timeout):
            mark("accepted")
            mark("total")
            return InjectionResult(InjectionOutcome.ACCEPTED, presses, timings, box)
        mark("total")
        return InjectionResult(InjectionOutcome.SUBMITTED_UNVERIFIED, presses, timings, box)

    async def _after_enter(
        self, clean: str, accepted: AcceptSignal | None, before: str, early: float | None
    ) -> tuple[bool, str | None]:
        """(accepted, last box) once the record shows the prompt, the text left the box, the
        screen stayed exactly ``before`` for ``early`` seconds (no reaction), or at
        ``verify_timeout``. With a record, a text that left the box still waits for it."""
        start = time.monotonic()
        deadline = start + self.config.verify_timeout
        unchanged = early is not None
        event = accepted if isinstance(accepted, asyncio.Event) else None
        while True:
            if event is not None:  # unhurried screen reads; the Event ends the wait at once
                if await self._wait_accepted(event, self.config.enter_poll_interval):
                    return True, None
            elif accepted is not None and await self._accepted_now(accepted):
                return True, None
            screen = await self.tmux.capture(self.pane_id, escapes=self.escapes)
            box = self.input_box(screen)
            now = time.monotonic()
            if box is None or not text_visible(box, clean):
                if accepted is None:
                    return False, box
                taken = await self._wait_accepted(accepted, max(0.0, deadline - now))
                return taken, None if taken else await self.read_box()
            unchanged = unchanged and screen == before
            if (early is not None and unchanged and now - start >= early) or now >= deadline:
                return False, box
            if event is None:
                await asyncio.sleep(self.config.poll_interval)

    async def _accepted_now(self, accepted: AcceptSignal) -> bool:
        return accepted.is_set() if isinstance(accepted, asyncio.Event) else await accepted()

    async def _wait_box(self, done: Callable[[str | None], bool], within: float) -> str | None:
        """Poll the input box until ``done(box)`` or the deadline; return the last box read."""
        return (await self._wait_screen(done, within))[1]

    async def _wait_screen(
        self, done: Callable[[str | None], bool], within: float
    ) -> tuple[str, str | None]:
        """Like :meth:`_wait_box`, with the last screen read too."""
        deadline = time.monotonic() + within
        while True:
            screen = await self.tmux.capture(self.pane_id, escapes=self.escapes)
            box = self.input_box(screen)
            if done(box) or time.monotonic() >= deadline:
                return screen, box
            await asyncio.sleep(self.config.poll_interval)

    async def _wait_accepted(self, accepted: AcceptSignal, within: float) -> bool:
        if isinstance(accepted, asyncio.Event):
            try:
                await asyncio.wait_for(accepted.wait(), within)
            except TimeoutError:
                return False
            return True
        deadline = time.monotonic() + within
        while True:
            if await accepted():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.config.poll_interval)
