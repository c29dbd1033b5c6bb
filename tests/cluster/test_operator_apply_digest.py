"""Children are applied only when their rendered manifest changed, or the live object did; a
change of the Livestream polls its agents once; agents that do not answer cost no pod reads.

A no-op server-side apply leaves no trace on the object (same resourceVersion, same managedFields
time), so what the operator sends is counted where it arrives: this module runs its own API
server with an audit log of every write to the child kinds (``AUDIT_POLICY``), and its own
operator. The counts are per namespace, so nothing else in the cluster can disturb them. Agent
polls are counted where the operator asks for an agent's address (one question per poll), with a
status poll interval long enough that no periodic poll falls into the window.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import pytest

from onair.api.meta import MANIFEST_DIGEST_ANNOTATION
from tests.fixtures.cluster import CRD_DIR, official_client, wait_for
from tests.fixtures.operator import Kube, OperatorHandle

pytestmark = pytest.mark.cluster

# Creates and patches (server-side applies are patches) of the child kinds; kube-controller-manager
# writes them with update. And reads of pods and ConfigMaps (what an idle operator might poll).
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
  verbs: [list, get]
  resources:
  - group: ""
    resources: [pods, configmaps]
- level: Metadata
  verbs: [create, patch]
  resources:
  - group: ""
    resources: [secrets, configmaps, services, persistentvolumeclaims]
  - group: apps
    resources: [deployments]
  - group: networking.k8s.io
    resources: [networkpolicies]
- level: None
"""


POLL_INTERVAL = 30.0


class CountingOperator(OperatorHandle):
    """The test operator, counting how often it looks up an agent's address (once per poll of it)."""

    def __init__(self, kubeconfig: str) -> None:
        super().__init__(kubeconfig, poll_interval=POLL_INTERVAL)
        self.lookups: Counter = Counter()

    def resolver(self, namespace: str, livestream: str, role_key: str) -> Optional[str]:
        self.lookups[(namespace, livestream, role_key)] += 1
        return super().resolver(namespace, livestream, role_key)


class Audited(NamedTuple):
    kube: Kube
    operator: CountingOperator
    log: Path

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def writes(self, namespace: str, since: int) -> Counter:
        """(resource, name) -> server-side applies and creates of children in ``namespace`` after ``since``."""
        return self.requests(namespace, since, ("create", "patch"))

    def requests(self, namespace: Optional[str], since: int, verbs: tuple[str, ...]) -> Counter:
        """(resource, name) -> requests with one of ``verbs`` in ``namespace`` (None: cluster-wide
        ones) after ``since``."""
        out: Counter = Counter()
        if not self.log.exists():
            return out
        with open(self.log, "rb") as fh:
            fh.seek(since)
            for line in fh:
                event = json.loads(line)
                ref = event.get("objectRef") or {}
                if ref.get("namespace") != namespace or ref.get("subresource") or event.get("verb") not in verbs:
                    continue
                out[(ref.get("resource"), ref.get("name"))] += 1
        return out


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Iterator[Audited]:
    from onair.localcluster import apply
    from onair.localcluster.cluster import LocalCluster

    workdir = tmp_path_factory.mktemp("audited-cluster")
    policy, log = workdir / "audit-policy.yaml", workdir / "audit.log"
    policy.write_text(AUDIT_POLICY)
    cluster = LocalCluster(
        crd_paths=apply.yaml_files(CRD_DIR),
        apiserver_args=[
            f"--audit-policy-file={policy}",
            f"--audit-log-path={log}",
            "--audit-log-maxsize=0",
            "--audit-log-mode=blocking",
        ],
    ).start()
    api = official_client(cluster.kubeconfig_path)
    operator = CountingOperator(str(cluster.kubeconfig_path))
    try:
        operator.start()
        yield Audited(Kube(api), operator, log)
    finally:
        operator.stop()
        operator.mounts.close()
        api.close()
        cluster.stop()


@pytest.fixture
def ns(audited: Audited) -> Iterator[str]:
    from kubernetes import client

    name = f"t-digest-{secrets.token_hex(3)}"
    audited.kube.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    audited.kube.core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def ct(audited: Audited) -> Iterator[str]:
    name = f"ct-{secrets.token_hex(3)}"
    audited.kube.create_calltype(name)
    yield name
    audited.kube.delete_calltype(name)


def settled(audited: Audited, namespace: str, name: str) -> int:
    """Wait until the operator has stopped writing children (a new Livestream's credentials Secret
    is written more than once while its Services get addresses); the audit offset from then."""
    audited.kube.wait_reconciled(namespace, name)
    last = {"offset": -1, "writes": -1}

    def quiet() -> bool:
        offset = audited.offset()
        count = sum(audited.writes(namespace, 0).values())
        same = count == last["writes"]
        last.update(offset=offset, writes=count)
        return same

    wait_for(quiet, 30, interval=2.0, what="no more child writes")
    return last["offset"]


def test_changes_that_alter_no_child_apply_nothing(audited, ns, ct):
    kube = audited.kube
    kube.create_livestream(ns, "calm", {"callType": ct})
    since = settled(audited, ns, "calm")
    before = kube.resource_versions(ns, "calm")

    # A spec edit that no child reflects (the phase reaches the agents, not the manifests)...
    kube.patch_livestream(ns, "calm", {"spec": {"phase": "live", "displayName": "Calm show"}})
    obj = kube.wait_reconciled(ns, "calm")
    assert obj["status"]["observedGeneration"] == 2
    # ...and a metadata-only edit (kopf's update handler runs for labels and annotations too).
    kube.patch_livestream(ns, "calm", {"metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}}})
    wait_for(
        lambda: (
            '"note"'
            in kube.livestream(ns, "calm")["metadata"]["annotations"].get("onair.dev/last-handled-configuration", "")
        ),
        20,
        what="the metadata edit handled",
    )

    assert audited.writes(ns, since) == Counter()
    assert kube.resource_versions(ns, "calm") == before
    # What the operator compares with after a restart, and what a reader can check by hand.
    for (_, name), child in kube.children(ns, "calm").items():
        if not name.endswith(("-dvr", "-recordings")):  # claims are created once, never applied
            assert len(child["metadata"]["annotations"][MANIFEST_DIGEST_ANNOTATION]) == 64, name


def test_a_spec_edit_applies_only_the_children_it_changes(audited, ns, ct):
    kube = audited.kube
    kube.create_livestream(ns, "dvr", {"callType": ct})
    since = settled(audited, ns, "dvr")

    kube.patch_livestream(ns, "dvr", {"spec": {"settingsOverride": {"dvr": {"durationSeconds": 600}}}})
    kube.wait_reconciled(ns, "dvr")
    wait_for(lambda: kube.configmap_json(ns, "dvr-origin")["dvrWindowSeconds"] == 600, 20, what="origin config")
    # The origin's config and the Deployment that mounts it (its config hash), nothing else.
    assert set(audited.writes(ns, since)) == {("configmaps", "dvr-origin"), ("deployments", "dvr-origin")}


def test_a_deleted_or_edited_child_is_restored_alone(audited, ns, ct):
    kube = audited.kube
    kube.create_livestream(ns, "gone", {"callType": ct})
    since = settled(audited, ns, "gone")
    original = kube.configmap_json(ns, "gone-origin")
    old_uid = kube.core.read_namespaced_config_map("gone-origin", ns).metadata.uid

    kube.core.delete_namespaced_config_map("gone-origin", ns)

    def recreated() -> bool:
        cm = kube.children(ns, "gone").get(("ConfigMap", "gone-origin"))
        return cm is not None and cm["metadata"]["uid"] != old_uid

    wait_for(recreated, 20, what="the deleted ConfigMap created again")
    assert kube.configmap_json(ns, "gone-origin") == original
    assert set(audited.writes(ns, since)) == {("configmaps", "gone-origin")}

    # A hand edit that keeps the digest annotation is drift all the same.
    since = audited.offset()
    kube.core.patch_namespaced_config_map("gone-transcoder", ns, {"data": {"config.json": "{}"}})
    wait_for(lambda: kube.configmap_json(ns, "gone-transcoder") != {}, 20, what="the edited ConfigMap restored")
    assert set(audited.writes(ns, since)) == {("configmaps", "gone-transcoder")}


def test_after_a_restart_a_child_edited_or_deleted_meanwhile_is_repaired(audited, ns, ct):
    kube = audited.kube
    kube.create_livestream(ns, "down", {"callType": ct})
    settled(audited, ns, "down")
    since = audited.offset()
    original = kube.configmap_json(ns, "down-origin")
    image = kube.apps.read_namespaced_deployment("down-ingest", ns).spec.template.spec.containers[0].image
    with audited.operator.stopped():
        # Both keep the digest annotation that matches the render: a restarted operator must not
        # take it for proof that the object is as it applied it.
        kube.core.patch_namespaced_config_map("down-origin", ns, {"data": {"config.json": "{}"}})
        kube.apps.delete_namespaced_deployment("down-ingest", ns)
    wait_for(lambda: kube.configmap_json(ns, "down-origin") == original, 30, what="ConfigMap restored after restart")

    def redeployed() -> bool:
        dep = kube.children(ns, "down").get(("Deployment", "down-ingest"))
        return dep is not None and dep["spec"]["template"]["spec"]["containers"][0]["image"] == image

    wait_for(redeployed, 30, what="Deployment created again after restart")

    # What nobody touched while the operator was down is not sent again: the live object carries
    # the digest of its manifest and no write of anyone else since the operator's last apply
    # (Deployments do: kube-controller-manager writes their revision annotation).
    assert {(resource, name) for resource, name in audited.writes(ns, since) if resource != "deployments"} == {
        ("configmaps", "down-origin")
    }


def test_a_change_of_the_livestream_polls_its_agents_once(audited, ns, ct):
    """The update handler polls the agents; the daemon it wakes only re-arms its timer instead of
    polling them all again at once."""
    kube, lookups = audited.kube, audited.operator.lookups
    kube.create_livestream(ns, "once", {"callType": ct})
    kube.wait_reconciled(ns, "once")
    origin = (ns, "once", "origin")
    # The first desired state sent makes the operator poll every second for a while: wait that out.
    seen = {"polls": -1}

    def quiet() -> bool:
        same = lookups[origin] == seen["polls"]
        seen["polls"] = lookups[origin]
        return same

    wait_for(quiet, POLL_INTERVAL, interval=3.0, what="the polls after creation to end")

    before = lookups[origin]
    kube.patch_livestream(ns, "once", {"metadata": {"labels": {"poll": "once"}}})
    wait_for(
        lambda: (
            '"poll"'
            in kube.livestream(ns, "once")["metadata"]["annotations"].get("onair.dev/last-handled-configuration", "")
        ),
        20,
        what="the edit handled",
    )
    wait_for(lambda: lookups[origin] > before, 5, what="the agents polled for the edit")
    # A second poll would follow at once (the daemon woken); the next periodic one is far off.
    time.sleep(3)
    assert lookups[origin] == before + 1


def test_agents_that_do_not_answer_cost_no_pod_reads_and_their_pod_says_why(audited, ns, ct):
    """No agent runs here, so every poll finds them all missing. Why their pods do not run comes
    from the operator's pods watch, not from a pod listing per Livestream and poll; a pod's
    problem reaches the Ready condition when the watch sees it, not at the next poll. Nor does the
    webhook delivery loop list the cluster's outboxes every few seconds when none was queued."""
    kube = audited.kube
    kube.create_livestream(ns, "idle", {"callType": ct})
    since, started = settled(audited, ns, "idle"), time.monotonic()
    # Each spec edit polls every agent once more, all of them unreachable.
    for phase in ("backstage", "live"):
        kube.patch_livestream(ns, "idle", {"spec": {"phase": phase}})
        kube.wait_reconciled(ns, "idle")

    # A window of several of the old 2 s outbox scans; the once-a-minute backstop may fall into it.
    time.sleep(max(0.0, started + 8 - time.monotonic()))
    pod_reads = audited.requests(ns, since, ("list", "get"))
    assert pod_reads == Counter(), pod_reads
    outbox_scans = audited.requests(None, since, ("list",))[("configmaps", None)]
    assert outbox_scans <= 1, outbox_scans

    def origin_pod() -> Optional[str]:
        pods = kube.core.list_namespaced_pod(
            ns, label_selector="onair.dev/livestream=idle,app.kubernetes.io/component=origin"
        ).items
        return pods[0].metadata.name if pods else None

    pod = wait_for(origin_pod, 30, what="the ReplicaSet controller creating the origin pod")

    # No scheduler runs here: the test writes what kube-scheduler writes for a pod it cannot place.
    why = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    kube.core.patch_namespaced_pod_status(
        pod,
        ns,
        {
            "status": {
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why}]
            }
        },
    )

    def ready_message() -> Optional[str]:
        conds = {c["type"]: c for c in kube.livestream(ns, "idle").get("status", {}).get("conditions") or ()}
        message = (conds.get("Ready") or {}).get("message") or ""
        return message if why in message else None

    # Well before the next periodic poll (POLL_INTERVAL).
    message = wait_for(ready_message, 10, interval=0.5, what="the Ready condition naming the pod's problem")
    assert f"pod {pod} cannot be scheduled" in message, message
