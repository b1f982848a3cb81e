"""``/stop`` from chat on the real Claude Code and Codex under ``agentbridge up``.

As in ``test_interrupt_real_clis`` the mock model answers late (``#mock:slow=``), but here no
test presses Escape: ``agentbridge send /stop`` does, through the bridge's command center. The
running message must end ``interrupted`` (attempt 1, asked of the model once), the ``/stop``
itself ends ``completed`` with an answer saying so (sent through the outbox, never pasted), and
the next message is still answered. Run one at a time: each drives a real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbridge.testing.mock_model import MockModelServer
from bridge_harness import wait_for

from .conftest import AgentClis
from .test_bridge_real_clis import mock_in_thread  # noqa: F401  (a fixture)
from .test_interrupt_real_clis import RUNTIMES, _box, asked_for, slow_turn

pytestmark = pytest.mark.realcli


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_stop_from_chat_interrupts_a_real_cli(
    runtime: str,
    agent_clis: AgentClis,
    mock_in_thread: MockModelServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    mock = mock_in_thread
    with slow_turn(runtime, agent_clis, mock, tmp_path) as (bridge, mid):
        stop = bridge.send("/stop")
        answered = bridge.wait_state(stop, "completed", "failed", timeout=40)
        assert answered.reply == f"stopped: message {mid} ended interrupted (it is not re-run)", (
            answered,
            bridge.log_tail(),
        )
        msg = bridge.message(mid)
        assert msg.state == "interrupted" and msg.attempt == 1
        assert not any("/stop" in r.user_text for r in mock.requests)  # never reached the CLI
        notes = [e["detail"] for e in bridge.events(stop) if e["kind"] == "command"]
        assert notes and notes[0].startswith(f"/stop: message {mid} interrupted after "), notes
        assert "stop_requested" in [e["kind"] for e in bridge.events(mid)]
        wait_for(lambda: _box(bridge, runtime) == "", timeout=10, what="an empty input box")
        nxt = bridge.send("a quick one after the stop")
        done = bridge.wait_state(nxt, "completed", "failed", timeout=90)
        assert done.state == "completed" and done.reply and "mock answer" in done.reply
        assert len(asked_for(mock, mid)) == 1  # never re-run
