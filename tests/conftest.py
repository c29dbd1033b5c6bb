"""Test-wide plugins. Each fixture module owns one kind of real dependency."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The package's source root is operator/, never the repo root (an importable `operator`
# would shadow the standard library).
if str(ROOT / "operator") not in sys.path:
    sys.path.insert(0, str(ROOT / "operator"))
# Agents, operators and pod runners started as subprocesses must run this tree's code too, not
# whichever checkout `pip install -e` last pointed at.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "operator")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.cluster",
    "tests.fixtures.node",
    "tests.fixtures.ingest",
    "tests.fixtures.operator",
    "tests.fixtures.recorder_source",
    "tests.fixtures.rtmp_server",
    "tests.fixtures.s3",
    "tests.fixtures.transcoder",
    "tests.fixtures.origin",
    "tests.fixtures.browser",
    "tests.fixtures.image",
]
