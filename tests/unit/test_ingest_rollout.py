"""The ingest slots' staggered rollout (onair.render.rollout): which slot's new template is held
back, from both Deployments as the API server has them and the agents' last reports."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from onair.api.conditions import INGEST_ROLLOUT_CONTINUED, INGEST_ROLLOUT_NOT_BRIDGED, INGEST_ROLLOUT_STAGGERED
from onair.render import rollout
from onair.render.rollout import (
    BACKUP,
    HELD_SINCE_ANNOTATION,
    HOLD_MAX_SECONDS,
    MAIN,
    NO_HOLD,
    PUBLISHER_RETURN_SECONDS,
    TEMPLATE_HASH_ANNOTATION,
    SlotDeployment,
    apply_ingest_rollout,
    observe_deployment,
    plan_ingest_rollout,
)

NOW = datetime(2026, 7, 14, 9, 0, 0, tzinfo=timezone.utc)
NEW = {MAIN: "main-new", BACKUP: "backup-new"}


def slot(hash_: str, *, rolled_out: bool = True, held_since=None, rolled_out_at=None) -> SlotDeployment:
    return SlotDeployment(
        template_hash=hash_,
        held_since=held_since,
        paused=held_since is not None,
        rolled_out=rolled_out and held_since is None,
        rolled_out_at=rolled_out_at,
        pods="1 of 1 pods updated and available" if rolled_out else "0 of 1 pods updated and available",
    )


def old_slots() -> dict:
    return {MAIN: slot("main-old"), BACKUP: slot("backup-old")}


LIVE = {MAIN: True, BACKUP: True}


# ----------------------------------------------------------------------------- starting a hold
def test_a_new_template_for_both_slots_rolls_the_backup_first_while_main_feeds_the_transcoder():
    plan = plan_ingest_rollout(NEW, old_slots(), LIVE, "main", NOW)
    assert (plan.held, plan.first, plan.held_since) == (MAIN, BACKUP, NOW)
    assert plan.event.type == "Normal" and plan.event.reason == INGEST_ROLLOUT_STAGGERED
    assert "rolling ingest-backup first" in plan.event.message and "ingest feeds the transcoder" in plan.event.message
    assert "ingest-backup first" in plan.message
    assert plan.recheck_at == NOW + timedelta(seconds=HOLD_MAX_SECONDS)


def test_main_rolls_first_when_the_transcoder_is_on_the_backup():
    plan = plan_ingest_rollout(NEW, old_slots(), LIVE, "backup", NOW)
    assert (plan.held, plan.first) == (BACKUP, MAIN)
    assert "rolling ingest first" in plan.event.message


def test_right_after_an_operator_restart_nothing_is_known_and_the_backup_still_goes_first():
    plan = plan_ingest_rollout(NEW, old_slots(), {}, None, NOW)
    assert (plan.held, plan.first) == (MAIN, BACKUP)


@pytest.mark.parametrize(
    "desired, observed, receiving",
    [
        ({MAIN: "main-new"}, {MAIN: slot("main-old")}, LIVE),  # no backup ingest
        (NEW, {MAIN: slot("main-old"), BACKUP: None}, LIVE),  # backup being created
        (NEW, {MAIN: slot("main-new"), BACKUP: slot("backup-old")}, LIVE),  # one slot changes
        (NEW, {MAIN: slot("main-new"), BACKUP: slot("backup-new")}, LIVE),  # nothing changes
        (NEW, old_slots(), {MAIN: False, BACKUP: False}),  # no encoder on either
    ],
    ids=["single-slot", "slot-being-created", "one-slot-changes", "unchanged", "nobody-pushing"],
)
def test_nothing_is_held_when_there_is_nothing_to_bridge(desired, observed, receiving):
    assert plan_ingest_rollout(desired, observed, receiving, "main", NOW) == NO_HOLD


def test_a_deployment_from_an_operator_without_the_hash_counts_as_changing():
    plan = plan_ingest_rollout(NEW, {MAIN: slot(None), BACKUP: slot(None)}, LIVE, "main", NOW)
    assert plan.held == MAIN


# ----------------------------------------------------------------------------- while held
def held(first_rolled_out: bool, *, first_hash: str = "backup-new", since=NOW, rolled_out_at=None) -> dict:
    return {
        MAIN: slot("main-new", held_since=since),
        BACKUP: slot(first_hash, rolled_out=first_rolled_out, rolled_out_at=rolled_out_at),
    }


def test_the_hold_stays_while_the_first_slot_rolls_and_keeps_its_start():
    later = NOW + timedelta(seconds=20)
    plan = plan_ingest_rollout(NEW, held(False), {MAIN: True, BACKUP: False}, "main", later)
    assert (plan.held, plan.first, plan.held_since, plan.event) == (MAIN, BACKUP, NOW, None)
    assert plan.recheck_at == NOW + timedelta(seconds=HOLD_MAX_SECONDS)


def test_the_hold_is_sticky_even_if_the_transcoder_moved_to_the_other_slot():
    plan = plan_ingest_rollout(NEW, held(False), {MAIN: True, BACKUP: False}, "backup", NOW + timedelta(seconds=5))
    assert (plan.held, plan.first) == (MAIN, BACKUP)


def test_the_second_slot_rolls_once_the_first_is_rolled_out_and_its_encoder_is_back():
    plan = plan_ingest_rollout(NEW, held(True), LIVE, "main", NOW + timedelta(seconds=15))
    assert plan.held is None
    assert plan.event.type == "Normal" and plan.event.reason == INGEST_ROLLOUT_CONTINUED
    assert plan.event.message.startswith("ingest-backup is rolled out and its encoder is back: rolling ingest now")


def test_a_rolled_out_first_slot_without_its_encoder_waits_for_it_a_bounded_time():
    done = NOW + timedelta(seconds=10)
    waiting = plan_ingest_rollout(
        NEW, held(True, rolled_out_at=done), {MAIN: True, BACKUP: False}, "main", done + timedelta(seconds=5)
    )
    assert waiting.held == MAIN and waiting.event is None
    assert waiting.recheck_at == done + timedelta(seconds=PUBLISHER_RETURN_SECONDS)
    given_up = plan_ingest_rollout(
        NEW,
        held(True, rolled_out_at=done),
        {MAIN: True, BACKUP: False},
        "main",
        done + timedelta(seconds=PUBLISHER_RETURN_SECONDS),
    )
    assert given_up.held is None
    assert given_up.event.type == "Warning" and given_up.event.reason == INGEST_ROLLOUT_NOT_BRIDGED
    assert "no encoder reconnected to it" in given_up.event.message


def test_a_first_slot_that_never_rolls_out_does_not_hold_the_second_forever():
    almost = plan_ingest_rollout(
        NEW, held(False), {MAIN: True, BACKUP: False}, "main", NOW + timedelta(seconds=HOLD_MAX_SECONDS - 1)
    )
    assert almost.held == MAIN
    plan = plan_ingest_rollout(
        NEW, held(False), {MAIN: True, BACKUP: False}, "main", NOW + timedelta(seconds=HOLD_MAX_SECONDS)
    )
    assert plan.held is None
    assert plan.event.type == "Warning" and plan.event.reason == INGEST_ROLLOUT_NOT_BRIDGED
    assert "ingest-backup did not roll out within 300 s (0 of 1 pods updated and available)" in plan.event.message


def test_a_newer_template_for_the_first_slot_keeps_the_hold_until_that_one_is_rolled_out():
    plan = plan_ingest_rollout(NEW, held(True, first_hash="backup-previous"), LIVE, "main", NOW + timedelta(seconds=5))
    assert plan.held == MAIN and plan.event is None


def test_with_no_encoder_on_either_slot_the_second_rolls_at_once():
    plan = plan_ingest_rollout(NEW, held(False), {MAIN: False, BACKUP: False}, "main", NOW + timedelta(seconds=2))
    assert plan.held is None and plan.event.reason == INGEST_ROLLOUT_CONTINUED


def test_turning_the_backup_off_while_held_releases_main():
    assert plan_ingest_rollout({MAIN: "main-new"}, held(False), LIVE, "main", NOW) == NO_HOLD


# ----------------------------------------------------------------------------- reading and writing Deployments
def deployment(
    *,
    generation=2,
    observed=2,
    updated=1,
    available=1,
    total=1,
    paused=False,
    annotations=None,
    progressing=("NewReplicaSetAvailable", "2026-07-14T09:00:30Z"),
) -> dict:
    return {
        "metadata": {"generation": generation, "annotations": annotations or {}},
        "spec": {"replicas": 1, **({"paused": True} if paused else {})},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "replicas": total,
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True", "reason": progressing[0], "lastUpdateTime": progressing[1]},
            ],
        },
    }


def test_observing_a_rolled_out_deployment():
    seen = observe_deployment(deployment(annotations={TEMPLATE_HASH_ANNOTATION: "h"}))
    assert seen.rolled_out and seen.template_hash == "h" and seen.held_since is None and not seen.paused
    assert seen.rolled_out_at == datetime(2026, 7, 14, 9, 0, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "kwargs, pods",
    [
        (dict(observed=1), "1 of 1 pods updated and available"),  # the controller has not seen the new template
        (
            dict(updated=1, available=1, total=2, progressing=("ReplicaSetUpdated", "2026-07-14T09:00:30Z")),
            "1 of 1 pods updated and available, 1 old left",
        ),  # the surge pod Ready, the old one not gone
        (
            dict(updated=1, available=0, progressing=("ReplicaSetUpdated", "2026-07-14T09:00:30Z")),
            "0 of 1 pods updated and available",
        ),  # the new pod not Ready
        (dict(paused=True, updated=0, available=1), "0 of 1 pods updated and available, 1 old left"),
    ],
    ids=["not-observed", "old-pod-left", "not-ready", "paused"],
)
def test_observing_a_deployment_that_is_not_rolled_out(kwargs, pods):
    seen = observe_deployment(deployment(**kwargs))
    assert not seen.rolled_out and seen.pods == pods


def test_observing_a_held_deployment():
    seen = observe_deployment(deployment(paused=True, annotations={HELD_SINCE_ANNOTATION: "2026-07-14T09:00:00Z"}))
    assert seen.held_since == NOW and seen.paused


def test_the_held_slot_is_applied_paused_and_marked_the_other_unchanged():
    plan = plan_ingest_rollout(NEW, old_slots(), LIVE, "main", NOW)
    rendered = {
        "metadata": {"name": "show-ingest", "annotations": {TEMPLATE_HASH_ANNOTATION: "main-new"}},
        "spec": {"replicas": 1, "template": {}},
    }
    applied = apply_ingest_rollout(rendered, MAIN, plan)
    assert applied["spec"]["paused"] is True
    assert applied["metadata"]["annotations"] == {
        TEMPLATE_HASH_ANNOTATION: "main-new",
        HELD_SINCE_ANNOTATION: "2026-07-14T09:00:00Z",
    }
    assert "paused" not in rendered["spec"] and HELD_SINCE_ANNOTATION not in rendered["metadata"]["annotations"]
    assert apply_ingest_rollout(rendered, BACKUP, plan) is rendered
    assert apply_ingest_rollout(rendered, MAIN, NO_HOLD) is rendered
    # Level-based: re-planning from what was applied holds the same slot with the same start.
    observed = {MAIN: observe_deployment({**applied, "status": {}}), BACKUP: slot("backup-new", rolled_out=False)}
    again = plan_ingest_rollout(NEW, observed, LIVE, "main", NOW + timedelta(seconds=3))
    assert (again.held, again.held_since, again.event) == (MAIN, NOW, None)


def test_the_rendered_template_hash_follows_the_pod_template_only():
    from onair.api.operator_config import OperatorConfig
    from onair.render.children import render_children
    from onair.render.credentials import generate_credentials

    ls = {
        "metadata": {"name": "show", "namespace": "media", "uid": "u1"},
        "spec": {"callType": "x", "settingsOverride": {"ingest": {"backup": True}}},
    }
    creds = generate_credentials()

    def hashes(config, spec=None):
        body = {**ls, "spec": {**ls["spec"], **(spec or {})}}
        out = {}
        for obj in render_children(body, None, config, creds).objects:
            if obj["kind"] == "Deployment":
                assert obj["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == rollout.template_hash(
                    obj["spec"]["template"]
                )
                out[obj["metadata"]["name"]] = obj["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
        return out

    before = hashes(OperatorConfig(image="onair:1"))
    assert before == hashes(OperatorConfig(image="onair:1"))
    upgraded = hashes(OperatorConfig(image="onair:2"))
    assert all(upgraded[name] != before[name] for name in before)
    # A change that restarts no pod (displayName) rolls nothing.
    assert hashes(OperatorConfig(image="onair:1"), {"displayName": "Keynote"}) == before


# ----------------------------------------------------------------------------- the agent of a rolling slot
def test_the_agent_of_a_rolling_slot_is_its_ready_pod_the_newer_if_both_are():
    from onair.controller.runtime import AgentPod, current_agent_pod

    old = AgentPod(ready=True, created="2026-07-14T09:00:00Z", ip="10.0.0.1", host_ip="192.0.2.1")
    surge = AgentPod(ready=False, created="2026-07-14T09:05:00Z", ip="10.0.0.2", host_ip="192.0.2.1")
    # The new pod starts: the old one keeps the publisher and stays the one read.
    assert current_agent_pod([old, surge]) is old
    assert current_agent_pod([surge, old]) is old
    # The new one is Ready: it takes over (the old one is about to stop).
    ready = AgentPod(ready=True, created=surge.created, ip=surge.ip, host_ip=surge.host_ip)
    assert current_agent_pod([old, ready]) is ready
    # One pod, Ready or not yet (a first start, a Recreate): that one; none: no address.
    assert current_agent_pod([surge]) is surge
    assert current_agent_pod([]) is None


def test_only_a_report_of_the_pod_read_now_says_whether_a_slot_has_its_encoder_back():
    from types import SimpleNamespace

    from onair.api.agent import IngestStatus
    from onair.controller.agent_client import AgentReport
    from onair.controller.rollout import receiving
    from onair.controller.runtime import LivestreamState

    current = {MAIN: "http://10.0.0.1:8080", BACKUP: "http://10.0.0.9:8080"}
    rt = SimpleNamespace(agent_client=SimpleNamespace(url=lambda namespace, name, key: current.get(key)))
    state = LivestreamState("media", "show", "u1")
    state.agents = {
        MAIN: AgentReport(MAIN, "http://10.0.0.1:8080", True, IngestStatus(slot="main", receiving=True)),
        # The backup's old pod, polled before its new pod (10.0.0.9) took over: not evidence.
        BACKUP: AgentReport(BACKUP, "http://10.0.0.2:8080", True, IngestStatus(slot="backup", receiving=True)),
    }
    assert receiving(rt, state) == {MAIN: True, BACKUP: None}
    state.agents[BACKUP] = AgentReport(
        BACKUP, "http://10.0.0.9:8080", True, IngestStatus(slot="backup", receiving=False)
    )
    assert receiving(rt, state) == {MAIN: True, BACKUP: False}
    state.agents[MAIN] = AgentReport(MAIN, "http://10.0.0.1:8080", False, error="timeout")
    assert receiving(rt, state) == {MAIN: None, BACKUP: False}
