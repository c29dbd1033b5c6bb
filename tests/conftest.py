"""Test-wide plugins. Each fixture module owns one kind of real dependency."""

import os
import sys
from pathlib import Path

import pytest

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


# Tiers that run on one real node (tests/kube) or load the image into a private containerd
# (tests/image): each pytest process starts its own node and imports the image, so under
# pytest-xdist (`--dist loadgroup`, as scripts/test runs it) they all go to one worker, which
# starts one node, while the other workers run everything else.
ONE_WORKER_TIERS = ("kube", "image")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = ROOT / "tests"
    for item in items:
        path = Path(str(item.path))
        if path.is_relative_to(tests) and path.relative_to(tests).parts[0] in ONE_WORKER_TIERS:
            item.add_marker(pytest.mark.xdist_group("node"))
