"""Run from a checkout without installing the package: its directory goes on sys.path (an
installed copy, `pip install examples/extension`, is the same code)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
