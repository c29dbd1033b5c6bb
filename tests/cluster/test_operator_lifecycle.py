"""The lifecycle as desired state: backstage -> live -> backstage -> ended, join-ahead by the clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.fixtures.cluster import wait_for

pytestmark = pytest.mark.cluster


def test_backstage_live_backstage_ended_with_events(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "event", {"callType": calltype})
    st = kube.wait_reconciled(namespace, "event")["status"]
    assert (st["phase"], st["viewersAllowed"], st["broadcastingDesired"]) == ("backstage", False, False)
    assert "liveSince" not in st

    kube.patch_livestream(namespace, "event", {"spec": {"phase": "live"}})
    st = kube.wait_status(namespace, "event", lambda s: s.get("phase") == "live", what="live")["status"]
    assert st["viewersAllowed"] is True and st["broadcastingDesired"] is True  # broadcasting.mode auto-on
    assert st["liveSince"]

    # stopLive without continueHls stops HLS; backstage closes playback again.
    kube.patch_livestream(namespace, "event", {"spec": {"phase": "backstage"}})
    st = kube.wait_status(namespace, "event", lambda s: s.get("phase") == "backstage", what="backstage")["status"]
    assert (st["viewersAllowed"], st["broadcastingDesired"]) == (False, False)
    assert "liveSince" not in st

    # ...unless asked to continue.
    kube.patch_livestream(namespace, "event", {"spec": {"phase": "live", "stopLive": {"continueHls": True}}})
    kube.wait_status(namespace, "event", lambda s: s.get("phase") == "live", what="live again")
    kube.patch_livestream(namespace, "event", {"spec": {"phase": "backstage"}})
    st = kube.wait_status(namespace, "event", lambda s: s.get("phase") == "backstage", what="backstage again")["status"]
    assert st["broadcastingDesired"] is True and st["viewersAllowed"] is False

    kube.patch_livestream(namespace, "event", {"spec": {"phase": "ended"}})
    st = kube.wait_status(namespace, "event", lambda s: s.get("phase") == "ended", what="ended")["status"]
    assert st["broadcastingDesired"] is False and st["viewersAllowed"] is True  # the DVR stays playable

    def reasons():
        got = kube.event_reasons(namespace, "event")
        # No transcoder here: broadcasting is only desired, never produced, so no Broadcasting* Event.
        wanted = {"Backstage", "WentLive", "ReturnedToBackstage", "Ended"}
        return got if wanted <= set(got) else None

    got = wait_for(reasons, 15, what="lifecycle Events")
    assert got.count("WentLive") == 2 and got.count("ReturnedToBackstage") == 2


def test_explicit_broadcasting_switch_and_active_false(operator, kube, calltype, namespace):
    kube.create_livestream(namespace, "switch", {"callType": calltype, "phase": "live"})
    kube.wait_status(namespace, "switch", lambda s: s.get("broadcastingDesired") is True, what="broadcasting")
    kube.patch_livestream(namespace, "switch", {"spec": {"broadcasting": False}})
    kube.wait_status(namespace, "switch", lambda s: s.get("broadcastingDesired") is False, what="stopHLSBroadcasting")
    kube.patch_livestream(namespace, "switch", {"spec": {"broadcasting": True, "active": False}})
    kube.wait_status(
        namespace,
        "switch",
        lambda s: s.get("broadcastingDesired") is False and s.get("observedGeneration") == 3,
        what="inactive stream never broadcasts",
    )
    # active: false is in the ingest config too (pushes refused even before the next /desired).
    wait_for(
        lambda: kube.configmap_json(namespace, "switch-ingest")["active"] is False, 15, what="ingest config inactive"
    )


def test_join_ahead_opens_playback_by_the_clock(operator, kube, calltype, namespace):
    starts_at = datetime.now(timezone.utc) + timedelta(seconds=60 + 4)
    kube.create_livestream(
        namespace,
        "soon",
        {
            "callType": calltype,
            "startsAt": starts_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "settingsOverride": {"backstage": {"joinAheadTimeSeconds": 60}},
        },
    )
    st = kube.wait_reconciled(namespace, "soon")["status"]
    assert st["phase"] == "backstage"
    if datetime.now(timezone.utc) < starts_at - timedelta(seconds=60):
        assert st["viewersAllowed"] is False
    # Nothing changes in the spec: only the clock moves.
    kube.wait_status(namespace, "soon", lambda s: s.get("viewersAllowed") is True, timeout=20, what="join-ahead opened")
    assert kube.livestream(namespace, "soon")["status"]["phase"] == "backstage"
    wait_for(lambda: "JoinAheadOpened" in kube.event_reasons(namespace, "soon"), 15, what="JoinAheadOpened Event")
