"""``python -m agentbridge.fakeagent``: a Claude-Code-like terminal program for tests and demos."""

from __future__ import annotations

import sys

from agentbridge.fakeagent import main

if __name__ == "__main__":
    sys.exit(main())
