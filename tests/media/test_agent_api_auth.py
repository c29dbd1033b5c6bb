"""The agent API belongs to the control plane: real agents refuse whoever lacks the agent token.

What anyone on the pod network could do before (issue 10, item 9): keep a backstage stream open
to anonymous viewers with ``PUT /desired {"viewersAllowed": true}``, delete the DVR with
``POST /dvr/clear``, cut the live publisher with ``PUT /desired {"active": false}`` and read
``/status``. Each is tried here without the token, with a wrong one, and with the right one.

And the origin's uploads have a port of their own: the public port takes none.
"""

from __future__ import annotations

import httpx
import m3u8
import pytest

from tests.fixtures.agentproc import AgentProcess
from tests.fixtures.media import free_port, wait_for
from tests.fixtures.origin import origins, transcoders  # noqa: F401  (fixtures)

pytestmark = pytest.mark.media

WRONG = "not-the-agent-token-0123456789"
SMALL = dict(width=320, height=180, fps=15)


def dvr_files(origin) -> set[str]:
    return {str(p.relative_to(origin.data_dir)) for p in (origin.data_dir / "hls").rglob("*") if p.is_file()}


def refused(agent: AgentProcess, method: str, path: str, body: dict | None = None) -> None:
    """No token: 401 asking for one; a wrong token: 403."""
    code, answer = agent.request(method, path, body, token=None)
    assert code == 401 and b"Authorization: Bearer <agent token>" in answer, (method, path, code, answer)
    code, answer = agent.request(method, path, body, token=WRONG)
    assert (code, answer) == (403, b'{"error": "wrong agent token"}'), (method, path)


@pytest.fixture
def backstage_origin(origins, transcoders):  # noqa: F811
    origin = origins.start()  # backstage
    transcoders.start(origin)
    auth = {"Authorization": f"Bearer {origin.read_token}"}

    def segments() -> bool:
        response = origin.get("hls/cmaf/360p/index.m3u8", headers=auth)
        return response.status_code == 200 and len(m3u8.loads(response.text).segments) >= 3

    wait_for(segments, 30, what="segments uploaded in backstage")
    return origin


def test_strangers_cannot_open_backstage_clear_the_dvr_or_read_the_origin(backstage_origin):
    origin = backstage_origin
    stored = dvr_files(origin)
    assert stored

    refused(origin, "PUT", "/desired", {"viewersAllowed": True})
    refused(origin, "POST", "/dvr/clear")
    refused(origin, "GET", "/status")
    # Still backstage, still closed to anonymous viewers, nothing deleted.
    assert origin.get("hls/cmaf/master.m3u8").status_code == 403
    assert dvr_files(origin) >= stored
    assert "refused agent API call PUT /desired" in origin.log_text()

    # Probes and Prometheus need no token, and /metrics gives none away.
    assert origin.request("GET", "/healthz", token=None)[0] == 200
    code, metrics = origin.request("GET", "/metrics", token=None)
    assert code == 200 and b"onair_origin_uploads_total" in metrics
    for secret in (origin.agent_token, origin.upload_token, origin.read_token, origin.playback_secret):
        assert secret.encode() not in metrics

    # The control plane, with the token, does all of it.
    assert origin.status()["role"] == "origin"
    origin.put_desired(viewersAllowed=True)
    assert origin.get("hls/cmaf/master.m3u8").status_code == 200
    assert origin.clear_dvr()["deletedFiles"] > 0


def test_strangers_cannot_cut_the_live_publisher(ingest_agent, publishers):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    publishers.rtmp(ingest.rtmp_url, **SMALL)
    ingest.wait_receiving()

    refused(ingest, "PUT", "/desired", {"active": False})
    refused(ingest, "GET", "/status")
    assert ingest.request("GET", "/readyz", token=None)[0] == 200  # a probe, like /healthz
    assert ingest.status()["receiving"] is True
    assert "deactivated" not in ingest.log_text()

    ingest.put_desired(active=False)
    ingest.wait_receiving(False)


def test_transcoder_and_recorder_agents_want_the_token_too(transcoder_agent, recorder_agent, tmp_path):
    dead_source = f"rtmp://127.0.0.1:{free_port()}/live/stream"
    transcoder = transcoder_agent.start(main_url=dead_source)
    recorder = recorder_agent.start(source_url=dead_source, output_dir=tmp_path / "recordings")
    for agent in (transcoder, recorder):
        refused(agent, "PUT", "/desired", {"phase": "live", "broadcasting": True, "recording": True})
        refused(agent, "GET", "/status")
        assert agent.request("GET", "/healthz", token=None)[0] == 200
    assert transcoder.status()["broadcasting"] is False
    assert recorder.status()["state"] in (None, "idle")


def test_an_agent_whose_token_file_is_missing_is_locked_until_it_appears(origins):  # noqa: F811
    origin = origins.start(agent_token_file=str(origins.tmp / "not-mounted-yet"))
    assert "agent API on" in origin.log_text() and "is LOCKED" in origin.log_text()
    for token in (None, WRONG):
        code, answer = origin.request("PUT", "/desired", {"viewersAllowed": True}, token=token)
        assert code == 503 and b"locked" in answer
    (origins.tmp / "not-mounted-yet").write_text("the-token-arrived-0123456789")
    assert origin.put_desired(viewersAllowed=True)["viewersAllowed"] is True


def test_uploads_are_taken_on_the_upload_port_only(origins):  # noqa: F811
    origin = origins.start(phase="live")
    auth = {"Authorization": f"Bearer {origin.upload_token}"}
    body = b"\xff\xd8\xff\xe0" + b"\0" * 1000
    public = httpx.put(f"{origin.base}/upload/screenshot.jpg", content=body, headers=auth, timeout=10)
    assert public.status_code == 403 and "upload port" in public.json()["error"]
    assert httpx.delete(f"{origin.base}/upload/screenshot.jpg", headers=auth, timeout=10).status_code == 403
    assert not (origin.data_dir / "screenshot.jpg").exists()

    assert httpx.put(f"{origin.upload_url}/screenshot.jpg", content=body, headers=auth, timeout=10).status_code == 201
    assert origin.get("screenshot.jpg").content == body
    # ...and the upload port is no back door to playback: it reads stored files back only to holders
    # of the upload token (peer origin replicas copying this one's DVR).
    upload_port = f"http://127.0.0.1:{origin.config.upload_port}"
    assert httpx.get(f"{upload_port}/screenshot.jpg", timeout=10).status_code == 404
    assert httpx.get(f"{upload_port}/upload/screenshot.jpg", timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer not-the-upload-token"}
    assert httpx.get(f"{upload_port}/upload/screenshot.jpg", headers=wrong, timeout=10).status_code == 403
    assert httpx.get(f"{upload_port}/upload/.replica", timeout=10).status_code == 401
    assert httpx.get(f"{upload_port}/upload/screenshot.jpg", headers=auth, timeout=10).content == body
