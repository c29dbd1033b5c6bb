"""The chart's inputs that need no helm binary: CRD copies, built-in CallTypes, values schema."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from onair.api.calltype import CallType
from onair.packaging import manifests

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "onair"
CALLTYPES = CHART / "files" / "calltypes"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_crds_are_fresh_copies_of_the_generated_crds():
    assert manifests.stale_chart_crds() == [], "run scripts/generate-manifests and commit charts/onair/crds"
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "crds").glob("*.yaml")
    )


def test_stale_chart_crds_are_detected_and_synced(tmp_path):
    chart = tmp_path / "chart"
    (chart / "crds").mkdir(parents=True)
    (chart / "crds" / "leftover.yaml").write_text("old")
    (chart / "crds" / "onair.dev_livestreams.yaml").write_text("edited by hand")
    stale = manifests.stale_chart_crds(chart)
    assert any(s.endswith("leftover.yaml") for s in stale)
    assert any(s.endswith("onair.dev_livestreams.yaml") for s in stale)
    manifests.sync_chart_crds(chart)
    assert manifests.stale_chart_crds(chart) == []
    assert not (chart / "crds" / "leftover.yaml").exists()


def calltype(name: str) -> CallType:
    return CallType.model_validate(yaml.safe_load((CALLTYPES / f"{name}.yaml").read_text()))


def test_every_builtin_calltype_file_is_a_valid_calltype_named_after_its_file():
    files = sorted(CALLTYPES.glob("*.yaml"))
    assert [f.stem for f in files] == ["default", "development", "livestream"]
    for f in files:
        assert calltype(f.stem).metadata == {"name": f.stem}
    # Exactly the files have a toggle, so no built-in can be shipped without one.
    assert sorted(VALUES["builtinCallTypes"]) == [f.stem for f in files]
    assert sorted(SCHEMA["properties"]["builtinCallTypes"]["properties"]) == [f.stem for f in files]


def test_livestream_calltype_is_backstage_first_with_full_ladder_dvr_and_recording():
    s = calltype("livestream").spec.settings
    assert s.backstage.enabled is True
    assert s.broadcasting.mode == "auto-on"
    assert s.broadcasting.hls.quality_tracks == ["1080p", "720p", "480p", "360p"]
    assert s.dvr.enabled is True
    assert s.recording.mode == "available"
    grants = calltype("livestream").spec.grants
    crew = {
        "join-backstage",
        "send-audio",
        "send-video",
        "start-broadcast-call",
        "stop-broadcast-call",
        "start-record-call",
        "stop-record-call",
    }
    assert crew <= set(grants["host"]) and crew <= set(grants["admin"])
    assert set(grants["user"]) == {"join-call", "read-call"}


def test_default_calltype_has_no_backstage_and_broadcasting_on_demand():
    s = calltype("default").spec.settings
    assert s.backstage.enabled is False
    assert s.broadcasting.mode == "available"
    assert "join-backstage" not in calltype("default").spec.grants["user"]


def test_development_calltype_is_small_short_and_unrecorded():
    s = calltype("development").spec.settings
    assert s.backstage.enabled is False
    assert s.broadcasting.hls.quality_tracks == ["720p", "360p"]
    assert s.dvr.duration_seconds == 300
    assert s.recording.mode == "disabled"


def test_values_yaml_satisfies_its_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(VALUES, SCHEMA)


@pytest.mark.parametrize(
    "override",
    [
        {"watchNamespace": ["a"]},  # typo of watchNamespaces
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"watchNamespaces": "default"},
        {"image": {"repository": "ghcr.io/onair-dev/onair", "pullPolicy": "Sometimes"}},
        {"image": {"repository": "ghcr.io/onair-dev/onair", "digest": "sha256:nothex"}},
        {"builtinCallTypes": {"livestream": {"enabled": "yes"}}},
        {"builtinCallTypes": {"audio_room": {"enabled": True}}},  # no such built-in
        {"operator": {"logLevel": "loud"}},
        {"operator": {"resources": {"limits": {"cpu": "lots"}}}},
        {"livestreams": {"ingest": {"serviceType": "Ingress"}}},
        {"livestreams": {"resources": {"encoder": {"limits": {"cpu": "1"}}}}},
        {"livestreams": {"statusPollIntervalSeconds": 0}},
        {"rbac": {"create": True, "clusterWide": True}},
    ],
)
def test_schema_rejects_bad_values(override):
    values = {**VALUES, **override}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA)
