"""spec.dvrClearedAt: the operator asks the real origin agent to clear once per new value."""

from __future__ import annotations

import secrets

import pytest

from onair.api.agent import OriginConfig
from tests.fixtures.agentproc import AgentProcess
from tests.fixtures.cluster import wait_for
from tests.fixtures.media import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.media]


@pytest.fixture
def origin_agent(tmp_path):
    """The real `onair agent origin` on free loopback ports."""
    secret = tmp_path / "playbackSecret"
    secret.write_text(secrets.token_urlsafe(32))
    config = OriginConfig(
        livestream="test/origin",
        listen_host="127.0.0.1",
        agent_port=free_port(),
        http_port=free_port(),
        upload_port=free_port(),
        data_dir=str(tmp_path / "data"),
        playback_secret_file=str(secret),
    )
    agent = AgentProcess("origin", config, tmp_path / "origin.json", tmp_path / "origin.log", log_level=None)
    try:
        agent.wait_ready(20)
        yield agent
    finally:
        agent.stop(10)


def test_dvr_is_cleared_once_per_new_request(routes, kube, calltype, namespace, origin_agent):
    log_path = origin_agent.log_path
    routes.route(namespace, "dvr", "origin", origin_agent)
    kube.create_livestream(namespace, "dvr", {"callType": calltype, "phase": "live"})
    kube.wait_reconciled(namespace, "dvr")

    def clears() -> int:
        return log_path.read_text(errors="replace").count("DVR cleared on request")

    assert clears() == 0

    kube.patch_livestream(namespace, "dvr", {"spec": {"dvrClearedAt": "2026-03-01T10:00:00Z"}})
    kube.wait_status(namespace, "dvr", lambda s: s.get("dvrClearedAt") == "2026-03-01T10:00:00Z", what="DVR cleared")
    wait_for(lambda: clears() == 1, 10, what="origin cleared once")
    wait_for(lambda: "DvrCleared" in kube.event_reasons(namespace, "dvr"), 15, what="DvrCleared Event")

    # Other spec changes and further polls do not clear again...
    kube.patch_livestream(namespace, "dvr", {"spec": {"displayName": "renamed"}})
    kube.wait_reconciled(namespace, "dvr")
    kube.wait_status(namespace, "dvr", lambda s: s.get("observedGeneration") == 3, what="generation 3 observed")
    assert clears() == 1

    # ...a newer request does.
    kube.patch_livestream(namespace, "dvr", {"spec": {"dvrClearedAt": "2026-03-01T11:30:00Z"}})
    kube.wait_status(namespace, "dvr", lambda s: s.get("dvrClearedAt") == "2026-03-01T11:30:00Z", what="cleared again")
    wait_for(lambda: clears() == 2, 10, what="origin cleared twice")
    assert origin_agent.status()["role"] == "origin"
