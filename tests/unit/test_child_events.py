"""Which watch events of a Livestream's children are someone else's change (drift) and which are
the operator's own writes arriving early (before the apply response) or late (a lagging watch)."""

from __future__ import annotations

import asyncio

from onair.controller.runtime import LivestreamState

SECRET = ("Secret", "show-credentials")


def _state() -> LivestreamState:
    state = LivestreamState("ns", "show", "uid-1")
    state.children.record({SECRET: "rv10"}, {})
    return state


def test_a_version_nobody_recorded_is_drift_and_the_recorded_one_is_not():
    state = _state()
    state.child_event(SECRET, "rv10", "Secret show-credentials")
    assert not state.dirty
    state.child_event(SECRET, "rv11", "Secret show-credentials")
    assert state.dirty == {"child Secret show-credentials was modified"}


def test_the_event_of_a_write_in_flight_is_judged_after_the_apply_recorded_it():
    async def scenario() -> LivestreamState:
        state = _state()
        async with state.lock:  # a reconcile applying: its write is rv11, the response not yet in
            state.child_event(SECRET, "rv11", "Secret show-credentials")
            assert not state.dirty
            state.children.record({SECRET: "rv11"}, {})
            state.confirm_child_events()
        return state

    assert not asyncio.run(scenario()).dirty


def test_an_event_during_a_reconcile_that_wrote_something_else_is_drift():
    async def scenario() -> LivestreamState:
        state = _state()
        async with state.lock:
            state.child_event(SECRET, "rv12", "Secret show-credentials")  # someone else's edit
            state.children.record({SECRET: "rv11"}, {})
            state.confirm_child_events()
        return state

    assert asyncio.run(scenario()).dirty == {"child Secret show-credentials was modified"}


def test_a_lagging_event_of_an_earlier_own_write_is_not_drift():
    state = _state()
    state.children.record({SECRET: "rv11"}, {})
    state.child_event(SECRET, "rv10", "Secret show-credentials")
    assert not state.dirty


def test_a_child_never_applied_is_not_judged():
    state = LivestreamState("ns", "show", "uid-1")
    state.child_event(SECRET, "rv3", "Secret show-credentials")
    assert not state.dirty and not state.children.unconfirmed


def test_drift_and_deletion_forget_the_applied_digest_so_the_child_is_applied_again():
    async def scenario() -> LivestreamState:
        state = _state()
        state.children.digests[SECRET] = "d1"
        async with state.lock:
            state.child_event(SECRET, "rv12", "Secret show-credentials")  # judged after the reconcile
            assert state.children.digests == {SECRET: "d1"}
            state.confirm_child_events()
        return state

    assert asyncio.run(scenario()).children.digests == {}
    state = _state()
    state.children.digests[SECRET] = "d1"
    state.child_event(SECRET, "rv10", "Secret show-credentials")  # our own write
    assert state.children.digests == {SECRET: "d1"}
    state.child_event(SECRET, "rv13", "Secret show-credentials")
    assert state.children.digests == {}
    state.children.digests[SECRET] = "d2"
    state.children.forget(SECRET)
    assert state.children.digests == {} and SECRET not in state.children.versions
