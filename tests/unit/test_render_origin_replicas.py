"""``origin.replicas``: one origin stays today's Deployment with its RWO claim; several become a
StatefulSet (a volume and a DNS name per replica), a headless peers Service, a disruption budget,
and configs that make the transcoder upload to every replica and each replica copy a peer."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from onair.api.agent import ORIGIN_DRAIN_SECONDS, ORIGIN_FINISH_SECONDS, OriginConfig, TranscoderConfig
from tests.unit.test_render_children import by_kind, calltype, config_of, livestream, names, render

PEERS = [f"http://show-origin-{i}.show-origin-peers.media.svc:8082/upload" for i in range(3)]


def test_one_replica_renders_exactly_what_a_single_origin_always_had():
    default = render()
    explicit = render(ct=calltype(origin={"replicas": 1}))
    assert default.objects == explicit.objects
    assert ("Deployment", "show-origin") in names(default) and ("PersistentVolumeClaim", "show-dvr") in names(default)
    assert not by_kind(default, "StatefulSet") and not by_kind(default, "PodDisruptionBudget")
    assert '"peerUploadUrls"' not in by_kind(default, "ConfigMap")["show-origin"]["data"]["config.json"]
    assert '"outputUrls"' not in by_kind(default, "ConfigMap")["show-transcoder"]["data"]["config.json"]


def test_replicas_render_a_statefulset_with_a_volume_each_and_peers():
    out = render(ct=calltype(origin={"replicas": 3}))
    assert ("Deployment", "show-origin") not in names(out)
    assert ("PersistentVolumeClaim", "show-dvr") not in names(out)
    sts = by_kind(out, "StatefulSet")["show-origin"]["spec"]
    assert sts["replicas"] == 3 and sts["serviceName"] == "show-origin-peers"
    assert sts["updateStrategy"]["type"] == "RollingUpdate"
    [claim] = sts["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    pod = sts["template"]["spec"]
    assert "data" not in {v["name"] for v in pod["volumes"]}
    assert "data" in {m["name"] for m in pod["containers"][0]["volumeMounts"]}
    peers = by_kind(out, "Service")["show-origin-peers"]["spec"]
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert peers["selector"] == sts["selector"]["matchLabels"]
    assert [p["port"] for p in peers["ports"]] == [8082]
    pdb = by_kind(out, "PodDisruptionBudget")["show-origin"]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": sts["selector"]}
    # The playback Service still balances viewers across every replica.
    assert by_kind(out, "Service")["show-origin"]["spec"]["selector"] == sts["selector"]["matchLabels"]
    tx: TranscoderConfig = config_of(out, "transcoder")
    origin: OriginConfig = config_of(out, "origin")
    assert tx.output_urls == PEERS and origin.peer_upload_urls == PEERS


def test_replicas_copy_each_other_through_the_network_policy():
    out = render(ct=calltype(origin={"replicas": 2}))
    policy = by_kind(out, "NetworkPolicy")["show-origin"]["spec"]["ingress"]
    upload = [r for r in policy if any(p.get("port") == "upload" for p in r.get("ports", []))]
    sources = sorted(f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for r in upload for f in r["from"])
    assert sources == ["origin", "transcoder"]
    single = by_kind(render(), "NetworkPolicy")["show-origin"]["spec"]["ingress"]
    upload = [r for r in single if any(p.get("port") == "upload" for p in r.get("ports", []))]
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for r in upload for f in r["from"]] == [
        "transcoder"
    ]


def test_a_livestream_overrides_its_calltypes_replicas():
    out = render(livestream(settingsOverride={"origin": {"replicas": 2}}), ct=calltype(origin={"replicas": 4}))
    assert by_kind(out, "StatefulSet")["show-origin"]["spec"]["replicas"] == 2


@pytest.mark.parametrize("bad", [0, 11])
def test_replicas_out_of_range_are_refused(bad):
    with pytest.raises(ValidationError):
        calltype(origin={"replicas": bad})


@pytest.mark.parametrize("replicas", [1, 2])
def test_an_origin_drains_within_its_grace_period(replicas):
    """A StatefulSet's rolling update or scale-down and a Deployment's rollout both SIGTERM an origin
    that viewers still reach until the endpoints are updated: it drains (serves on, not ready), and
    the kubelet must not SIGKILL it before the drain and the requests then in flight are over."""
    out = render(ct=calltype(origin={"replicas": replicas}))
    workload = by_kind(out, "StatefulSet" if replicas > 1 else "Deployment")["show-origin"]
    pod = workload["spec"]["template"]["spec"]
    origin: OriginConfig = config_of(out, "origin")
    assert origin.drain_seconds == ORIGIN_DRAIN_SECONDS > 0
    assert pod["terminationGracePeriodSeconds"] > ORIGIN_DRAIN_SECONDS + ORIGIN_FINISH_SECONDS
    # Not ready while draining: the probe asks the path that says so.
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The others keep their own grace: nothing of the origin's leaks into them.
    assert (
        by_kind(out, "Deployment")["show-transcoder"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    )
