"""The operator against a real API server: children rendered, applied, kept, restored, pruned, collected."""

from __future__ import annotations

import base64
import secrets

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import condition

pytestmark = pytest.mark.cluster

ROLES = ("ingest", "transcoder", "origin", "recorder")


@pytest.fixture
def calltype(kube):
    name = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings={"broadcasting": {"hls": {"qualityTracks": ["720p", "360p"]}}})
    yield name
    kube.delete_calltype(name)


def test_livestream_gets_every_child_with_the_right_spec(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "show", {"callType": calltype})
    obj = kube.wait_reconciled(namespace, "show")
    uid = obj["metadata"]["uid"]
    children = kube.children(namespace, "show")

    expected = {
        ("Secret", "show-credentials"),
        ("PersistentVolumeClaim", "show-dvr"),
        ("Service", "show-ingest"),
        ("Service", "show-origin"),
        ("Service", "show-recorder"),
    }
    expected |= {("ConfigMap", f"show-{r}") for r in ROLES} | {("Deployment", f"show-{r}") for r in ROLES}
    expected |= {("NetworkPolicy", f"show-{r}") for r in ROLES}
    assert set(children) == expected
    for (_kind, name), child in children.items():
        refs = child["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r["uid"], r["controller"]) for r in refs] == [
            ("Livestream", "show", uid, True)
        ], name
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "onair-operator"
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "show"

    # Role configs: what each agent will run with.
    ingest = kube.configmap_json(namespace, "show-ingest")
    assert ingest["role"] == "ingest" and ingest["livestream"] == f"{namespace}/show" and ingest["slot"] == "main"
    transcoder = kube.configmap_json(namespace, "show-transcoder")
    assert [r["name"] for r in transcoder["ladder"]] == ["720p", "360p"]  # from the CallType
    assert transcoder["mainUrl"].startswith(f"rtmp://show-ingest.{namespace}.svc:1935/")
    assert transcoder["outputUrl"] == f"http://show-origin.{namespace}.svc:8082/upload"
    origin = kube.configmap_json(namespace, "show-origin")
    assert origin["dvrWindowSeconds"] == 3600

    # Pods: the one image, restricted security, agent probes.
    dep = children[("Deployment", "show-transcoder")]
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["onair"]
    assert container["args"] == ["agent", "transcoder", "--config", "/etc/onair/config.json"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"

    # The credentials Secret: every key present, and none of them leaks into status.
    secret = children[("Secret", "show-credentials")]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    for key in ("streamKey", "srtPassphrase", "whipToken", "playbackSecret", "uploadToken", "readToken", "agentToken"):
        assert len(data[key]) >= 10
    status = obj["status"]
    assert data["streamKey"] not in repr(status) and data["agentToken"] not in repr(status)

    # The agent token: in every pod as a file of the Secret, named by every config, in no ConfigMap.
    for role in ROLES:
        pod = children[("Deployment", f"show-{role}")]["spec"]["template"]["spec"]
        items = [
            i
            for v in pod["volumes"]
            if v.get("secret", {}).get("secretName") == "show-credentials"
            for i in v["secret"]["items"]
        ]
        assert {"key": "agentToken", "path": "agentToken"} in items, role
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["credentials"] == "/etc/onair/secret", role
        assert kube.configmap_json(namespace, f"show-{role}")["agentTokenFile"] == "/etc/onair/secret/agentToken"
        assert data["agentToken"] not in children[("ConfigMap", f"show-{role}")]["data"]["config.json"]

    # The recordings PVC: created for the stream but not owned, so it outlives it.
    rec = kube.core.read_namespaced_persistent_volume_claim("show-recordings", namespace)
    assert not rec.metadata.owner_references

    # Status: URLs, effective settings, credentials, conditions with observedGeneration.
    assert status["credentialsSecret"] == "show-credentials"
    assert status["phase"] == "backstage" and status["live"] is False
    assert status["ingest"]["rtmp"] == f"rtmp://show-ingest.{namespace}.svc:1935/live"
    assert status["playback"]["hlsCmaf"].endswith("/hls/cmaf/master.m3u8")
    assert status["effectiveSettings"]["broadcasting"]["hls"]["qualityTracks"] == ["720p", "360p"]
    assert status["effectiveSettings"]["dvr"]["durationSeconds"] == 3600
    ready = condition(status, "Ready")
    assert ready["status"] == "False" and ready["observedGeneration"] == 1
    assert condition(status, "Reconciling")["reason"] == "AgentsNotReady"


def test_network_policies_are_accepted_and_select_the_pods_and_ports_they_mean(operator, kube, calltype, namespace):
    """What the API server stored (it validates every field, e.g. a named port or endPort) selects
    exactly the pods of the Deployment of the same name, and names only ports those pods declare."""
    kube.create_livestream(
        namespace, "fence", {"callType": calltype, "settingsOverride": {"ingest": {"protocols": ["srt", "whip"]}}}
    )
    kube.wait_reconciled(namespace, "fence")
    children = kube.children(namespace, "fence")
    operator_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "onair-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "onair", "app.kubernetes.io/component": "operator"}},
    }

    def pods_of(role: str) -> dict:
        return {
            "podSelector": {"matchLabels": children[("Deployment", f"fence-{role}")]["spec"]["selector"]["matchLabels"]}
        }

    rules: dict[str, list[dict]] = {}
    for role in ROLES:
        policy = children[("NetworkPolicy", f"fence-{role}")]["spec"]
        template = children[("Deployment", f"fence-{role}")]["spec"]["template"]
        assert policy["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items(), role
        assert policy["policyTypes"] == ["Ingress"]
        declared = {(p["name"], p["protocol"]) for p in template["spec"]["containers"][0]["ports"]}
        for rule in policy["ingress"]:
            for port in rule["ports"]:
                assert isinstance(port["port"], int) or (port["port"], port["protocol"]) in declared, (role, port)
        rules[role] = [{k: v for k, v in rule.items()} for rule in policy["ingress"]]
        assert rules[role][0] == {"from": [operator_peer], "ports": [{"port": "agent", "protocol": "TCP"}]}, role
    assert rules["transcoder"] == rules["recorder"][:1] == rules["transcoder"][:1]
    # The origin reads the recordings on the volume from the recorder, to serve them to viewers.
    assert rules["recorder"][1:] == [{"from": [pods_of("origin")], "ports": [{"port": "agent", "protocol": "TCP"}]}]
    assert rules["origin"][1:] == [
        {"ports": [{"port": "http", "protocol": "TCP"}]},
        {"from": [pods_of("transcoder")], "ports": [{"port": "upload", "protocol": "TCP"}]},
    ]
    # No RTMP pushes here: the RTMP port is only the read path of this stream's transcoder and recorder.
    assert rules["ingest"][1:] == [
        {"from": [pods_of("transcoder"), pods_of("recorder")], "ports": [{"port": "rtmp", "protocol": "TCP"}]},
        {
            "ports": [
                {"port": "srt", "protocol": "UDP"},
                {"port": "whip", "protocol": "TCP"},
                {"port": 1024, "endPort": 65535, "protocol": "UDP"},
            ]
        },
    ]
    origin_service = children[("Service", "fence-origin")]["spec"]
    assert [(p["name"], p["port"]) for p in origin_service["ports"]] == [("http", 8081), ("upload", 8082)]
    assert origin_service["type"] == "ClusterIP"


def test_second_reconcile_changes_nothing(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "idem", {"callType": calltype})
    kube.wait_reconciled(namespace, "idem")
    before = kube.resource_versions(namespace, "idem")
    status_rv = kube.livestream(namespace, "idem")["metadata"]["resourceVersion"]

    # A metadata-only change runs the update handler (the generation did not move: nothing is
    # rendered or applied; tests/cluster/test_operator_apply_digest.py counts the applies).
    kube.patch_livestream(namespace, "idem", {"metadata": {"labels": {"touched": "yes"}}})
    wait_for(
        lambda: (
            "touched"
            in kube.livestream(namespace, "idem")["metadata"]["annotations"].get(
                "onair.dev/last-handled-configuration", ""
            )
        ),
        20,
        what="update handled",
    )
    assert kube.resource_versions(namespace, "idem") == before
    # ...and the status was not rewritten either (only kopf's own annotation changed the object).
    obj = kube.livestream(namespace, "idem")
    assert obj["status"]["observedGeneration"] == 1
    assert int(obj["metadata"]["resourceVersion"]) > int(status_rv)


def test_spec_change_rolls_out_and_prunes(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "roll", {"callType": calltype})
    kube.wait_reconciled(namespace, "roll")

    kube.patch_livestream(
        namespace, "roll", {"spec": {"settingsOverride": {"dvr": {"durationSeconds": 600}, "ingest": {"backup": True}}}}
    )
    obj = kube.wait_reconciled(namespace, "roll")
    assert obj["status"]["observedGeneration"] == 2
    assert kube.configmap_json(namespace, "roll-origin")["dvrWindowSeconds"] == 600
    children = kube.children(namespace, "roll")
    for kind in ("Deployment", "Service", "ConfigMap"):
        assert (kind, "roll-ingest-backup") in children
    assert kube.configmap_json(namespace, "roll-transcoder")["backupUrl"].startswith(
        f"rtmp://roll-ingest-backup.{namespace}.svc"
    )
    assert obj["status"]["ingest"]["backupRtmp"] == f"rtmp://roll-ingest-backup.{namespace}.svc:1935/live"

    kube.patch_livestream(namespace, "roll", {"spec": {"settingsOverride": {"ingest": {"backup": False}}}})
    kube.wait_reconciled(namespace, "roll")
    wait_for(
        lambda: not any(name == "roll-ingest-backup" for _, name in kube.children(namespace, "roll")),
        20,
        what="backup ingest pruned",
    )
    assert "backupRtmp" not in kube.livestream(namespace, "roll")["status"]["ingest"]


def test_owned_children_the_operator_never_wrote_are_pruned_and_foreign_ones_kept(operator, kube, calltype, namespace):
    """Pruning asks the watch cache what exists: an owned child this operator run never applied
    (left by an older version, or restored from a backup) is found and deleted on the next
    reconcile; a look-alike without our ownerReference is left alone."""
    from kubernetes import client

    obj = kube.create_livestream(namespace, "stray", {"callType": calltype})
    kube.wait_reconciled(namespace, "stray")
    labels = {"app.kubernetes.io/managed-by": "onair-operator", "onair.dev/livestream": "stray"}
    owner = client.V1OwnerReference(
        api_version="onair.dev/v1alpha1",
        kind="Livestream",
        name="stray",
        uid=obj["metadata"]["uid"],
        controller=True,
        block_owner_deletion=True,
    )
    kube.core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="stray-leftover", labels=labels, owner_references=[owner])
        ),
    )
    kube.core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="stray-lookalike", labels=labels))
    )

    kube.patch_livestream(namespace, "stray", {"spec": {"settingsOverride": {"dvr": {"durationSeconds": 600}}}})
    kube.wait_reconciled(namespace, "stray")
    wait_for(
        lambda: ("ConfigMap", "stray-leftover") not in kube.children(namespace, "stray"),
        20,
        what="the leftover ConfigMap pruned",
    )
    assert ("ConfigMap", "stray-lookalike") in kube.children(namespace, "stray")
    assert "ChildrenPruned" in kube.event_reasons(namespace, "stray")


def test_children_dropped_while_the_operator_was_down_are_pruned_after_restart(operator, kube, calltype, namespace):
    """A restarted operator knows nothing it wrote before; the watch cache (complete before any
    handler runs) still shows the backup ingest, so turning the backup off while it was down prunes it."""
    kube.create_livestream(namespace, "down", {"callType": calltype, "settingsOverride": {"ingest": {"backup": True}}})
    kube.wait_reconciled(namespace, "down")
    assert ("Deployment", "down-ingest-backup") in kube.children(namespace, "down")
    with operator.stopped():
        kube.patch_livestream(namespace, "down", {"spec": {"settingsOverride": {"ingest": {"backup": False}}}})
    kube.wait_reconciled(namespace, "down")
    wait_for(
        lambda: not any(name == "down-ingest-backup" for _, name in kube.children(namespace, "down")),
        20,
        what="backup ingest pruned after the restart",
    )


def test_deleted_dvr_claim_is_created_again(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "claim", {"callType": calltype})
    kube.wait_reconciled(namespace, "claim")
    old = kube.core.read_namespaced_persistent_volume_claim("claim-dvr", namespace).metadata.uid
    kube.core.delete_namespaced_persistent_volume_claim("claim-dvr", namespace)

    def recreated():
        claim = kube.children(namespace, "claim").get(("PersistentVolumeClaim", "claim-dvr"))
        return claim is not None and claim["metadata"]["uid"] != old

    wait_for(recreated, 30, what="the DVR claim created again")


def test_deleted_configmap_and_hand_edited_deployment_are_restored(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "drift", {"callType": calltype})
    kube.wait_reconciled(namespace, "drift")
    original = kube.configmap_json(namespace, "drift-origin")
    image = kube.apps.read_namespaced_deployment("drift-ingest", namespace).spec.template.spec.containers[0].image

    kube.core.delete_namespaced_config_map("drift-origin", namespace)
    wait_for(lambda: kube.configmap_json(namespace, "drift-origin") == original, 20, what="ConfigMap restored")

    kube.apps.patch_namespaced_deployment(
        "drift-ingest",
        namespace,
        {
            "spec": {
                "replicas": 3,
                "template": {"spec": {"containers": [{"name": "ingest", "image": "evil/image:latest"}]}},
            }
        },
    )

    def restored():
        dep = kube.apps.read_namespaced_deployment("drift-ingest", namespace)
        return dep.spec.replicas == 1 and dep.spec.template.spec.containers[0].image == image

    wait_for(restored, 20, what="Deployment restored")
    assert "DriftCorrected" in kube.event_reasons(namespace, "drift")


def test_deleting_livestream_collects_children_but_keeps_recordings(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "gone", {"callType": calltype})
    kube.wait_reconciled(namespace, "gone")
    assert kube.children(namespace, "gone")

    kube.delete_livestream(namespace, "gone")
    wait_for(lambda: not kube.livestream_exists(namespace, "gone"), 30, what="Livestream deleted (finalizer released)")

    def collected():
        # The DVR claim is deleted too, but kubernetes.io/pvc-protection holds it while a pod
        # could still use it, so "being deleted" is the end state there.
        left = kube.children(namespace, "gone")
        return all(
            kind == "PersistentVolumeClaim" and obj["metadata"].get("deletionTimestamp")
            for (kind, _), obj in left.items()
        )

    # The garbage collector learns new CRDs on a 30 s discovery resync: allow for one.
    wait_for(collected, 90, what="children garbage-collected")
    rec = kube.core.read_namespaced_persistent_volume_claim("gone-recordings", namespace)
    assert rec.metadata.deletion_timestamp is None


def test_recording_disabled_renders_no_recorder(operator, kube, calltype, namespace):
    kube.create_livestream(
        namespace, "norec", {"callType": calltype, "settingsOverride": {"recording": {"mode": "disabled"}}}
    )
    kube.wait_reconciled(namespace, "norec")
    names = {name for _, name in kube.children(namespace, "norec")}
    assert "norec-recorder" not in names
    assert "norec-recordings" not in {
        p.metadata.name for p in kube.core.list_namespaced_persistent_volume_claim(namespace).items
    }


def test_operator_writes_only_status_finalizer_and_its_annotations(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "mine", {"callType": calltype, "phase": "live"})
    kube.wait_reconciled(namespace, "mine")
    kube.patch_livestream(namespace, "mine", {"spec": {"displayName": "changed"}})
    obj = kube.wait_reconciled(namespace, "mine")
    by_manager: dict[str, list[dict]] = {}
    for entry in obj["metadata"]["managedFields"]:
        by_manager.setdefault(entry["manager"], []).append(entry)
    ours = by_manager.get("onair-operator")
    assert ours and all(e.get("subresource") == "status" for e in ours), ours
    for manager, entries in by_manager.items():
        if manager == "onair-operator":
            continue
        for entry in entries:
            fields = entry.get("fieldsV1", {})
            if "f:spec" in fields:
                # Only the test client (the "user") ever wrote spec.
                assert entry["operation"] in ("Update", "Apply") and entry.get("subresource") is None
                assert manager not in ("kopf",), manager
            if entry.get("subresource") == "status":
                raise AssertionError(f"{manager} wrote status: {entry}")
    meta_writes = [
        e
        for m, es in by_manager.items()
        if m != "onair-operator"
        for e in es
        if "f:metadata" in e.get("fieldsV1", {}) and "f:spec" not in e.get("fieldsV1", {})
    ]
    for entry in meta_writes:
        # kopf's own bookkeeping: the finalizer and onair.dev/* annotations, nothing else.
        meta = entry["fieldsV1"]["f:metadata"]
        assert set(meta) <= {"f:finalizers", "f:annotations"}, meta
        for key in meta.get("f:annotations", {}):
            assert key.startswith("f:onair.dev/") or key == ".", key
    assert obj["metadata"]["finalizers"] == ["onair.dev/finalizer"]
