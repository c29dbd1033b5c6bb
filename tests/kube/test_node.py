"""The local node runs what a real single-node cluster runs: pods, Service DNS, ClusterIP and
NodePort forwarding (kube-proxy, iptables), PVCs through a provisioner, logs and exec."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from urllib.parse import urlsplit

import pytest

from onair.localcluster import certs
from onair.localcluster.node import (
    DNS_SERVICE_IP,
    GUARD_ROUTES,
    LOCAL_PATH_PROVISIONER_NAME,
    STORAGE_CLASS,
    LocalNodeCluster,
)
from tests.fixtures.cluster import wait_for

# Also the tests that start nodes of their own, without the fixtures.
pytestmark = [pytest.mark.kube, pytest.mark.slow]

HTTPD = [
    "sh",
    "-c",
    'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www',
]
SLEEP = ["sleep", "3600"]


def _service(core, namespace: str, name: str, selector: dict, port: int, target: int, node_port: bool = False):
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "NodePort" if node_port else "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }
    return core.create_namespaced_service(namespace, body)


def test_pod_reaches_running_on_the_node(node_cluster, node_namespace):
    node_cluster.pod(node_namespace, "sleeper", SLEEP)
    pod = node_cluster.wait_running(node_namespace, "sleeper")
    assert pod.spec.node_name == node_cluster.node.name
    assert pod.status.pod_ip and pod.status.pod_ip.startswith("10.244.0.")
    assert pod.status.host_ip == node_cluster.node.node_ip


def test_logs_and_exec_go_through_the_kubelet(node_cluster, node_namespace):
    node_cluster.pod(node_namespace, "talker", ["sh", "-c", "echo line-one; echo line-two >&2; exec sleep 3600"])
    node_cluster.wait_running(node_namespace, "talker")
    core = node_cluster.core()
    logs = wait_for(
        lambda: (text := core.read_namespaced_pod_log("talker", node_namespace)) and "line-two" in text and text,
        timeout=20,
        what="pod logs",
    )
    # stdout and stderr reach the log through separate pipes: their relative order is not kept.
    assert sorted(logs.splitlines()) == ["line-one", "line-two"]
    out = node_cluster.exec(node_namespace, "talker", ["sh", "-c", "echo $((6*7)); cat /etc/hostname"])
    assert out.split() == ["42", "talker"]


def test_service_dns_name_resolves_and_cluster_ip_forwards(node_cluster, node_namespace):
    core = node_cluster.core()
    node_cluster.pod(node_namespace, "web", HTTPD, labels={"app": "web"})
    node_cluster.pod(node_namespace, "client", SLEEP)
    svc = _service(core, node_namespace, "web", {"app": "web"}, 80, 8080)
    cluster_ip = svc.spec.cluster_ip
    node_cluster.wait_running(node_namespace, "web")
    node_cluster.wait_running(node_namespace, "client")

    resolv = node_cluster.exec(node_namespace, "client", ["cat", "/etc/resolv.conf"])
    assert f"nameserver {DNS_SERVICE_IP}" in resolv
    assert f"search {node_namespace}.svc.{certs.CLUSTER_DOMAIN}" in resolv

    fqdn = f"web.{node_namespace}.svc.{certs.CLUSTER_DOMAIN}"
    # CoreDNS learns the Service from the API (through the `kubernetes` ClusterIP) a moment later.
    answer = wait_for(
        lambda: (out := node_cluster.exec(node_namespace, "client", ["nslookup", fqdn])) and cluster_ip in out and out,
        timeout=30,
        what=f"{fqdn} in CoreDNS",
    )
    assert re.search(rf"Address:\s*{re.escape(cluster_ip)}", answer), answer
    # ClusterIP -> pod through kube-proxy's iptables rules, by full name and by search path.
    for url in (f"http://{fqdn}/", "http://web/", f"http://{cluster_ip}/"):
        body = wait_for(
            lambda: node_cluster.exec(node_namespace, "client", ["timeout", "5", "wget", "-qO-", url]),
            timeout=30,
            what=f"GET {url}",
        )
        assert body.strip() == "hello from web", url


def test_kubernetes_service_forwards_to_the_apiserver(node_cluster, node_namespace):
    """In-cluster clients (the operator's pod; CoreDNS and local-path-provisioner already) dial
    the `kubernetes` Service ClusterIP, which must lead to kube-apiserver on the host."""
    core = node_cluster.core()
    ep = core.read_namespaced_endpoints("kubernetes", "default")
    assert [a.ip for a in ep.subsets[0].addresses] == [node_cluster.node.host_ip]
    assert ep.subsets[0].ports[0].port == urlsplit(node_cluster.cluster.server_url).port
    node_cluster.pod(node_namespace, "incluster", SLEEP)
    node_cluster.wait_running(node_namespace, "incluster")
    env = node_cluster.exec(node_namespace, "incluster", ["sh", "-c", "echo $KUBERNETES_SERVICE_HOST"])
    assert env.strip() == certs.KUBERNETES_SERVICE_IP
    # busybox has no TLS client the apiserver accepts; plain HTTP to its TLS port gets Go's
    # distinctive answer, which only the apiserver behind the Service can give.
    out = node_cluster.exec(
        node_namespace,
        "incluster",
        [
            "sh",
            "-c",
            f"printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc kubernetes.default.svc.{certs.CLUSTER_DOMAIN} 443",
        ],
    )
    assert "Client sent an HTTP request to an HTTPS server" in out, out


def test_node_port_is_reachable_from_the_host_on_the_node_address(node_cluster, node_namespace):
    core = node_cluster.core()
    node_cluster.pod(node_namespace, "np", HTTPD, labels={"app": "np"})
    svc = _service(core, node_namespace, "np", {"app": "np"}, 80, 8080, node_port=True)
    node_port = svc.spec.ports[0].node_port
    node_cluster.wait_running(node_namespace, "np")
    url = f"http://{node_cluster.node.node_ip}:{node_port}/"

    def get():
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.read().decode()

    assert wait_for(get, timeout=30, what=f"GET {url} from the host").strip() == "hello from np"


def test_pvc_binds_through_the_provisioner_and_a_pod_writes_to_it(node_cluster, node_namespace):
    core = node_cluster.core()
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        # No storageClassName: the default class, as an operator's PVC would get.
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }
    core.create_namespaced_persistent_volume_claim(node_namespace, claim)
    node_cluster.pod(
        node_namespace,
        "writer",
        ["sh", "-c", "echo persisted > /data/proof && exec sleep 3600"],
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        mounts=[{"name": "data", "mountPath": "/data"}],
    )
    node_cluster.wait_running(node_namespace, "writer", timeout=120)
    pvc = core.read_namespaced_persistent_volume_claim("data", node_namespace)
    assert pvc.status.phase == "Bound"
    assert pvc.spec.storage_class_name == STORAGE_CLASS
    pv = core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == LOCAL_PATH_PROVISIONER_NAME
    host_dir = pv.spec.host_path.path
    # The volume is a directory on the node's disk, and the pod's write landed there.
    with open(f"{host_dir}/proof") as fh:
        assert fh.read() == "persisted\n"
    assert node_cluster.exec(node_namespace, "writer", ["cat", "/data/proof"]) == "persisted\n"


def _host_iptables() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True).stdout


def test_teardown_leaves_no_process_mount_link_chain_or_namespace_behind():
    """A node of its own, used the way tests use one (a PVC mounted, a NodePort, exec), then
    stopped: nothing of it may remain on the host."""
    kc = LocalNodeCluster()
    try:
        kc.start()
        from tests.fixtures.node import NodeClusterHandle

        h = NodeClusterHandle(kc)
        core = h.core()
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "td"}})
        core.create_namespaced_persistent_volume_claim(
            "td",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "vol"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Mi"}}},
            },
        )
        h.pod(
            "td",
            "user",
            HTTPD,
            labels={"app": "user"},
            volumes=[{"name": "vol", "persistentVolumeClaim": {"claimName": "vol"}}],
            mounts=[{"name": "vol", "mountPath": "/vol"}],
            ports=[{"containerPort": 8080, "hostPort": 18080}],
        )
        _service(core, "td", "user", {"app": "user"}, 80, 8080, node_port=True)
        h.wait_running("td", "user", timeout=120)
        assert h.exec("td", "user", ["sh", "-c", "echo x > /vol/x && cat /vol/x"]) == "x\n"
        node = kc.node
        # While it runs, the node's things exist (so the check below can see them go).
        assert node.leftovers(), "a running node should show up in leftovers()"
        chains = node.exec_in_netns(["iptables-save"]).stdout
        assert "KUBE-SERVICES" in chains and "CNI-HOSTPORT-DNAT" in chains
        assert "KUBE-" not in _host_iptables() and "CNI-" not in _host_iptables()
        # The host drops traffic to the cluster ranges while a node exists, never routes it away.
        routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
        for net in GUARD_ROUTES:
            assert f"blackhole {net}" in routes, routes
        h.close()
    finally:
        problems = kc.stop()
    assert problems == []
    assert kc.node.leftovers() == []
    assert kc.node.host_if not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert kc.node.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "KUBE-" not in _host_iptables() and "CNI-" not in _host_iptables()
    with open("/proc/self/mountinfo") as fh:
        mounts = fh.read()
    assert kc.node.netns not in mounts and str(kc.node.state_dir) not in mounts


_KILLED_OWNER = """
import sys, time
from onair.localcluster.node import LocalNodeCluster
kc = LocalNodeCluster().start()
print("NODE", kc.node.state_dir, kc.node.netns, kc.node.host_if, kc.node.cgroup, flush=True)
time.sleep(600)
"""


def test_a_node_whose_owner_was_killed_is_reaped_by_the_next_one(tmp_path):
    """pytest killed by a timeout cannot clean up: its containers and shims outlive it. The next
    node start must remove them, with the namespace, link, cgroups and state dir."""
    import os
    import signal
    import sys

    from onair.localcluster import node as nodemod

    owner = subprocess.Popen(
        [sys.executable, "-c", _KILLED_OWNER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        for out in owner.stdout:
            if out.startswith("NODE "):
                break
        else:
            pytest.fail(f"node did not start (exit {owner.wait()})")
        state_dir, netns, host_if, cgroup = out.split()[1:]
        # CoreDNS and the provisioner run: there are containers to outlive their owner.
        assert nodemod.node_processes(cgroup_root="/" + cgroup)
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    survivors = wait_for(
        lambda: nodemod.node_processes(cgroup_root="/" + cgroup) or None,
        timeout=5,
        what="containers surviving their owner",
    )
    assert survivors
    reaped = nodemod.reap_stale_nodes()
    assert state_dir in [str(d) for d in reaped]
    assert nodemod.node_processes(marker=state_dir, cgroup_root="/" + cgroup) == []
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert host_if not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not [h for h in nodemod.cgroup_hierarchies() if (h / cgroup).exists()]
    with open("/proc/self/mountinfo") as fh:
        mounts = fh.read()
    assert netns not in mounts and state_dir not in mounts
    assert not os.path.exists(state_dir)
    # The killed owner's control plane died with it; its run dir goes as the next cluster's would.
    from onair.localcluster.cluster import _run_base, reap_stale_run_dirs

    reap_stale_run_dirs(_run_base())
