"""The production way to reach agents: the IPs of the agent pods, learnt from a pods watch.

There is no kubelet here, so the test plays its part: it marks the ingest pod the Deployment
created as Running with a loopback IP, where a real ingest agent listens on the agent port.
"""

from __future__ import annotations

import secrets
import socket
import urllib.request

import pytest

from onair.roles import AGENT_PORT
from tests.fixtures.cluster import wait_for
from tests.fixtures.operator import OperatorHandle

pytestmark = [pytest.mark.cluster, pytest.mark.media]
POD_IP = "127.0.0.2"  # all of 127/8 is loopback on Linux: a private "pod IP" with port 8080 free


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As the agent's server binds: TIME_WAIT leftovers of an earlier run do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def test_agents_are_reached_at_their_pod_ips(operator, kubeconfig, kube, namespace, ingest_agent, publishers):
    if not _port_free(POD_IP, AGENT_PORT):
        pytest.skip(f"{POD_IP}:{AGENT_PORT} is in use")
    ct = f"ct-{secrets.token_hex(3)}"
    kube.create_calltype(ct)
    with operator.stopped():
        own = OperatorHandle(kubeconfig, pod_ips=True)
        own.start()
        try:
            main = ingest_agent.start(
                slot="main",
                protocols=("rtmp",),
                livestream=f"{namespace}/pods",
                listen_host=POD_IP,
                agent_port=AGENT_PORT,
                wait_ready=False,
            )
            kube.create_livestream(namespace, "pods", {"callType": ct, "phase": "live"})
            kube.wait_reconciled(namespace, "pods")

            def ingest_pod():
                pods = kube.core.list_namespaced_pod(
                    namespace, label_selector="onair.dev/livestream=pods,app.kubernetes.io/component=ingest"
                ).items
                return pods[0] if pods else None

            pod = wait_for(ingest_pod, 30, what="the ReplicaSet controller creating the ingest pod")
            own.mount(namespace, "pods", "ingest", main)  # the pod's Secret volume, before it runs
            wait_for(lambda: own.mounted(namespace, "pods", "ingest"), 20, what="the agent token mounted")
            kube.core.patch_namespaced_pod_status(
                pod.metadata.name,
                namespace,
                {"status": {"phase": "Running", "podIP": POD_IP, "podIPs": [{"ip": POD_IP}]}},
            )

            # The fixture's own readiness check dials 127.0.0.1; this agent listens on the pod IP.
            wait_for(
                lambda: urllib.request.urlopen(f"http://{POD_IP}:{AGENT_PORT}/readyz", timeout=2).status == 200,
                20,
                what="ingest agent ready on the pod IP",
            )
            publishers.rtmp(f"rtmp://{POD_IP}:{main.ports.rtmp}/live/{main.stream_key}", width=320, height=180, fps=15)
            kube.wait_status(namespace, "pods", lambda s: s.get("live") is True, timeout=30, what="live via the pod IP")

            # A pod that stops running is unreachable at once, and reachable again when it runs.
            kube.core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"phase": "Failed"}})
            kube.wait_status(namespace, "pods", lambda s: s.get("live") is False, timeout=30, what="pod failed")
            kube.core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"phase": "Running"}})
            kube.wait_status(namespace, "pods", lambda s: s.get("live") is True, timeout=30, what="pod running again")

            # The pod goes away: its address is forgotten, the stream is no longer live.
            kube.core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
            kube.wait_status(namespace, "pods", lambda s: s.get("live") is False, timeout=30, what="pod gone")
        finally:
            own.stop()
            own.mounts.close()
            kube.delete_calltype(ct)
