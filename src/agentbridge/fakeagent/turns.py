"""The fake agent's turns: a prompt submitted, its faults played, the permission dialog, the
reply or API error written to the transcript with its hooks, an interrupt, the queue."""

from __future__ import annotations

import time
import uuid

from agentbridge.fakeagent.permission import TOOL, Decision, PermissionAsk
from agentbridge.fakeagent.prompt import (
    api_error,
    parse_faults,
    progress_steps,
    reply_text,
)
from agentbridge.fakeagent.screen import short
from agentbridge.fakeagent.session import AgentSession, Turn
from agentbridge.fakeagent.transcript_writer import MODEL, TranscriptWriter

BATCH_WINDOW = 0.3  # replies faster than this share one flush with the user line
CRASH_EXIT = 3


class Turns(AgentSession):
    """What the session does with a prompt, from Enter to the reply (or its interrupt)."""

    def _submit(self) -> None:
        self.enters_swallowed = 0
        text = self.box.take()
        if not text.strip():
            return
        if self.turn is not None:
            self.queue.append(text)
            return
        if text.strip() == "/clear":
            self._clear()
            return
        self._start_turn(text, "typed")

    def _clear(self) -> None:
        """``/clear``: a new session id and transcript file, like Claude Code."""
        self._hook("SessionEnd", reason="clear")
        self.session_id = str(uuid.uuid4())
        self.transcript = TranscriptWriter(self.config, self.cwd, self.session_id)
        self.model.history = [f"✻ Fake agent (agentbridge) · session {self.session_id}"]
        self._status("idle")
        self._hook("SessionStart", source="clear", model=MODEL)

    def _start_turn(self, prompt: str, source: str) -> None:
        faults = parse_faults(prompt)
        if self.first_fault is not None:
            faults = faults.merge(self.first_fault)
            self.first_fault = None
        prompt_id = str(uuid.uuid4())
        now = time.monotonic()
        delay = faults.slow if faults.slow is not None else self.opts.reply_delay
        self.turn = Turn(prompt, prompt_id, faults, now, delay=delay)
        self.model.history.append(f"> {short(prompt)}")
        self._status("busy")
        self._draw()
        self._hook(
            "UserPromptSubmit", prompt=prompt, prompt_id=prompt_id, permission_mode="default"
        )
        self.transcript.user(prompt, prompt_id, source)
        if faults.crash:
            self.transcript.flush()
            self.crashed = True
            self.exit_code = CRASH_EXIT
            return
        if faults.hang:
            self.transcript.flush()
        elif faults.tool and TOOL in self.session_rules:
            self.turn.note = Decision(True, always=True).note() + " (session rule)"
            self.turn.deadline = time.monotonic() + delay
        elif faults.permission or faults.tool:
            self.transcript.flush()
            if faults.tool:  # the dialog shows while the hooks run; the first answer wins
                self.turn.ask = PermissionAsk(self.hooks, self._hook_base(), self._wake_w)
            self.turn.waiting = True
            self._status("waiting")
            self._hook(
                "Notification",
                notification_type="permission_prompt",
                message="Claude needs your permission to use Bash",
            )
        else:
            if delay > BATCH_WINDOW:
                self.transcript.flush()
            self.turn.deadline = time.monotonic() + delay
            count = progress_steps(prompt)
            self.turn.steps = [now + delay * i / (count + 1) for i in range(1, count + 1)]

    def _decided(self, turn: Turn, decision: Decision | None) -> None:
        """The hooks are done: their decision ends the dialog; none leaves it for a key."""
        turn.ask = None
        if decision is None or not turn.waiting:
            return
        turn.note = decision.note()
        if decision.always:
            self.session_rules.add(TOOL)
        self._approve()
        if not decision.allow:  # denied: the turn ends without the tool
            turn.deadline = time.monotonic()

    def _approve(self) -> None:
        """A key on the permission dialog: carry on with the turn."""
        assert self.turn is not None
        self.turn.waiting = False
        self.turn.deadline = time.monotonic() + self.turn.delay
        self._status("busy")

    def _finish_turn(self) -> None:
        turn = self.turn
        assert turn is not None
        duration_ms = int((time.monotonic() - turn.started) * 1000)
        if turn.faults.api_error is not None:
            error, text = api_error(turn.faults.api_error)
            self.transcript.api_error(text, error)
            self.transcript.flush()
            self.model.history.append(f"  ⎿  {text}")
            self._hook("StopFailure", error=error, error_details=text, last_assistant_message=text)
        else:
            reply = reply_text(turn.prompt)
            reply = f"{turn.note}\n{reply}" if turn.note else reply
            self.transcript.assistant(reply)
            commands = self._hook(
                "Stop",
                prompt_id=turn.prompt_id,
                stop_hook_active=False,
                last_assistant_message=reply,
            )
            if commands:
                self.transcript.stop_hook_summary(commands)
            self.transcript.turn_duration(duration_ms)
            self.transcript.flush()
            self.model.history.append(f"⏺ {reply}")
        self.turn = None
        self._next_or_idle()

    def _next_or_idle(self) -> None:
        if self.queue:
            self._start_turn(self.queue.pop(0), "queued")
        else:
            self._status("idle")

    def _progress(self, turn: Turn, now: float) -> None:
        """The ``#fake:steps=N`` lines now due (none while the permission dialog shows)."""
        while turn.steps and now >= turn.steps[0] and not turn.waiting:
            turn.steps.pop(0)
            total = progress_steps(turn.prompt)
            self.transcript.assistant(f"step {total - len(turn.steps)}/{total}")
            self.transcript.flush()

    def _interrupt(self) -> None:
        """Esc while busy: Claude's interrupt line (none with ``#fake:rewind``), no turn end or
        Stop hook, the prompt back in the box."""
        turn = self.turn
        assert turn is not None
        if not turn.faults.rewind:
            self.transcript.interrupted()
        self.transcript.flush()
        self.turn = None
        for text in reversed(self.queue):
            self.box.restore(text)
        self.queue = []
        self.box.restore(turn.prompt)
        self.model.history.append("  ⎿  Interrupted · What should Claude do instead?")
        self._status("idle")
