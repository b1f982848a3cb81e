"""A `generic` agent through the whole bridge: a real line-oriented REPL with a prompt.

No transcript, no hooks: acceptance and completion come from the screen (weaker evidence,
and the audit trail says so). Multi-line text never reaches such a pane as several lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge_harness import running_bridge

pytestmark = pytest.mark.slow

REPL = r"""
while IFS= read -r -p "calc> " line; do
  case "$line" in
    *"the message is in the file "*)
      f=${line#*the message is in the file }; f=${f%%;*}
      echo "file has $(wc -l < "$f") lines";;
    *) echo "got ${#line} chars";;
  esac
done
"""


def test_generic_repl_round_trip(tmp_path: Path) -> None:
    agents = {
        "repl": {
            "runtime": "generic",
            "command": ["bash", "--norc", "--noprofile", "-c", REPL],
            "ready_pattern": r"^calc> ?$",
            "launch_grace": 20,
        }
    }
    with running_bridge(tmp_path, agents=agents) as bridge:
        short = bridge.send("hello world")
        multi = bridge.send("one\ntwo\nthree")
        msg = bridge.wait_state(short, "completed", timeout=30)
        assert msg.reply is not None and msg.reply.startswith("got ")
        events = bridge.events(short)
        assert any("weak evidence" in e["detail"] for e in events if e["to_state"] == "completed")
        spilled = bridge.wait_state(multi, "completed", timeout=30)
        assert spilled.reply == "file has 2 lines"  # three lines, two newlines: one prompt
        assert bridge.status()["agents"]["repl"]["restarts"] == 0
