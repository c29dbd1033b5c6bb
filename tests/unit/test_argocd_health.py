"""The Argo CD health check for Livestream, run in a real Lua 5.1 (Argo CD's gopher-lua dialect)."""

from pathlib import Path

import pytest
import yaml

lua51 = pytest.importorskip("lupa.lua51", reason="lupa (Lua for Python) is a test dependency: pip install lupa")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "argocd" / "livestream-health.lua"
CM = ROOT / "deploy" / "argocd" / "argocd-cm.yaml"
T = "2026-01-01T00:00:00Z"


def health(obj: dict) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD hands the script the live object as the global `obj` (JSON arrays as 1-based tables).
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(SCRIPT.read_text())
    return hs["status"], hs["message"]


def cond(type_: str, status: str, reason: str = "Because", message: str = "", generation: int | None = None) -> dict:
    c = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": T}
    if generation is not None:
        c["observedGeneration"] = generation
    return c


def livestream(
    generation: int = 2,
    observed: int | None = 2,
    conditions: list | None = None,
    spec: dict | None = None,
    status: dict | None = None,
) -> dict:
    obj = {
        "apiVersion": "onair.dev/v1alpha1",
        "kind": "Livestream",
        "metadata": {"name": "show", "namespace": "default", "generation": generation},
        "spec": {"callType": "livestream", **(spec or {})},
    }
    if status is not None or conditions is not None or observed is not None:
        obj["status"] = dict(status or {})
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
        if conditions is not None:
            obj["status"]["conditions"] = conditions
    return obj


def test_ready_at_the_current_generation_is_healthy():
    obj = livestream(
        conditions=[
            cond("Ready", "True", "Serving", "all roles are up", 2),
            cond("Reconciling", "False", "Done", generation=2),
            cond("Stalled", "False", "Fine", generation=2),
        ]
    )
    assert health(obj) == ("Healthy", "all roles are up")


def test_no_status_yet_is_progressing():
    status, message = health(livestream(observed=None))
    assert status == "Progressing"
    assert "operator" in message


def test_status_without_conditions_is_progressing():
    assert health(livestream(observed=2, conditions=None))[0] == "Progressing"


def test_stale_observed_generation_is_progressing_even_if_ready():
    obj = livestream(generation=3, observed=2, conditions=[cond("Ready", "True", "Serving", "up", 2)])
    assert health(obj) == ("Progressing", "Waiting for the onair operator to observe generation 3")


def test_missing_observed_generation_counts_as_stale():
    obj = livestream(generation=1, observed=None, conditions=[cond("Ready", "True", "Serving", "up")])
    assert health(obj)[0] == "Progressing"


def test_reconciling_is_progressing_with_its_message():
    obj = livestream(
        conditions=[
            cond("Ready", "False", "Converging", "waiting", 2),
            cond("Reconciling", "True", "RollingOut", "deployment show-transcoder 0/1 ready", 2),
        ]
    )
    assert health(obj) == ("Progressing", "deployment show-transcoder 0/1 ready")


def test_stalled_is_degraded_with_its_message_and_wins_over_reconciling():
    obj = livestream(
        conditions=[
            cond("Ready", "False", "CallTypeNotFound", "x", 2),
            cond("Reconciling", "True", "Retrying", "", 2),
            cond("Stalled", "True", "CallTypeNotFound", 'CallType "nope" does not exist', 2),
        ]
    )
    assert health(obj) == ("Degraded", 'CallType "nope" does not exist')


def test_stalled_without_message_reports_its_reason():
    obj = livestream(conditions=[cond("Stalled", "True", "InvalidSpec", "", 2)])
    assert health(obj) == ("Degraded", "InvalidSpec")


def test_ready_false_when_done_converging_is_degraded():
    obj = livestream(
        conditions=[
            cond("Ready", "False", "IngestUnavailable", "ingest has no ready pod", 2),
            cond("Reconciling", "False", "Done", "", 2),
        ]
    )
    assert health(obj) == ("Degraded", "ingest has no ready pod")


@pytest.mark.parametrize(
    "conditions", [[cond("Ready", "Unknown", "Starting", "", 2)], [cond("Reconciling", "False", "Done", "", 2)]]
)
def test_unknown_or_absent_ready_is_progressing(conditions):
    assert health(livestream(conditions=conditions))[0] == "Progressing"


def test_inactive_ready_stream_is_suspended():
    obj = livestream(spec={"active": False}, conditions=[cond("Ready", "True", "Serving", "up", 2)])
    status, message = health(obj)
    assert status == "Suspended"
    assert "active" in message


def test_stale_stall_from_an_older_spec_is_not_degraded():
    obj = livestream(generation=4, observed=3, conditions=[cond("Stalled", "True", "InvalidSpec", "bad", 3)])
    assert health(obj)[0] == "Progressing"


def test_argocd_cm_snippet_embeds_the_script_verbatim():
    cm = yaml.safe_load(CM.read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.onair.dev_Livestream"] == SCRIPT.read_text()
