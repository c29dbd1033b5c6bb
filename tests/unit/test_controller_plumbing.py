"""Pure pieces of the controller: ownership, kopf settings, wake-up timing, markers."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import kopf

from onair.controller import kopf_settings
from onair.controller.apply import owned_by, version_marker
from onair.api.operator_config import OperatorConfig
from onair.controller.livestream import RETRY_DELAYS, _wait_seconds
from onair.controller.reconcile import CONVERGE_POLL_SECONDS, CONVERGE_WINDOW_SECONDS
from onair.controller.agent_client import AgentClient, role_of
from onair.controller.runtime import LivestreamState, Runtime
from onair.render.lifecycle import Lifecycle


def test_owned_by_requires_controller_reference_with_uid():
    obj = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}]}}
    assert owned_by(obj, "u1")
    assert not owned_by(obj, "u2")
    assert not owned_by({"metadata": {"ownerReferences": [{"uid": "u1"}]}}, "u1")
    assert not owned_by({"metadata": {}}, "u1")


def test_version_marker_ignores_deployment_status_churn():
    dep = {"kind": "Deployment", "metadata": {"generation": 3, "resourceVersion": "100"}}
    dep_status_update = {"kind": "Deployment", "metadata": {"generation": 3, "resourceVersion": "101"}}
    assert version_marker(dep) == version_marker(dep_status_update)
    cm = {"kind": "ConfigMap", "metadata": {"resourceVersion": "5"}}
    assert version_marker(cm) != version_marker({"kind": "ConfigMap", "metadata": {"resourceVersion": "6"}})


def test_kopf_settings_as_decided():
    s = kopf_settings.build_settings()
    assert s.persistence.finalizer == "onair.dev/finalizer"
    assert isinstance(s.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert s.persistence.progress_storage.prefix == "onair.dev"
    assert isinstance(s.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert s.persistence.diffbase_storage.prefix == "onair.dev"
    assert s.persistence.diffbase_storage.key == "last-handled-configuration"
    assert s.peering.standalone is True
    assert s.posting.level == logging.WARNING
    assert isinstance(s.watching.server_timeout, int)
    assert s.watching.client_timeout > s.watching.server_timeout
    selectors = {str(sel.group) + "/" + str(sel.any_name): v for sel, v in s.watching.label_selectors.items()}
    assert selectors["apps/deployments"] == "app.kubernetes.io/managed-by=onair-operator"
    assert selectors["/secrets"] == "app.kubernetes.io/managed-by=onair-operator"


def _runtime(now: datetime, poll: float = 5.0) -> Runtime:
    return Runtime(OperatorConfig(status_poll_interval_seconds=poll), kube=None, agent_client=None, clock=lambda: now)  # type: ignore[arg-type]


def test_daemon_wakes_at_the_next_lifecycle_change():
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    rt = _runtime(now, poll=30)
    state = LivestreamState("ns", "ls", "uid")
    assert _wait_seconds(rt, state) == 30
    state.lifecycle = Lifecycle(
        phase="backstage",
        broadcasting=False,
        recording=False,
        viewers_allowed=False,
        active=True,
        next_change_at=now + timedelta(seconds=7),
    )
    assert 7.0 <= _wait_seconds(rt, state) <= 7.1
    state.lifecycle = Lifecycle(
        phase="backstage",
        broadcasting=False,
        recording=False,
        viewers_allowed=False,
        active=True,
        next_change_at=now - timedelta(seconds=1),
    )
    assert _wait_seconds(rt, state) == 0
    state.lifecycle = None
    state.transient_failures = 1
    assert _wait_seconds(rt, state) == RETRY_DELAYS[0]
    state.transient_failures = 99
    assert _wait_seconds(rt, state) == min(30, RETRY_DELAYS[-1])


def test_role_keys():
    assert role_of("ingest-backup") == "ingest"
    assert role_of("transcoder") == "transcoder"


def test_a_broken_resolver_means_no_address():
    def broken(namespace, name, role):
        raise KeyError(role)

    agent_client = AgentClient(broken)
    assert agent_client.url("ns", "ls", "ingest") is None
    assert AgentClient(lambda *a: "http://127.0.0.1:1/").url("ns", "ls", "ingest") == "http://127.0.0.1:1"


def test_lean_diff_base_is_what_kopf_builds():
    """The operator's diff-base storage only avoids copying what kopf drops: the essence it
    stores (and compares on every event) is the same as kopf's own."""
    body = {
        "apiVersion": "onair.dev/v1alpha1",
        "kind": "Livestream",
        "metadata": {
            "name": "show",
            "namespace": "ns",
            "uid": "u-1",
            "generation": 3,
            "resourceVersion": "42",
            "labels": {"team": "a"},
            "annotations": {
                "onair.dev/last-handled-configuration": '{"spec": {}}',
                "onair.dev/reconcile": '{"started": "x"}',
                "kopf.zalando.org/last-handled-configuration": "{}",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "note": "kept",
            },
            "finalizers": ["onair.dev/finalizer"],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:callType": {}}}}],
        },
        "spec": {
            "callType": "livestream",
            "settingsOverride": {"dvr": {"durationSeconds": 600}},
            "members": [{"userId": "u", "role": "host"}],
        },
        "status": {"phase": "backstage", "effectiveSettings": {"dvr": {"durationSeconds": 600}}},
    }
    kopf_storage = kopf.AnnotationsDiffBaseStorage(prefix="onair.dev", key="last-handled-configuration")
    lean = kopf_settings.LeanDiffBaseStorage(prefix="onair.dev", key="last-handled-configuration")
    for variant in (
        body,
        {k: v for k, v in body.items() if k != "status"},
        {**body, "metadata": {"name": "bare", "namespace": "ns"}},
    ):
        expected = kopf_storage.build(body=kopf.Body(variant))
        assert lean.build(body=kopf.Body(variant)) == expected
    essence = lean.build(body=kopf.Body(body))
    assert essence["spec"] == body["spec"] and set(essence) == {"spec", "metadata"}
    assert "onair.dev/last-handled-configuration" not in essence["metadata"]["annotations"]
    essence["spec"]["settingsOverride"]["dvr"]["durationSeconds"] = 1
    assert body["spec"]["settingsOverride"]["dvr"]["durationSeconds"] == 600, "the essence is a copy"
    # With extra fields (handlers on status fields) it is kopf's own code path.
    assert lean.build(body=kopf.Body(body), extra_fields=["status.phase"]) == kopf_storage.build(
        body=kopf.Body(body), extra_fields=["status.phase"]
    )
    # Only kopf's public hook is overridden, so a kopf upgrade cannot silently bypass it.
    assert {
        n
        for n in vars(kopf_settings.LeanDiffBaseStorage)
        if callable(getattr(kopf_settings.LeanDiffBaseStorage, n)) and not n.startswith("__")
    } == {"build"}


def test_after_the_agents_are_told_something_new_the_daemon_polls_every_second_for_a_while():
    now = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    rt = _runtime(now, poll=5)
    state = LivestreamState("ns", "ls", "uid")
    state.converging_until = now + timedelta(seconds=CONVERGE_WINDOW_SECONDS)
    assert _wait_seconds(rt, state) == CONVERGE_POLL_SECONDS
    state.converging_until = now - timedelta(seconds=1)  # the window is over: back to the poll interval
    assert _wait_seconds(rt, state) == 5
