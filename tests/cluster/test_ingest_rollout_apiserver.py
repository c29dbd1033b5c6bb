"""The ingest slots' staggered rollout against the real API server and Deployment controller: what
the operator writes (the held slot's Deployment paused with its new template, so the Deployment
controller starts no new ReplicaSet for it) and the bound on the hold.

There is no kubelet here, so no pod ever becomes Ready: the first slot never rolls out, which is
exactly the case the bound is for. The test shortens the bound (the operator runs in-process).
On the real node, `tests/kube/test_media_pods_on_node.py` runs the whole rollout with encoders.
"""

from __future__ import annotations

import secrets

import pytest

from onair.api.conditions import INGEST_ROLLOUT_NOT_BRIDGED, INGEST_ROLLOUT_STAGGERED
from onair.render import rollout
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import OperatorHandle

pytestmark = pytest.mark.cluster
HOLD_SECONDS = 6.0


def _replica_sets(kube, namespace: str, key: str) -> list:
    return kube.apps.list_namespaced_replica_set(
        namespace, label_selector=f"onair.dev/livestream=ro,app.kubernetes.io/component={key}"
    ).items


def test_a_new_image_holds_main_back_until_the_backup_rolled_out_or_the_bound_is_over(
    operator, kubeconfig, kube, namespace, monkeypatch
):
    apps = kube.apps
    monkeypatch.setattr(rollout, "HOLD_MAX_SECONDS", HOLD_SECONDS)
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct, settings={"ingest": {"protocols": ["rtmp"], "backup": True}})
    with operator.stopped():
        own = OperatorHandle(kubeconfig, pod_ips=True, config={"image": "onair:before"})
        own.start()
        try:
            kube.create_livestream(namespace, "ro", {"callType": ct})
            kube.wait_reconciled(namespace, "ro")
            for key in ("ingest", "ingest-backup"):
                wait_for(lambda: len(_replica_sets(kube, namespace, key)) == 1, 30, what=f"{key}'s ReplicaSet")
        finally:
            own.stop()
        # The upgrade: the same operator with a new image, as after `helm upgrade`.
        own = OperatorHandle(kubeconfig, pod_ips=True, config={"image": "onair:after"})
        own.start()
        try:

            def deployment(key):
                return apps.read_namespaced_deployment(f"ro-{key}", namespace)

            def held():
                main = deployment("ingest")
                return (
                    main.spec.paused and (main.metadata.annotations or {}).get(rollout.HELD_SINCE_ANNOTATION) and main
                )

            main = wait_for(held, 30, what="main's Deployment paused with the new template")
            assert main.spec.template.spec.containers[0].image == "onair:after"
            backup = deployment("ingest-backup")
            assert not backup.spec.paused and backup.spec.template.spec.containers[0].image == "onair:after"
            assert rollout.HELD_SINCE_ANNOTATION not in (backup.metadata.annotations or {})
            # The Deployment controller rolls the backup (a ReplicaSet of the new template) and not main.
            wait_for(
                lambda: len(_replica_sets(kube, namespace, "ingest-backup")) == 2,
                30,
                what="the backup's new ReplicaSet",
            )
            assert [rs.spec.template.spec.containers[0].image for rs in _replica_sets(kube, namespace, "ingest")] == [
                "onair:before"
            ]
            status = kube.wait_status(
                namespace,
                "ro",
                lambda s: any(
                    c["type"] == "Reconciling" and c["reason"] == INGEST_ROLLOUT_STAGGERED
                    for c in s.get("conditions") or ()
                ),
                timeout=15,
                what="the Reconciling condition naming the rollout",
            )["status"]
            [reconciling] = [c for c in status["conditions"] if c["type"] == "Reconciling"]
            assert "ingest-backup first" in reconciling["message"], reconciling
            reasons = [e["reason"] for e in kube.events(namespace, "ro")]
            assert INGEST_ROLLOUT_STAGGERED in reasons and INGEST_ROLLOUT_NOT_BRIDGED not in reasons, reasons

            # No kubelet: the backup never rolls out. Once the bound is over, main rolls anyway,
            # and a Warning says why.
            wait_for(lambda: not deployment("ingest").spec.paused, HOLD_SECONDS + 30, what="main released")
            main = deployment("ingest")
            assert rollout.HELD_SINCE_ANNOTATION not in (main.metadata.annotations or {})
            wait_for(lambda: len(_replica_sets(kube, namespace, "ingest")) == 2, 30, what="main's new ReplicaSet")
            [warning] = [e for e in kube.events(namespace, "ro") if e["reason"] == INGEST_ROLLOUT_NOT_BRIDGED]
            assert warning["type"] == "Warning"
            assert warning["message"].startswith(
                "ingest-backup did not roll out within 6 s (0 of 1 pods updated and available"
            ), warning
            kube.wait_status(
                namespace,
                "ro",
                lambda s: (
                    not any(
                        c["type"] == "Reconciling" and c["reason"] == INGEST_ROLLOUT_STAGGERED
                        for c in s.get("conditions") or ()
                    )
                ),
                timeout=15,
                what="the Reconciling condition of the rollout gone",
            )
            # Level-based: one hold, one release, nothing announced twice.
            reasons = [e["reason"] for e in kube.events(namespace, "ro")]
            assert reasons.count(INGEST_ROLLOUT_STAGGERED) == 1 and reasons.count(INGEST_ROLLOUT_NOT_BRIDGED) == 1
        finally:
            own.stop()
            kube.delete_calltype(ct)
