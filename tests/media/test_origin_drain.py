"""A stopping origin drains: from SIGTERM on it says not-ready (``/readyz`` 503) and serves on for
``drainSeconds`` (new connections, keep-alive ones, held LL-HLS reloads answered as uploads come),
each answer closing its connection so keep-alive clients move to another replica; then it stops.
What makes a rolling update or a scale-down of the origin cost viewers nothing (the Service's
endpoints and kube-proxy drop the pod during the drain)."""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import m3u8
import pytest

from tests.fixtures.media import wait_for
from tests.fixtures.origin import origins  # noqa: F401  (fixture)
from tests.media.test_origin_llhls import PLAYLIST, Uploader, held

pytestmark = pytest.mark.media

DRAIN = 4.0


def test_a_sigtermed_origin_serves_on_not_ready_through_its_drain_then_stops(origins):
    origin = origins.start(phase="live", drain_seconds=DRAIN)
    uploader = Uploader(origin)
    for _ in range(10):  # segments 0 and 1 closed, segment 2 has parts 0 and 1
        uploader.part()
    wait_for(lambda: origin.get(PLAYLIST).status_code == 200, timeout=10, what="the LL playlist")
    assert httpx.get(f"{origin.agent}/readyz", timeout=2).status_code == 200
    viewer = httpx.Client(timeout=10)  # a keep-alive client, as browsers and CDNs are
    try:
        assert viewer.get(origin.url(PLAYLIST)).headers.get("connection") != "close"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            reload = held(pool, origin, PLAYLIST, _HLS_msn=2, _HLS_part=2)
            origin.proc.send_signal(signal.SIGTERM)
            sigterm = time.monotonic()
            wait_for(
                lambda: httpx.get(f"{origin.agent}/readyz", timeout=2).status_code == 503,
                timeout=DRAIN / 2,
                what="/readyz 503 once SIGTERMed",
            )
            assert httpx.get(f"{origin.agent}/healthz", timeout=2).status_code == 200  # alive: no restart
            # The held reload is answered when its part arrives: the transcoder uploads on meanwhile.
            assert not reload.done()
            name = uploader.part()
            answered = reload.result(timeout=DRAIN)
            assert answered.status_code == 200
            assert name in [p.uri for p in m3u8.loads(answered.text).segments[-1].parts]
            # New connections and the keep-alive one are served, and told to reconnect elsewhere.
            for response in (
                origin.get(PLAYLIST),
                viewer.get(origin.url(PLAYLIST)),
                viewer.get(origin.url(f"hls/cmaf/360p/{name}")),
            ):
                assert response.status_code == 200, response.text
                assert response.headers["connection"] == "close"
            assert time.monotonic() - sigterm < DRAIN, "the checks above outlasted the drain: inconclusive"
        assert origin.proc.wait(DRAIN + 15) == 0
    finally:
        viewer.close()
    with pytest.raises(httpx.ConnectError):
        origin.get(PLAYLIST)
    log = origin.log_path.read_text()
    assert "viewers are served 4s more" in log and "drained: the public port closes" in log
