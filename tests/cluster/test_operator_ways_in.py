"""status.ingest shows the URLs encoders outside the cluster dial, once Kubernetes has assigned
them: the allocated nodePorts on the ingest pod's node (NodePort), the load balancer's address
(LoadBalancer).

There is no kubelet and no cloud here, so the test plays their parts on the real API server: it
marks the ingest pod Running on a node address (what the kubelet reports) and writes the
Service's status.loadBalancer (what a cloud's or MetalLB's controller writes).
"""

from __future__ import annotations

import secrets

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import OperatorHandle

pytestmark = pytest.mark.cluster
NODE_ADDRESS = "192.0.2.10"
LB_ADDRESS = "203.0.113.7"


def _own_operator(kubeconfig: str, **config) -> OperatorHandle:
    handle = OperatorHandle(kubeconfig, pod_ips=True, config=config)
    handle.start()
    return handle


def _node_ports(kube, namespace: str, name: str) -> dict[str, int]:
    svc = kube.core.read_namespaced_service(name, namespace)
    return {p.name: p.node_port for p in svc.spec.ports}


def _publish_url(kube, namespace: str, name: str, key: str = "rtmpPublishUrl") -> str:
    import base64

    data = kube.core.read_namespaced_secret(f"{name}-credentials", namespace).data or {}
    return base64.b64decode(data.get(key, "")).decode()


def test_node_port_status_shows_the_allocated_ports_on_the_ingest_pods_node(operator, kubeconfig, kube, namespace):
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct, settings={"ingest": {"protocols": ["rtmp", "srt"], "backup": True}})
    with operator.stopped():
        own = _own_operator(
            kubeconfig,
            ingest_service_type="NodePort",
            ingest_external_traffic_policy="Local",
            ingest_node_ports={"backup": {"rtmp": 30936}},
        )
        try:
            kube.create_livestream(namespace, "np", {"callType": ct})
            kube.wait_reconciled(namespace, "np")
            main = _node_ports(kube, namespace, "np-ingest")
            assert all(30000 <= p <= 32767 for p in main.values()) and set(main) == {"rtmp", "srt"}
            assert _node_ports(kube, namespace, "np-ingest-backup")["rtmp"] == 30936
            # No node runs the ingest pod yet: the in-cluster URL, which works from inside.
            status = kube.livestream(namespace, "np")["status"]
            assert "ingest" in status, status
            assert status["ingest"]["rtmp"] == f"rtmp://np-ingest.{namespace}.svc:1935/live"

            def ingest_pod(component):
                pods = kube.core.list_namespaced_pod(
                    namespace, label_selector=f"onair.dev/livestream=np,app.kubernetes.io/component={component}"
                ).items
                return pods[0] if pods else None

            for component in ("ingest", "ingest-backup"):
                pod = wait_for(lambda: ingest_pod(component), 30, what=f"the {component} pod")
                kube.core.patch_namespaced_pod_status(
                    pod.metadata.name,
                    namespace,
                    {
                        "status": {
                            "phase": "Running",
                            "podIP": "127.0.0.3",
                            "podIPs": [{"ip": "127.0.0.3"}],
                            "hostIP": NODE_ADDRESS,
                            "hostIPs": [{"ip": NODE_ADDRESS}],
                        }
                    },
                )
            status = kube.wait_status(
                namespace,
                "np",
                lambda s: NODE_ADDRESS in (s.get("ingest") or {}).get("backupRtmp", ""),
                timeout=30,
                what="status.ingest on the node address",
            )["status"]
            assert status["ingest"]["rtmp"] == f"rtmp://{NODE_ADDRESS}:{main['rtmp']}/live"
            assert status["ingest"]["srt"].startswith(f"srt://{NODE_ADDRESS}:{main['srt']}?")
            assert status["ingest"]["backupRtmp"] == f"rtmp://{NODE_ADDRESS}:30936/live"
            # The copy-paste publish URLs in the credentials Secret follow.
            wait_for(
                lambda: _publish_url(kube, namespace, "np").startswith(f"rtmp://{NODE_ADDRESS}:{main['rtmp']}/live/"),
                30,
                what="rtmpPublishUrl on the node address",
            )
        finally:
            own.stop()
            kube.delete_calltype(ct)


def test_load_balancer_status_shows_its_address_once_assigned(operator, kubeconfig, kube, namespace):
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct, settings={"ingest": {"protocols": ["rtmp", "srt"]}})
    with operator.stopped():
        own = _own_operator(
            kubeconfig,
            ingest_service_type="LoadBalancer",
            ingest_service_annotations={"metallb.universe.tf/address-pool": "public"},
        )
        try:
            kube.create_livestream(namespace, "lb", {"callType": ct})
            kube.wait_reconciled(namespace, "lb")
            svc = kube.core.read_namespaced_service("lb-ingest", namespace)
            assert svc.spec.type == "LoadBalancer"
            assert svc.metadata.annotations["metallb.universe.tf/address-pool"] == "public"
            assert kube.livestream(namespace, "lb")["status"]["ingest"]["rtmp"].startswith("rtmp://lb-ingest.")
            kube.core.patch_namespaced_service_status(
                "lb-ingest", namespace, {"status": {"loadBalancer": {"ingress": [{"ip": LB_ADDRESS, "ipMode": "VIP"}]}}}
            )
            status = kube.wait_status(
                namespace,
                "lb",
                lambda s: LB_ADDRESS in (s.get("ingest") or {}).get("rtmp", ""),
                timeout=30,
                what="status.ingest on the load balancer's address",
            )["status"]
            assert status["ingest"]["rtmp"] == f"rtmp://{LB_ADDRESS}:1935/live"
            assert status["ingest"]["srt"].startswith(f"srt://{LB_ADDRESS}:9998?")
            wait_for(
                lambda: _publish_url(kube, namespace, "lb").startswith(f"rtmp://{LB_ADDRESS}:1935/live/"),
                30,
                what="rtmpPublishUrl on the load balancer's address",
            )
        finally:
            own.stop()
            kube.delete_calltype(ct)


from tests.cluster.test_render_apiserver import gateway_api  # noqa: E402,F401 - the Gateway API CRDs fixture


@pytest.mark.parametrize("kind", ["ingress", "httproute"])
def test_playback_route_is_applied_owned_and_its_url_is_in_status(
    operator, kubeconfig, kube, namespace, gateway_api, kind
):
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct)
    route = (
        {
            "playback_route": "ingress",
            "playback_host_template": "{name}.{namespace}.live.example.com",
            "playback_ingress_class": "traefik",
            "playback_tls_secret_template": "{name}-tls",
        }
        if kind == "ingress"
        else {
            "playback_route": "httproute",
            "playback_host_template": "live.example.com",
            "playback_path_template": "/{namespace}/{name}",
            "playback_gateway_name": "public",
            "playback_gateway_namespace": "gateways",
            "playback_https": True,
        }
    )
    with operator.stopped():
        own = _own_operator(kubeconfig, **route)
        try:
            kube.create_livestream(namespace, "rt", {"callType": ct})
            obj = kube.wait_reconciled(namespace, "rt")
            plural, group = (
                ("ingresses", "networking.k8s.io") if kind == "ingress" else ("httproutes", "gateway.networking.k8s.io")
            )
            stored = kube.custom.get_namespaced_custom_object(group, "v1", namespace, plural, "rt-playback")
            assert [r["uid"] for r in stored["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]
            base = (
                f"https://rt.{namespace}.live.example.com"
                if kind == "ingress"
                else f"https://live.example.com/{namespace}/rt"
            )
            assert obj["status"]["playback"]["hlsCmaf"] == f"{base}/hls/cmaf/master.m3u8"
            # Deleted by hand: restored (Ingresses are watched; HTTPRoutes at the next resync or change).
            if kind == "ingress":
                kube.custom.delete_namespaced_custom_object(group, "v1", namespace, plural, "rt-playback")
                wait_for(
                    lambda: _exists(kube, group, namespace, plural, "rt-playback"),
                    30,
                    what="the deleted Ingress restored",
                )
            # The route switched off: the restarted operator prunes it and status is in-cluster again.
            own.stop()
            own = _own_operator(kubeconfig)
            wait_for(
                lambda: not _exists(kube, group, namespace, plural, "rt-playback"),
                30,
                what=f"the {kind} pruned once the route is off",
            )
            kube.wait_status(
                namespace,
                "rt",
                lambda s: (
                    (s.get("playback") or {}).get("hlsCmaf", "").startswith(f"http://rt-origin.{namespace}.svc:8081/")
                ),
                timeout=30,
                what="in-cluster playback URLs",
            )
        finally:
            own.stop()
            kube.delete_calltype(ct)


def _exists(kube, group: str, namespace: str, plural: str, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.custom.get_namespaced_custom_object(group, "v1", namespace, plural, name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
