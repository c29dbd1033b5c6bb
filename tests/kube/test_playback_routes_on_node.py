"""Viewers outside the cluster reach playback through the cluster's HTTP entry point.

A real Traefik (built from its Go module, onair.localcluster.traefik) runs on the node and serves
both Ingress and the Gateway API. The chart is installed with `livestreams.playback.route.kind=
ingress`; one Livestream is pushed to from the host through its ingest NodePort, and its
`status.playback` URLs (the route's public host, no Service DNS name) play in headless Chromium on
the host: HLS CMAF and HLS TS in the origin's player page, DASH through Media Source Extensions.
Then `helm upgrade` switches the route to an `HTTPRoute` on Traefik's Gateway with a path prefix:
the operator replaces the Ingress, the status URLs follow, and the three formats play again.
Through either route, the origin's upload and agent APIs stay out of reach.

Kept small for 2 cores: one helm install, one Livestream, one 360p rung with 1 s segments.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from bench.g2g.server import LIBS, install_players
from onair.agent.origin.server import HLS_JS
from tests.browser.test_player import assert_plays
from tests.fixtures.browser import launch
from tests.fixtures.cluster import wait_for
from tests.fixtures.kube import (
    ROLES,
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

pytestmark = [
    pytest.mark.kube,
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(not HLS_JS.is_file(), reason="hls.js not built: run scripts/build-player"),
]

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "onair"
# Public names under .test (reserved: never resolvable on the Internet). A viewer's DNS would
# point them at the load balancer; here Chromium's --host-resolver-rules maps them to the node
# address Traefik answers on, and requests sends the Host header itself.
DOMAIN = "live.test"
INGRESS_HOST = "{name}.{namespace}." + DOMAIN
GATEWAY_HOST = "watch." + DOMAIN
GATEWAY_PATH = "/{namespace}/{name}"
DASH_JS = LIBS["dash.all.min.js"]
MEDIA_ROLES = tuple(r for r in ROLES if r != "recorder")

# DASH is played by stock dash.js (the copy bench/g2g installs, exactly as published), not by a
# client of ours: a hand-written MSE loop proved only that it could be fooled by a live MPD.
DASH_PLAY = r"""
(async (mpdUrl, seconds) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const video = document.createElement('video');
  video.muted = true;
  document.body.appendChild(video);
  const player = dashjs.MediaPlayer().create();
  const errors = [];
  player.on('error', e => errors.push(JSON.stringify(e.error || e).slice(0, 300)));
  player.initialize(video, mpdUrl, true);
  const deadline = performance.now() + 30000;
  while (!(video.currentTime > 0 && !video.paused) && performance.now() < deadline && !errors.length) await sleep(250);
  const firstTime = video.currentTime, firstAt = performance.now();
  if (firstTime > 0) await sleep(seconds * 1000);
  const result = {played: firstTime > 0 ? video.currentTime - firstTime : 0,
                  wall: (performance.now() - firstAt) / 1000, errors,
                  error: video.error && video.error.message};
  player.destroy();
  return result;
})
"""


def _through_traefik(entry, url: str, method: str = "GET", host: str | None = None, **kw) -> requests.Response:
    """A request to a public URL sent where its name would resolve: the load balancer (node) address."""
    parts = urlsplit(url)
    return requests.request(
        method,
        f"{entry.url}{parts.path}" + (f"?{parts.query}" if parts.query else ""),
        headers={"Host": host or parts.hostname},
        timeout=10,
        allow_redirects=False,
        **kw,
    )


async def _plays_everything(entry, playback: dict, tmp: Path) -> dict[str, float]:
    """HLS CMAF and HLS TS in the origin's player page, DASH over MSE, from the public URLs only."""
    browser = await launch(tmp, extra_flags=(f"--host-resolver-rules=MAP *.{DOMAIN} {entry.address}",))
    played: dict[str, float] = {}
    try:
        for fmt in ("cmaf", "ts"):
            page = await browser.new_page(f"{playback['player']}?format={fmt}")
            source = await page.evaluate("onairPlayer.source")
            played[f"hls {fmt}"] = await assert_plays(page, seconds=4)
            # The player loaded the playlist it was given, on the public host, and hit no error.
            assert await page.evaluate("onairPlayer.fatal") is None
            assert await page.evaluate("onairPlayer.errors") == [], await page.evaluate("onairPlayer.errors")
            url = await page.evaluate("onairPlayer.hls.url")
            assert url == playback["hlsCmaf" if fmt == "cmaf" else "hlsMpegts"], (url, source)
            assert page.exceptions == [], page.exceptions
            await page.close()
        # DASH from a page of the same public origin (the origin's clock), so no CORS is involved.
        page = await browser.new_page(playback["player"].rsplit("/player", 1)[0] + "/time")
        await page.evaluate(DASH_JS.read_text())
        result = await page.evaluate(f"({DASH_PLAY})({json.dumps(playback['dash'])}, 6)", timeout=60)
        assert result["error"] is None and not result["errors"] and result["played"] > 3.0, (
            f"DASH did not play from {playback['dash']}: {result}; console {page.console[-10:]}"
        )
        played["dash"] = result["played"]
    finally:
        await browser.close()
    return played


def _assert_private_ports_unreachable(entry, playback: dict) -> None:
    """Only the origin's playback port is behind the route: its upload port (the transcoder's
    PUTs) and the agents' API (status, desired state) are not."""
    base = playback["player"].rsplit("/player", 1)[0]
    upload = _through_traefik(entry, f"{base}/upload/hls/cmaf/360p/evil.m4s", "PUT", data=b"x" * 100)
    assert upload.status_code == 403 and "not accepted on the public port" in upload.text, (
        upload.status_code,
        upload.text[:300],
    )
    for method, path in (("GET", "/status"), ("PUT", "/desired"), ("GET", "/healthz")):
        r = _through_traefik(entry, f"{base}{path}", method, json={"phase": "ended"} if method == "PUT" else None)
        assert r.status_code >= 400, f"{method} {path} through the route answered {r.status_code}: {r.text[:300]}"
        assert "phase" not in r.text, f"{method} {path} reached an agent API through the route: {r.text[:300]}"
    # Traefik routes by host: a name no route claims gets Traefik's 404, not the origin.
    other = _through_traefik(entry, playback["hlsCmaf"], host=f"nobody.{DOMAIN}")
    assert other.status_code == 404 and "#EXTM3U" not in other.text, (other.status_code, other.text[:200])


def test_viewers_play_through_traefik_by_ingress_then_by_httproute(node_cluster, node_traefik, onair_image, tmp_path):
    from kubernetes import client

    entry = node_traefik
    core = node_cluster.core()
    custom = client.CustomObjectsApi(node_cluster.api)
    networking = client.NetworkingV1Api(node_cluster.api)
    timings: dict[str, float] = {}
    suffix = str(int(time.time()) % 100000)
    op_ns = restricted_namespace(core, f"onair-system-{suffix}")
    ls_ns = restricted_namespace(core, f"viewers-{suffix}")
    installed = False
    encoder = None
    install_players()
    try:
        values = onair_chart_values(onair_image)
        ingress_route = [
            "--set",
            "livestreams.playback.route.kind=ingress",
            "--set-json",
            f"livestreams.playback.route.hostTemplate={json.dumps(INGRESS_HOST)}",
            "--set",
            f"livestreams.playback.route.ingressClassName={entry.ingress_class}",
        ]
        install_onair(node_cluster, onair_image, RELEASE, op_ns, *ingress_route)
        installed = True

        custom.create_namespaced_custom_object(
            "onair.dev",
            "v1alpha1",
            ls_ns,
            "livestreams",
            {
                "apiVersion": "onair.dev/v1alpha1",
                "kind": "Livestream",
                "metadata": {"name": "show"},
                "spec": {
                    "callType": "development",
                    "settingsOverride": {
                        "ingest": {"protocols": ["rtmp"]},
                        "broadcasting": {
                            "hls": {"qualityTracks": ["360p"]},
                            "segmentDurationSeconds": 1,
                            "outputs": {"hlsCmaf": True, "hlsMpegts": True, "dash": True},
                        },
                        "dvr": {"durationSeconds": 60},
                        "recording": {"mode": "disabled"},
                        "screenshots": {"enabled": False},
                    },
                },
            },
        )
        wait_pods_ready(
            core, ls_ns, "app.kubernetes.io/instance=show", len(MEDIA_ROLES), 240, "the Livestream's media pods"
        )

        # The encoder outside the cluster pushes to the URL the owner was given (the NodePort).
        status = wait_for(
            lambda: (s := livestream_status(custom, ls_ns, "show")).get("credentialsSecret") and s,
            timeout=30,
            what="status.credentialsSecret",
        )
        node_port = {p.name: p.node_port for p in core.read_namespaced_service("show-ingest", ls_ns).spec.ports}
        outside = f"{node_cluster.node.node_ip}:{node_port['rtmp']}"
        secret = wait_for(
            lambda: (
                (s := core.read_namespaced_secret(status["credentialsSecret"], ls_ns))
                and outside in base64.b64decode(s.data["rtmpPublishUrl"]).decode()
                and s
            ),
            timeout=30,
            what=f"publish URL naming {outside}",
        )
        t0 = time.monotonic()
        encoder = subprocess.Popen(
            ffmpeg_push("flv", base64.b64decode(secret.data["rtmpPublishUrl"]).decode()),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(
                lambda: encoder.poll() is None and livestream_status(custom, ls_ns, "show").get("live") is True,
                timeout=90,
                interval=0.5,
                what="status.live from the host's push",
            )
        except BaseException:
            print(pod_problems(core, ls_ns), pod_logs(core, ls_ns, "app.kubernetes.io/instance=show"))
            raise
        timings["host push -> status.live"] = time.monotonic() - t0

        # ---- phase 1: an Ingress of class traefik, one host per Livestream
        host = INGRESS_HOST.format(name="show", namespace=ls_ns)
        playback = wait_for(
            lambda: (
                (p := livestream_status(custom, ls_ns, "show").get("playback") or {})
                .get("hlsCmaf", "")
                .startswith(f"http://{host}/")
                and p
            ),
            timeout=30,
            what=f"status.playback on http://{host}/",
        )
        assert playback["dash"] == f"http://{host}/dash/manifest.mpd", playback
        # Traefik took the Ingress: it published the load balancer's address in its status.
        try:
            ingress = wait_for(
                lambda: (
                    (i := networking.read_namespaced_ingress("show-playback", ls_ns))
                    and i.status.load_balancer.ingress
                    and i
                ),
                timeout=30,
                what="Traefik writing the Ingress's load balancer status",
            )
        except BaseException:
            print(pod_logs(core, entry.namespace, "app.kubernetes.io/name=traefik"))
            raise
        assert ingress.spec.ingress_class_name == entry.ingress_class
        assert [i.ip for i in ingress.status.load_balancer.ingress] == [entry.address]
        wait_for(
            lambda: _through_traefik(entry, playback["hlsCmaf"]).status_code == 200,
            timeout=30,
            interval=0.5,
            what=f"{playback['hlsCmaf']} answering through Traefik",
        )
        t0 = time.monotonic()
        played = asyncio.run(_plays_everything(entry, playback, tmp_path / "ingress"))
        timings["ingress: play CMAF, TS, DASH in Chromium"] = time.monotonic() - t0
        print(f"\nplayed through the Ingress: {played}")
        _assert_private_ports_unreachable(entry, playback)

        # ---- phase 2: helm upgrade to an HTTPRoute on Traefik's Gateway, one host, a path each
        t0 = time.monotonic()
        gateway_route = [
            "--set",
            "livestreams.playback.route.kind=httproute",
            "--set-json",
            f"livestreams.playback.route.hostTemplate={json.dumps(GATEWAY_HOST)}",
            "--set-json",
            f"livestreams.playback.route.pathTemplate={json.dumps(GATEWAY_PATH)}",
            "--set",
            f"livestreams.playback.route.gateway.name={entry.gateway_name}",
            "--set",
            f"livestreams.playback.route.gateway.namespace={entry.namespace}",
            "--set",
            f"livestreams.playback.route.gateway.sectionName={entry.gateway_listener}",
        ]
        helm(
            "upgrade",
            RELEASE,
            str(ROOT / "charts/onair"),
            "--namespace",
            op_ns,
            *values,
            *gateway_route,
            kubeconfig=node_cluster.kubeconfig,
        )
        prefix = f"http://{GATEWAY_HOST}{GATEWAY_PATH.format(name='show', namespace=ls_ns)}"
        playback = wait_for(
            lambda: (
                (p := livestream_status(custom, ls_ns, "show").get("playback") or {})
                .get("hlsCmaf", "")
                .startswith(prefix + "/")
                and p
            ),
            timeout=120,
            interval=0.5,
            what=f"status.playback under {prefix}/ after the upgrade",
        )
        assert playback["dash"] == f"{prefix}/dash/manifest.mpd", playback
        wait_for(
            lambda: not networking.list_namespaced_ingress(ls_ns).items,
            timeout=30,
            what="the operator removing the Ingress it no longer renders",
        )

        def accepted():
            route = custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", ls_ns, "httproutes", "show-playback"
            )
            parents = (route.get("status") or {}).get("parents") or []
            conds = {c["type"]: c["status"] for p in parents for c in p.get("conditions") or ()}
            return route if conds.get("Accepted") == "True" and conds.get("ResolvedRefs") == "True" else None

        try:
            wait_for(accepted, timeout=30, what="Traefik accepting the HTTPRoute (Accepted, ResolvedRefs)")
        except BaseException:
            print(pod_logs(core, entry.namespace, "app.kubernetes.io/name=traefik"))
            print(
                json.dumps(
                    custom.get_namespaced_custom_object(
                        "gateway.networking.k8s.io", "v1", ls_ns, "httproutes", "show-playback"
                    ),
                    indent=1,
                )
            )
            raise
        wait_for(
            lambda: _through_traefik(entry, playback["hlsCmaf"]).status_code == 200,
            timeout=30,
            interval=0.5,
            what=f"{playback['hlsCmaf']} answering through the Gateway",
        )
        timings["helm upgrade -> HTTPRoute serving"] = time.monotonic() - t0
        # The Ingress's host is gone with it, once Traefik has seen the Ingress deleted (its
        # watch is applied a moment after the API server's answer).
        wait_for(
            lambda: _through_traefik(entry, f"http://{host}/hls/cmaf/master.m3u8").status_code == 404,
            timeout=30,
            interval=0.5,
            what=f"Traefik dropping the deleted Ingress's host {host}",
        )
        t0 = time.monotonic()
        played = asyncio.run(_plays_everything(entry, playback, tmp_path / "httproute"))
        timings["httproute: play CMAF, TS, DASH in Chromium"] = time.monotonic() - t0
        print(f"played through the HTTPRoute: {played}")
        _assert_private_ports_unreachable(entry, playback)
        # The prefix is the Livestream's: the same path without it is not the origin's.
        bare = _through_traefik(entry, f"http://{GATEWAY_HOST}/hls/cmaf/master.m3u8")
        assert bare.status_code == 404 and "#EXTM3U" not in bare.text, (bare.status_code, bare.text[:200])
    finally:
        print("\n" + "\n".join(f"  {k}: {v:.1f}s" for k, v in timings.items()))
        if encoder is not None:
            encoder.terminate()
            encoder.communicate(timeout=10)
        uninstall_in_user_order(
            core,
            custom,
            livestream_ns=ls_ns,
            operator_ns=op_ns,
            release=RELEASE if installed else None,
            kubeconfig=node_cluster.kubeconfig,
        )
