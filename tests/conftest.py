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
# (tests/image): heavy, and timed by the node's own pace, so scripts/test runs them after the rest,
# alone, while the rest runs on several workers. ONAIR_TEST_TIERS=node keeps only them,
# ONAIR_TEST_TIERS=rest leaves them out; unset, everything runs.
NODE_TIERS = ("kube", "image")
TIERS_VARIABLE = "ONAIR_TEST_TIERS"


def is_node_tier(item: pytest.Item) -> bool:
    tests, path = ROOT / "tests", Path(str(item.path))
    return path.is_relative_to(tests) and path.relative_to(tests).parts[0] in NODE_TIERS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers = os.environ.get(TIERS_VARIABLE, "")
    if tiers not in ("", "node", "rest"):
        raise pytest.UsageError(f"{TIERS_VARIABLE} must be node, rest or unset, not {tiers!r}")
    if not tiers:
        return
    keep = [item for item in items if is_node_tier(item) == (tiers == "node")]
    deselected = [item for item in items if is_node_tier(item) != (tiers == "node")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep
