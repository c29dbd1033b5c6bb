"""``origin.replicas: 2`` end to end in onair dev's fallback runtime: the operator renders the
origin's StatefulSet, the pod runner runs each replica as a process (its own volume, ports and
name under the headless Service), the transcoder uploads every LL-HLS file to both, and the
operator makes both public. A viewer balanced from one replica to the other gets the same segments
under the same numbers with the same parts; a replica that crashes is no outage (the other keeps
serving) and, restarted, continues the other's numbering. What a real kubelet does with the same
StatefulSet (a rolling update while a player plays) is for tests/kube.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import time
import urllib.request

import pytest

from tests.fixtures.media import wait_for
from tests.fixtures.origin import replica_numbering, replicas_agree
from tests.fixtures.podrunner import operator_with_podrunner, podrunner  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(600)]

LS = "dup"
PLAYLIST = "hls/cmaf/240p/index.m3u8"
SETTINGS = {
    "ingest": {"protocols": ["rtmp"]},
    "recording": {"mode": "disabled"},
    "broadcasting": {
        "mode": "auto-on",
        "lowLatency": True,
        "hls": {"qualityTracks": ["240p"]},
        "outputs": {"hlsCmaf": True, "hlsMpegts": False, "dash": False},
    },
    "dvr": {"enabled": True, "durationSeconds": 600},
    "origin": {"replicas": 2},
}


def http_get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_two_origin_replicas_serve_the_same_stream_and_survive_a_crash(
    operator_with_podrunner,  # noqa: F811
    podrunner,  # noqa: F811
    kube,
    namespace,
    publishers,
):
    runner = podrunner
    replicas = [f"{LS}-origin-0", f"{LS}-origin-1"]

    def diag() -> str:
        st = (kube.livestream(namespace, LS).get("status") or {}) if kube.livestream_exists(namespace, LS) else {}
        st.pop("effectiveSettings", None)
        states = "\n".join(f"{n}: {runner.status(namespace, n)}" for n in replicas)
        return f"\nstatus: {st}\n{states}\n{runner.logs(namespace, LS, 25)}"

    def until(predicate, timeout: float, what: str):
        try:
            return wait_for(predicate, timeout, interval=0.3, what=what)
        except TimeoutError as exc:
            pytest.fail(f"{exc}{diag()}", pytrace=False)

    def pod(name: str):
        return next((p for p in runner.pods(namespace, LS) if p.name == name and p.ready), None)

    def playlist(name: str, **params) -> str:
        info = pod(name)
        assert info is not None, f"{name} is not running{diag()}"
        query = "&".join(f"{k}={v}" for k, v in params.items())
        code, body = http_get(f"http://127.0.0.1:{info.ports['http']}/{PLAYLIST}{'?' + query if query else ''}")
        assert code == 200, f"{name}: HTTP {code} {body[:200]!r}"
        return body.decode()

    def segments(name: str) -> dict:
        try:
            return replica_numbering(playlist(name)) if pod(name) else {}
        except AssertionError:
            return {}

    calltype = f"rep-{secrets.token_hex(3)}"
    kube.create_calltype(calltype, settings=SETTINGS)
    try:
        kube.create_livestream(namespace, LS, {"callType": calltype, "phase": "live"})
        until(lambda: all(pod(n) for n in replicas), 120, "both origin replicas run and are ready")
        until(
            lambda: (kube.livestream(namespace, LS).get("status") or {}).get("originReplicas") == "2/2",
            120,
            "status.originReplicas 2/2",
        )
        key = base64.b64decode(
            kube.core.read_namespaced_secret(f"{LS}-credentials", namespace).data["streamKey"]
        ).decode()
        rtmp = until(lambda: (runner.endpoints(namespace, LS) or {}).get("ingest", {}).get("rtmp"), 60, "RTMP URL")
        publishers.rtmp(f"{rtmp}/{key}", width=426, height=240, fps=15)
        until(lambda: all(len(segments(n)) >= 4 for n in replicas), 120, "4 LL-HLS segments on both replicas")

        # The same blocking reload on both replicas: the same segments under the same numbers, the same parts.
        for _ in range(3):
            ahead = max(replica_numbering(playlist(replicas[0]))) + 1
            ours = playlist(replicas[0], _HLS_msn=ahead, _HLS_part=0)
            theirs = playlist(replicas[1], _HLS_msn=ahead, _HLS_part=0)
            assert "#EXT-X-PART:" in ours and "#EXT-X-PART:" in theirs
            replicas_agree(replica_numbering(ours), replica_numbering(theirs), at_least=4)

        # A crash of one replica: the other keeps serving, its live edge advances.
        crashed = pod(replicas[1])
        os.kill(crashed.pid, signal.SIGKILL)
        start = max(segments(replicas[0]))
        until(lambda: max(segments(replicas[0]) or {0: 0}) >= start + 3, 60, "the survivor's live edge to advance")
        # Restarted by the runner: it copies the survivor's DVR and continues its numbering.
        until(
            lambda: (lambda p: p is not None and p.pid != crashed.pid)(pod(replicas[1])),
            90,
            "the crashed replica restarted and ready",
        )
        log = runner.log_tail(namespace, replicas[1], 400)
        assert "DVR copied from the peer replica" in log, log
        until(lambda: len(set(segments(replicas[0])) & set(segments(replicas[1]))) >= 4, 30, "common segments")
        theirs = segments(replicas[1])
        replicas_agree(segments(replicas[0]), theirs, at_least=4)
        assert min(theirs) <= start, f"the restarted replica lost the DVR it was down for: {sorted(theirs)}"
        time.sleep(2)
        ahead = max(replica_numbering(playlist(replicas[0]))) + 1
        replicas_agree(
            replica_numbering(playlist(replicas[0], _HLS_msn=ahead, _HLS_part=0)),
            replica_numbering(playlist(replicas[1], _HLS_msn=ahead, _HLS_part=0)),
            at_least=4,
        )
        until(
            lambda: (kube.livestream(namespace, LS).get("status") or {}).get("originReplicas") == "2/2",
            60,
            "status.originReplicas back to 2/2",
        )
    finally:
        if kube.livestream_exists(namespace, LS):
            kube.delete_livestream(namespace, LS)
        kube.delete_calltype(calltype)
