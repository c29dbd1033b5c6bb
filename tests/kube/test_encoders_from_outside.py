"""Encoders outside the cluster push every protocol through the ways in the chart opens.

The host plays the encoder on the Internet: it reaches the node's address only (the host has no
route to the pod or Service ranges: the node's guard routes blackhole them). One helm install
with the ingest Service as a NodePort and the ingest TLS Secret set, one Livestream with RTMP(S),
SRT and WHIP; each test pushes from the host's ffmpeg (or aiortc) to the URL of the credentials
Secret exactly as given, and waits for `status.live`.

Kept small for 2 cores: one helm install, one Livestream, one 360p rung, short pushes.
"""
from __future__ import annotations

import base64
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.ingest import self_signed_cert
from tests.fixtures.kube import (ffmpeg_push, install_onair, livestream_status, pod_logs, pod_problems,
                                 restricted_namespace, uninstall_in_user_order, wait_pods_ready)

pytestmark = [pytest.mark.kube, pytest.mark.slow]

RELEASE = "onair"
LS = "show"
TLS_SECRET = "ingest-tls"
MEDIA_PODS = 3  # ingest, transcoder, origin (no recording)


@dataclass
class Outside:
    node_cluster: object
    ls_ns: str
    op_ns: str
    core: object
    custom: object
    encoders: list = field(default_factory=list)

    def status(self) -> dict:
        return livestream_status(self.custom, self.ls_ns, LS)

    def secret(self) -> dict[str, str]:
        got = self.core.read_namespaced_secret(self.status()["credentialsSecret"], self.ls_ns)
        return {k: base64.b64decode(v).decode() for k, v in (got.data or {}).items()}

    def node_ports(self) -> dict[str, int]:
        return {p.name: p.node_port for p in self.core.read_namespaced_service(f"{LS}-ingest", self.ls_ns).spec.ports}

    def diagnostics(self) -> str:
        return (f"{pod_problems(self.core, self.ls_ns)}\n{pod_logs(self.core, self.ls_ns, f'app.kubernetes.io/instance={LS}')}"
                f"\nstatus: {self.status()}")

    def until(self, predicate, timeout: float, what: str):
        try:
            return wait_for(predicate, timeout=timeout, interval=0.5, what=what)
        except BaseException:
            print(self.diagnostics())
            raise

    def push_from_host(self, fmt: str, url: str, what: str) -> None:
        """ffmpeg on the host pushes to ``url`` until status.live; then it stops and live goes false."""
        encoder = subprocess.Popen(ffmpeg_push(fmt, url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        self.encoders.append(encoder)
        try:
            try:
                self.until(lambda: encoder.poll() is None and self.status().get("live") is True, 90,
                           f"status.live from the host's {what} push to {url}")
            except BaseException:
                if encoder.poll() is not None:
                    print(f"the host's ffmpeg exited {encoder.returncode}: {encoder.stderr.read()}")
                raise
        finally:
            encoder.terminate()
            _, err = encoder.communicate(timeout=10)
        assert "Error" not in (err or ""), err
        self.until(lambda: self.status().get("live") is False, 60, f"status.live false once the {what} push stopped")


@pytest.fixture(scope="module")
def outside(node_cluster, onair_image, tmp_path_factory):
    from kubernetes import client

    core = node_cluster.core()
    custom = client.CustomObjectsApi(node_cluster.api)
    suffix = str(int(time.time()) % 100000)
    op_ns = restricted_namespace(core, f"onair-system-{suffix}")
    ls_ns = restricted_namespace(core, f"outside-{suffix}")
    o = Outside(node_cluster, ls_ns, op_ns, core, custom)
    installed = False
    try:
        # RTMPS and HTTPS WHIP: the ingest's certificate, as cert-manager would leave it.
        cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"), node_cluster.node.node_ip)
        core.create_namespaced_secret(ls_ns, client.V1Secret(
            metadata=client.V1ObjectMeta(name=TLS_SECRET), type="kubernetes.io/tls",
            data={"tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                  "tls.key": base64.b64encode(key.read_bytes()).decode()}))
        install_onair(node_cluster, onair_image, RELEASE, op_ns,
                      "--set", f"livestreams.ingest.tlsSecret={TLS_SECRET}")
        installed = True
        custom.create_namespaced_custom_object("onair.dev", "v1alpha1", ls_ns, "livestreams", {
            "apiVersion": "onair.dev/v1alpha1", "kind": "Livestream", "metadata": {"name": LS},
            "spec": {"callType": "development", "settingsOverride": {
                "ingest": {"protocols": ["rtmp", "srt", "whip"], "backup": False},
                "broadcasting": {"hls": {"qualityTracks": ["360p"]}, "segmentDurationSeconds": 1,
                                 "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False}},
                "dvr": {"durationSeconds": 60},
                "recording": {"mode": "disabled"},
                "screenshots": {"enabled": False},
            }}})
        wait_pods_ready(core, ls_ns, f"app.kubernetes.io/instance={LS}", MEDIA_PODS, 240,
                        "the Livestream's media pods")
        node_ip = node_cluster.node.node_ip
        o.until(lambda: o.status().get("credentialsSecret") and node_ip in o.secret().get("srtPublishUrl", ""), 60,
                "publish URLs on the node's address (the ingest's NodePorts)")
        yield o
    finally:
        for enc in o.encoders:
            if enc.poll() is None:
                enc.kill()
        uninstall_in_user_order(core, custom, livestream_ns=ls_ns, operator_ns=op_ns,
                                release=RELEASE if installed else None, kubeconfig=node_cluster.kubeconfig)


def test_srt_from_the_host_through_the_nodeport(outside):
    """SRT is UDP: kube-proxy's NodePort DNAT and the conntrack entry for the reply carry it."""
    url = outside.secret()["srtPublishUrl"]
    host = f"{outside.node_cluster.node.node_ip}:{outside.node_ports()['srt']}"
    assert url.startswith(f"srt://{host}?"), url
    outside.push_from_host("mpegts", url, "SRT")


def test_rtmps_from_the_host_through_the_nodeport(outside):
    url = outside.secret()["rtmpsPublishUrl"]
    host = f"{outside.node_cluster.node.node_ip}:{outside.node_ports()['rtmps']}"
    assert url.startswith(f"rtmps://{host}/"), url
    outside.push_from_host("flv", url, "RTMPS")
