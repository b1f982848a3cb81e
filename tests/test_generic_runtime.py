"""The ``generic`` runtime with real programs: small shell-script REPLs in a real tmux.

Two generic agents with different ``ready_pattern``s share one ``GenericProfile`` (as the
plugin registry does). Each screen must be read with its own agent's pattern, carried by its
``LaunchSpec``: before, the pattern of the last-prepared agent was used for every agent, so
the first agent's prompt never read as ready.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentbridge.agent.tmux import TmuxServer
from agentbridge.config import AgentConfig
from agentbridge.plugin.protocols import LaunchSpec, ScreenKind
from agentbridge.runtimes import GenericProfile
from agentbridge.testing import async_wait_until

#: A tiny REPL. ``wait FILE`` works until FILE exists (a busy program whose end the test
#: controls); any other line is answered ``you said: <line>``. The prompt is its argument.
REPL = r"""#!/bin/sh
prompt="$1"
printf '%s' "$prompt"
while IFS= read -r line; do
  case "$line" in
    "wait "*)
      file=${line#wait }
      printf 'working on %s\n' "$file"
      while [ ! -e "$file" ]; do sleep 0.02; done
      printf 'finished %s\n' "$file"
      ;;
    *) printf 'you said: %s\n' "$line" ;;
  esac
  printf '%s' "$prompt"
done
"""


@pytest.fixture
async def tmux() -> AsyncIterator[TmuxServer]:
    server = TmuxServer(f"ab-generic-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        await server.kill_server()


class Repl:
    """One generic agent in its pane, read only through the profile, as the host reads it."""

    def __init__(self, profile: GenericProfile, spec: LaunchSpec, tmux: TmuxServer) -> None:
        self.profile, self.spec, self.tmux = profile, spec, tmux
        self.pane = ""

    async def start(self, name: str) -> None:
        self.pane = await self.tmux.new_session(name, self.spec.argv, self.spec.env, self.spec.cwd)

    async def screen(self) -> str:
        return await self.tmux.capture(self.pane)

    async def kind(self) -> ScreenKind:
        """The screen as the profile reads it with this agent's spec."""
        return self.profile.screen_state(await self.screen(), self.spec).kind

    async def wait_kind(self, kind: ScreenKind, what: str) -> str:
        async def reached() -> str | None:
            screen = await self.screen()
            state = self.profile.screen_state(screen, self.spec)
            return screen if state.kind is kind else None

        return await async_wait_until(reached, timeout=10, what=what)

    async def send(self, text: str) -> None:
        await self.tmux.load_and_paste(self.pane, text)

        async def shown() -> bool:  # the tty echoes it; only then press Enter
            return text in (await self.screen()).rstrip().rsplit("\n", 1)[-1]

        await async_wait_until(shown, timeout=5, what=f"{text!r} echoed")
        await self.tmux.send_enter(self.pane)


def _agent(tmp_path: Path, name: str, prompt: str, pattern: str) -> AgentConfig:
    script = tmp_path / "repl.sh"
    script.write_text(REPL)
    return AgentConfig(
        name=name,
        runtime="generic",
        command=["sh", str(script), prompt],
        cwd=tmp_path / name,
        ready_pattern=pattern,
    )


async def test_generic_agents_each_use_their_own_ready_pattern(
    tmux: TmuxServer, tmp_path: Path
) -> None:
    profile = GenericProfile()  # one instance for every generic agent
    calc_agent = _agent(tmp_path, "calc", "calc> ", r"^calc> $")
    lisp_agent = _agent(tmp_path, "lisp", "lisp* ", r"^lisp\* $")
    calc = Repl(profile, profile.prepare(calc_agent, tmp_path / "s-calc", resume=False), tmux)
    lisp = Repl(profile, profile.prepare(lisp_agent, tmp_path / "s-lisp", resume=False), tmux)
    assert calc.spec.ready_pattern == r"^calc> $" and lisp.spec.ready_pattern == r"^lisp\* $"
    await calc.start("calc")
    await lisp.start("lisp")

    # prepared first, still read with its own pattern (the capture drops the prompt's space)
    screen = await calc.wait_kind(ScreenKind.READY, "calc's prompt reads READY")
    assert screen.rstrip().endswith("calc>")
    assert profile.screen_state(screen, lisp.spec).kind is ScreenKind.BUSY  # not lisp's prompt
    await lisp.wait_kind(ScreenKind.READY, "lisp's prompt reads READY")

    # busy while it works, READY again only once its prompt is back
    done = tmp_path / "go"
    await calc.send(f"wait {done}")

    async def working() -> bool:
        screen = await calc.screen()
        return f"working on {done}" in screen and await calc.kind() is ScreenKind.BUSY

    await async_wait_until(working, timeout=10, what="calc working, BUSY")
    assert await calc.kind() is ScreenKind.BUSY and f"finished {done}" not in await calc.screen()
    done.touch()
    screen = await calc.wait_kind(ScreenKind.READY, "calc ready after the work")
    assert f"finished {done}" in screen

    await lisp.send("(+ 1 2)")

    async def answered() -> bool:
        screen = await lisp.screen()
        state = profile.screen_state(screen, lisp.spec)
        return "you said: (+ 1 2)" in screen and state.kind is ScreenKind.READY

    await async_wait_until(answered, timeout=10, what="lisp answered and ready")
