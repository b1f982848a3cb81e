"""An installed but unconfigured channel plugin must not load its platform SDK on every start.

The entry points are imported by every ``agentbridge`` command; discord.py and slack-sdk cost
tens of MB and ~0.3 s when imported, so the plugins load them only once a table configures them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SDKS = {
    "agentbridge_discord": "discord",
    "agentbridge_slack": "slack_sdk",
    "agentbridge_lark": "lark_oapi",
}


@pytest.mark.parametrize("plugin", sorted(SDKS))
def test_an_unconfigured_plugin_loads_no_sdk(plugin: str) -> None:
    code = (
        "import sys\n"
        "from agentbridge.config import parse_config\n"
        f"import {plugin}.plugin as p\n"
        "p.register_channels(register=lambda c: None, config=parse_config({}))\n"
        f"print({SDKS[plugin]!r} in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
