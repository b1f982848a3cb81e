"""``python -m agentbridge.cli``."""

import sys

from agentbridge.cli.app import main

sys.exit(main())
