"""`make demo`: validate the example app's configuration and show what goes where.

The deploy engine issue turns this into a real deploy of the example app on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

from slipway.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "codeframe-mini" / "slipway.toml"

if __name__ == "__main__":
    sys.exit(main(["--config", str(CONFIG), "check"]))
