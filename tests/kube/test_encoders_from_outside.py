"""Encoders outside the cluster push every protocol through the ways in the chart opens.

The host plays the encoder on the Internet: it reaches the node's address only (the host has no
route to the pod or Service ranges: the node's guard routes blackhole them). One helm install
with the ingest Service as a NodePort, the ingest TLS Secret set and the TURN relay on (a NodePort
too), one Livestream with RTMP(S), SRT and WHIP; each test pushes from the host's ffmpeg (or
aiortc, for WHIP) to the URL of the credentials Secret exactly as given, and waits for
`status.live`. WebRTC media cannot reach a pod from here, so the WHIP client relays through TURN
with the credentials the WHIP endpoint hands out.

Kept small for 2 cores: one helm install, one Livestream, one 360p rung, short pushes.
"""

from __future__ import annotations

import base64
import re
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from tests.fixtures.cluster import wait_for
from tests.fixtures.ingest import WhipPublisher, self_signed_cert
from tests.fixtures.kube import (
    CHART,
    ffmpeg_push,
    helm,
    install_onair,
    livestream_status,
    onair_chart_values,
    pod_logs,
    pod_problems,
    restricted_namespace,
    uninstall_in_user_order,
    wait_pods_ready,
)

pytestmark = [pytest.mark.kube, pytest.mark.slow]

RELEASE = "onair"
LS = "show"
TLS_SECRET = "ingest-tls"
MEDIA_PODS = 3  # ingest, transcoder, origin (no recording)
TURN_NODE_PORT = 30478


@dataclass
class Outside:
    node_cluster: object
    ls_ns: str
    op_ns: str
    core: object
    custom: object
    helm_args: list = field(default_factory=list)  # what installed the release, for an upgrade
    encoders: list = field(default_factory=list)

    def status(self) -> dict:
        return livestream_status(self.custom, self.ls_ns, LS)

    def secret(self) -> dict[str, str]:
        got = self.core.read_namespaced_secret(self.status()["credentialsSecret"], self.ls_ns)
        return {k: base64.b64decode(v).decode() for k, v in (got.data or {}).items()}

    def node_ports(self) -> dict[str, int]:
        return {p.name: p.node_port for p in self.core.read_namespaced_service(f"{LS}-ingest", self.ls_ns).spec.ports}

    def diagnostics(self) -> str:
        return (
            f"{pod_problems(self.core, self.ls_ns)}\n{pod_logs(self.core, self.ls_ns, f'app.kubernetes.io/instance={LS}')}"
            f"\nstatus: {self.status()}"
        )

    def until(self, predicate, timeout: float, what: str):
        try:
            return wait_for(predicate, timeout=timeout, interval=0.5, what=what)
        except BaseException:
            print(self.diagnostics())
            raise

    def push_from_host(self, fmt: str, url: str, what: str) -> None:
        """ffmpeg on the host pushes to ``url`` until status.live; then it stops and live goes false."""
        encoder = subprocess.Popen(ffmpeg_push(fmt, url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.encoders.append(encoder)
        try:
            try:
                self.until(
                    lambda: encoder.poll() is None and self.status().get("live") is True,
                    90,
                    f"status.live from the host's {what} push to {url}",
                )
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
        core.create_namespaced_secret(
            ls_ns,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=TLS_SECRET),
                type="kubernetes.io/tls",
                data={
                    "tls.crt": base64.b64encode(cert.read_bytes()).decode(),
                    "tls.key": base64.b64encode(key.read_bytes()).decode(),
                },
            ),
        )
        extra = [
            "--set",
            f"livestreams.ingest.tlsSecret={TLS_SECRET}",
            "--set",
            "turn.enabled=true",
            "--set",
            f"turn.publicHost={node_cluster.node.node_ip}",
            "--set",
            "turn.service.type=NodePort",
            "--set",
            f"turn.service.nodePort={TURN_NODE_PORT}",
        ]
        o.helm_args = [*onair_chart_values(onair_image), *extra]
        install_onair(node_cluster, onair_image, RELEASE, op_ns, *extra)
        installed = True
        wait_pods_ready(core, op_ns, "app.kubernetes.io/component=turn", 1, 120, "the TURN relay")
        custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            ls_ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": LS},
                "spec": {
                    "callType": "development",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp", "srt", "whip"], "backup": False},
                        "broadcasting": {
                            "hls": {"qualityTracks": ["360p"]},
                            "segmentDurationSeconds": 1,
                            "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
                        },
                        "dvr": {"durationSeconds": 60},
                        "recording": {"mode": "disabled"},
                        "screenshots": {"enabled": False},
                    },
                },
            },
        )
        wait_pods_ready(core, ls_ns, f"app.kubernetes.io/instance={LS}", MEDIA_PODS, 240, "the Livestream's media pods")
        node_ip = node_cluster.node.node_ip
        o.until(
            lambda: o.status().get("credentialsSecret") and node_ip in o.secret().get("srtPublishUrl", ""),
            60,
            "publish URLs on the node's address (the ingest's NodePorts)",
        )
        yield o
    finally:
        for enc in o.encoders:
            if enc.poll() is None:
                enc.kill()
        uninstall_in_user_order(
            core,
            custom,
            livestream_ns=ls_ns,
            operator_ns=op_ns,
            release=RELEASE if installed else None,
            kubeconfig=node_cluster.kubeconfig,
        )


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


def test_whip_from_the_host_relays_through_turn_with_the_credentials_the_answer_gives(outside):
    """The WHIP client asks OPTIONS for the ICE servers (aiortc cannot take new ones after its
    offer), gathers relay candidates only on the TURN URL and credentials it got, and its media
    reaches the ingest pod through coturn: the host has no route to the pod network at all."""
    node = outside.node_cluster.node
    secret = outside.secret()
    url = secret["whipUrl"]
    assert url == f"https://{node.node_ip}:{outside.node_ports()['whip']}/whip", url
    [ingest_pod] = outside.core.list_namespaced_pod(
        outside.ls_ns, label_selector="app.kubernetes.io/component=ingest"
    ).items
    route = subprocess.run(["ip", "-4", "route", "get", ingest_pod.status.pod_ip], capture_output=True, text=True)
    assert route.returncode != 0 or re.search(r"blackhole|unreachable|prohibit", route.stdout), (
        f"the host routes to the pod network ({route.stdout.strip()}): this test would not show that TURN is needed"
    )

    client = WhipPublisher(
        url,
        secret["whipToken"],
        host_addresses=[node.host_ip],
        ice_servers_from_options=True,
        relay_only=True,
        timeout=30,
    )
    try:
        client.start()
        assert client.status == 201, client.body
        turn = f"turn:{node.node_ip}:{TURN_NODE_PORT}"
        assert [s.url for s in client.options_ice_servers] == [f"{turn}?transport=udp", f"{turn}?transport=tcp"]
        assert [s.url for s in client.answer_ice_servers] == [s.url for s in client.options_ice_servers]
        assert all(s.username and s.credential for s in client.answer_ice_servers), client.answer_ice_servers
        assert client.offer_candidate_types() == {"relay"}, "the client got no TURN allocation"
        outside.until(
            lambda: outside.status().get("live") is True, 90, "status.live from the host's WHIP push via TURN"
        )
        pairs = client.nominated_pairs()
        assert pairs and all(local == "relay" for local, _ in pairs), pairs
    except BaseException:
        print(pod_logs(outside.core, outside.op_ns, "app.kubernetes.io/component=turn"))
        raise
    finally:
        client.stop()
    [turn_pod] = outside.core.list_namespaced_pod(
        outside.op_ns, label_selector="app.kubernetes.io/component=turn"
    ).items
    turn_logs = outside.core.read_namespaced_pod_log(turn_pod.metadata.name, outside.op_ns)
    # coturn logs each allocation it authenticated with the minted username (<expiry>:<id>).
    username = client.options_ice_servers[0].username
    assert f"<{username}>" in turn_logs and "ALLOCATE processed, success" in turn_logs, turn_logs[-3000:]
    print(f"nominated pairs {pairs}; coturn: {[line for line in turn_logs.splitlines() if username in line][:3]}")
    outside.until(lambda: outside.status().get("live") is False, 60, "status.live false once the WHIP client left")


def _turn_allocation(host: str, port: int, username: str, password: str) -> str:
    """ "allocated" or why coturn refused an allocation from the host (TURN over UDP)."""
    import asyncio

    import aioice.stun
    import aioice.turn

    async def attempt() -> str:
        try:
            transport, _ = await asyncio.wait_for(
                aioice.turn.create_turn_endpoint(asyncio.DatagramProtocol, (host, port), username, password), 15
            )
        except (aioice.stun.TransactionFailed, ConnectionError, asyncio.TimeoutError) as exc:
            return f"refused: {exc!r}"
        transport.close()
        return "allocated"

    return asyncio.run(attempt())


def test_the_relay_takes_only_unexpired_credentials_minted_from_its_secret(outside):
    """The credentials the ingest mints are the ones coturn checks (the same HMAC-SHA1 over the same
    secret), and nothing else opens the relay: a forged password or an expired username is refused."""
    from onair.agent.webrtc.iceservers import turn_rest_credentials

    node = outside.node_cluster.node
    secret = base64.b64decode(
        outside.core.read_namespaced_secret(f"{RELEASE}-turn", outside.op_ns).data["static-auth-secret"]
    ).decode()
    now = int(time.time())
    username, password = turn_rest_credentials(secret, "probe", now + 300)
    assert _turn_allocation(node.node_ip, TURN_NODE_PORT, username, password) == "allocated"
    assert "401" in _turn_allocation(node.node_ip, TURN_NODE_PORT, username, password[:-4] + "AAA=")
    expired = turn_rest_credentials(secret, "probe", now - 60)
    assert "401" in _turn_allocation(node.node_ip, TURN_NODE_PORT, *expired)
    forged = turn_rest_credentials("not-the-secret", "probe", now + 300)
    assert "401" in _turn_allocation(node.node_ip, TURN_NODE_PORT, *forged)


def test_helm_upgrade_keeps_the_relay_secret_and_the_relay(outside):
    """The chart made the static-auth-secret; an upgrade must find it (lookup) instead of making a
    new one, which would restart coturn and void every credential handed out."""

    def relay() -> tuple[str, str]:
        data = outside.core.read_namespaced_secret(f"{RELEASE}-turn", outside.op_ns).data["static-auth-secret"]
        [pod] = [
            p
            for p in outside.core.list_namespaced_pod(
                outside.op_ns, label_selector="app.kubernetes.io/component=turn"
            ).items
            if not p.metadata.deletion_timestamp
        ]
        return data, pod.metadata.uid

    before = relay()
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        outside.op_ns,
        *outside.helm_args,
        "--wait",
        "--timeout",
        "120s",
        kubeconfig=outside.node_cluster.kubeconfig,
    )
    assert relay() == before
