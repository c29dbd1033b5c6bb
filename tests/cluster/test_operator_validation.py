"""What users get from the API server for a bad Livestream: a rejection naming the field and the fix.

No operator is needed: the CRD's structural schema and CEL rules reject these before anything
reconciles, exactly as `kubectl apply` would show them.
"""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

GROUP, VERSION = "onair.dev", "v1alpha1"


def create(kube, namespace: str, name: str, spec: dict, *, strict: bool = False) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Livestream", "metadata": {"name": name}, "spec": spec}
    kwargs = {"field_validation": "Strict"} if strict else {}
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "livestreams", body, **kwargs)


def rejection(call) -> str:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status in (400, 422), info.value.body
    return json.loads(info.value.body)["message"]


BAD_SPECS = [
    pytest.param(
        {"callType": "default", "phase": "onair"},
        ["spec.phase", 'Unsupported value: "onair"', '"backstage", "live", "ended"'],
        id="bad-phase-enum",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"dvr": {"durationSeconds": 20}}},
        ["spec.settingsOverride.dvr.durationSeconds", "should be greater than or equal to 30"],
        id="dvr-too-short",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"dvr": {"durationSeconds": 20000}}},
        ["spec.settingsOverride.dvr.durationSeconds", "should be less than or equal to 14400"],
        id="dvr-too-long",
    ),
    pytest.param(
        {"callType": "default", "source": {"mode": "pull"}},
        ["source.mode pull needs at least one entry in source.uris"],
        id="pull-without-uris",
    ),
    pytest.param(
        {"callType": "default", "source": {"mode": "push", "uris": ["rtmp://example.org/live/x"]}},
        ["source.uris is only used with source.mode pull"],
        id="uris-with-push",
    ),
    pytest.param(
        {"callType": "default", "source": {"mode": "pull", "uris": ["ftp://example.org/x"]}},
        ["spec.source.uris[0]", "should match"],
        id="bad-pull-uri-scheme",
    ),
    pytest.param(
        {"callType": "default", "members": [{"userId": "ann", "role": "host"}, {"userId": "ann", "role": "viewer"}]},
        ["each userId may appear in members only once"],
        id="duplicate-member",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"broadcasting": {"hls": {"qualityTracks": ["1080p", "999p"]}}}},
        ["spec.settingsOverride.broadcasting.hls.qualityTracks[1]", 'Unsupported value: "999p"'],
        id="bad-quality-track",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"ingest": {"srtLatencyMs": 10}}},
        ["spec.settingsOverride.ingest.srtLatencyMs", "should be greater than or equal to 20"],
        id="srt-latency-out-of-range",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"backstage": {"joinAheadTimeSeconds": -5}}},
        ["spec.settingsOverride.backstage.joinAheadTimeSeconds", "should be greater than or equal to 0"],
        id="negative-join-ahead",
    ),
    pytest.param({"callType": "Not_A_Name"}, ["spec.callType", "should match"], id="calltype-not-a-dns-label"),
    pytest.param({"phase": "live"}, ["spec.callType: Required value"], id="calltype-missing"),
    pytest.param(
        {"callType": "default", "settingsOverride": {"ingest": {"protocols": ["rtmp", "ftp"]}}},
        ["spec.settingsOverride.ingest.protocols[1]", 'Unsupported value: "ftp"'],
        id="bad-protocol",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"recording": {"storage": {"s3": {"bucket": "My_Bucket"}}}}},
        ["spec.settingsOverride.recording.storage.s3.bucket", "should match"],
        id="s3-bad-bucket-name",
    ),
    pytest.param(
        {"callType": "default", "settingsOverride": {"recording": {"storage": {"s3": {"endpoint": "s3.example.org"}}}}},
        ["spec.settingsOverride.recording.storage.s3.endpoint", "should match"],
        id="s3-endpoint-without-scheme",
    ),
]


@pytest.mark.parametrize("spec,needles", BAD_SPECS)
def test_bad_spec_is_rejected_with_a_readable_message(kube, namespace, spec, needles):
    message = rejection(lambda: create(kube, namespace, "bad", spec))
    for needle in needles:
        assert needle in message, message


def test_name_longer_than_45_characters_is_rejected(kube, namespace):
    message = rejection(lambda: create(kube, namespace, "n" * 46, {"callType": "default"}))
    assert "metadata.name must be at most 45 characters" in message, message
    create(kube, namespace, "n" * 45, {"callType": "default"})  # the limit itself is fine


def test_unknown_field_is_rejected_in_strict_mode(kube, namespace):
    message = rejection(lambda: create(kube, namespace, "typo", {"callType": "default", "phsae": "live"}, strict=True))
    assert 'unknown field "spec.phsae"' in message, message


def test_call_type_is_immutable(kube, namespace):
    create(kube, namespace, "fixed", {"callType": "default"})
    message = rejection(lambda: kube.patch_livestream(namespace, "fixed", {"spec": {"callType": "other"}}))
    assert "callType is immutable; create a new Livestream to change it" in message, message


def test_ended_is_final(kube, namespace):
    create(kube, namespace, "over", {"callType": "default", "phase": "ended"})
    for phase in ("live", "backstage"):
        message = rejection(lambda: kube.patch_livestream(namespace, "over", {"spec": {"phase": phase}}))
        assert "an ended Livestream cannot go back to backstage or live; create a new Livestream" in message, message
    # Unsetting the phase is the same as leaving ended: refused too.
    message = rejection(lambda: kube.patch_livestream(namespace, "over", {"spec": {"phase": None}}))
    assert "an ended Livestream cannot go back" in message, message
    # Other changes to an ended Livestream are still allowed.
    kube.patch_livestream(namespace, "over", {"spec": {"displayName": "Conference in July (replay)"}})


def test_backstage_and_live_may_alternate(kube, namespace):
    create(kube, namespace, "flip", {"callType": "default", "phase": "backstage"})
    for phase in ("live", "backstage", "live", "ended"):
        kube.patch_livestream(namespace, "flip", {"spec": {"phase": phase}})
    assert kube.livestream(namespace, "flip")["spec"]["phase"] == "ended"
