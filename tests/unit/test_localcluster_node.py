"""Pure parts of the local node: address picking, process selection guards, configs, images."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import random
import tarfile
import tomllib
from pathlib import Path

import pytest

from onair.localcluster import certs, images, node


def test_pick_link_skips_every_used_network_and_stays_in_the_pool():
    pool = ipaddress.ip_network("10.201.0.0/28")  # four /30s
    used = [
        ipaddress.ip_network("10.201.0.0/30"),
        ipaddress.ip_network("10.201.0.9/32"),
        ipaddress.ip_network("10.201.0.12/30"),
    ]
    for seed in range(20):
        link = node.pick_link(used, pool, random.Random(seed))
        assert link == ipaddress.ip_network("10.201.0.4/30")


def test_pick_link_fails_clearly_when_the_pool_is_full():
    pool = ipaddress.ip_network("10.201.0.0/29")
    with pytest.raises(node.NodeError, match="no free /30"):
        node.pick_link([pool], pool)


def test_link_pool_and_cluster_ranges_do_not_overlap():
    ranges = [ipaddress.ip_network(r) for r in (node.CLUSTER_CIDR, certs.SERVICE_CIDR, str(node.LINK_POOL))]
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    assert ipaddress.ip_address(node.DNS_SERVICE_IP) in ipaddress.ip_network(certs.SERVICE_CIDR)
    assert ipaddress.ip_network(node.POD_CIDR).subnet_of(ipaddress.ip_network(node.CLUSTER_CIDR))


@pytest.mark.parametrize(
    "kw", [{"cgroup_root": "/"}, {"cgroup_root": "/kubepods"}, {"marker": "/tmp"}, {"marker": "/"}]
)
def test_process_selection_refuses_anything_but_a_node_s_own_names(kw):
    # A shortened selector would match the whole machine; it must be an error, never a match.
    with pytest.raises(ValueError):
        node.node_processes(**kw)


def test_process_selection_ignores_the_callers_own_namespaces():
    own = [(kind, os.stat(f"/proc/self/ns/{kind}").st_ino) for kind in ("mnt", "net")]
    assert node.node_processes(namespaces=own) == []


def test_cgroup_names_are_checked_before_anything_is_created_or_removed():
    for bad in ("", "kubepods", "onair-node-x/../..", "/"):
        with pytest.raises(ValueError):
            node.create_cgroup_root(bad)
        with pytest.raises(ValueError):
            node.remove_cgroup_root(bad)


def test_containerd_config_confines_it_and_carries_the_measured_settings(tmp_path):
    cfg = tomllib.loads(
        node.containerd_config(tmp_path, sandbox_image="onair.local/pause:1", cni_conf_dir=tmp_path / "net.d")
    )
    cri = cfg["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "onair.local/pause:1"
    assert cri["cni"]["conf_dir"] == str(tmp_path / "net.d")
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    for key in ("root", "state"):
        assert cfg[key].startswith(str(tmp_path))
    assert cfg["grpc"]["address"].startswith(str(tmp_path))
    assert cfg["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith(str(tmp_path))


def test_kubelet_config_for_cgroup_v1_without_host_side_effects(tmp_path):
    cfg = node.kubelet_config(
        node_ip="10.201.0.2",
        cgroup_root="/onair-node-x",
        client_ca=tmp_path / "ca.crt",
        runtime_socket=tmp_path / "c.sock",
        resolv_conf=tmp_path / "resolv.conf",
    )
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["cgroupRoot"] == "/onair-node-x"
    assert cfg["clusterDNS"] == [node.DNS_SERVICE_IP]
    assert cfg["resolvConf"] == str(tmp_path / "resolv.conf")
    assert cfg["authentication"]["anonymous"]["enabled"] is False
    assert cfg["readOnlyPort"] == 0


def test_kube_proxy_leaves_host_wide_conntrack_settings_alone(tmp_path):
    cfg = node.kube_proxy_config(kubeconfig=tmp_path / "kc", node_name="n", node_ip="10.201.0.2")
    assert cfg["mode"] == "iptables"
    assert cfg["conntrack"]["maxPerCore"] == 0
    assert cfg["nodePortAddresses"] == ["10.201.0.2/32"]


def test_cluster_dns_never_forwards_off_the_node():
    corefile = next(d for d in node.coredns_documents("img") if d["kind"] == "ConfigMap")["data"]["Corefile"]
    assert "forward" not in corefile and "kubernetes cluster.local" in corefile
    deploy = next(d for d in node.coredns_documents("img") if d["kind"] == "Deployment")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_cni_config_masquerades_pod_traffic_and_keeps_ipam_state_in_the_node(tmp_path):
    cfg = node.cni_config(tmp_path / "ipam")
    bridge = cfg["plugins"][0]
    assert bridge["ipMasq"] is True
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.POD_CIDR}]]


def test_cluster_options_need_the_network_first():
    with pytest.raises(node.NodeError, match="create_network"):
        node.Node().cluster_options()


# ----------------------------------------------------------------------------- images


def _image(tmp_path: Path) -> images.Image:
    binary = tmp_path / "tool"
    binary.write_bytes(b"#!/bin/sh\necho hi\n")
    return images.Image(
        "tool",
        "1.0",
        (
            images.Entry("bin/tool", source=binary),
            images.Entry("bin/alias", link="/bin/tool"),
            images.Entry("etc/conf", data=b"x=1\n", mode=0o644),
            images.Entry("tmp", mode=0o1777),
        ),
        entrypoint=("/bin/tool",),
    )


def test_oci_archive_is_a_valid_layout_named_for_containerd(tmp_path):
    out = tmp_path / "img.tar"
    images.write_archive(_image(tmp_path), out)
    with tarfile.open(out) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    desc = index["manifests"][0]
    assert desc["annotations"]["io.containerd.image.name"] == "onair.local/tool:1.0"
    assert desc["platform"] == {"architecture": images.ARCH, "os": "linux"}
    # Every blob is stored under its digest, with the size its descriptor says.
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files["blobs/sha256/" + desc["digest"].split(":")[1]])
    assert len(files["blobs/sha256/" + desc["digest"].split(":")[1]]) == desc["size"]
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    layer_digest = manifest["layers"][0]["digest"]
    assert config["rootfs"]["diff_ids"] == [layer_digest]  # uncompressed: diff id == digest
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    layer = tarfile.open(fileobj=io.BytesIO(files["blobs/sha256/" + layer_digest.split(":")[1]]))
    members = {m.name: m for m in layer.getmembers()}
    assert members["bin/tool"].mode == 0o755 and members["bin/alias"].issym()
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["bin"].isdir()  # parents are added


def test_oci_archive_is_reproducible(tmp_path):
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    images.write_archive(_image(tmp_path), a)
    images.write_archive(_image(tmp_path), b)
    assert a.read_bytes() == b.read_bytes()


def test_image_key_changes_with_the_binary(tmp_path):
    img = _image(tmp_path)
    k1 = img.key()
    (tmp_path / "tool").write_bytes(b"#!/bin/sh\necho changed, and longer\n")
    assert _image(tmp_path).key() != k1
