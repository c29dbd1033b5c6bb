"""Connection budgets and log rate limiting of public listeners, without sockets."""

from __future__ import annotations

import logging

import pytest

from onair.agent import http_limits
from onair.agent.http_limits import FdBudget, ConnectionGuard, ListenerLimits, LogLimiter, RateLimitFilter

TRANSIENT = http_limits.ACCEPT_BACKLOG + http_limits.MAX_LINGERING


def test_plenty_of_fds_gives_the_default_caps():
    limits = FdBudget(65536, 20).allot("public")
    assert limits.max_connections == http_limits.DEFAULT_MAX_CONNECTIONS
    assert limits.max_per_client == http_limits.DEFAULT_MAX_CONNECTIONS // http_limits.CLIENT_SHARE
    assert limits.idle_timeout == http_limits.DEFAULT_IDLE_TIMEOUT


@pytest.mark.parametrize("limit", [512, 1024, 4096])
def test_few_fds_make_smaller_caps_that_fit(limit):
    budget = FdBudget(limit, 20)
    limits = budget.allot("public")
    assert budget.short
    used = 20 + http_limits.FD_RESERVE + TRANSIENT + limits.max_connections * http_limits.FDS_PER_CONNECTION
    assert limit - http_limits.FDS_PER_CONNECTION < used <= limit
    assert limits.max_per_client == limits.max_connections // http_limits.CLIENT_SHARE


def test_each_listener_takes_its_share_first_come_first_served():
    budget = FdBudget(1024, 20)
    uploads = budget.allot("uploads", max_connections=64, max_per_client=64)
    viewers = budget.allot("public")
    assert (uploads.max_connections, uploads.max_per_client) == (64, 64)
    assert viewers.max_connections == (1024 - 20 - http_limits.FD_RESERVE - 2 * TRANSIENT - 64 * 2) // 2


def test_a_hopeless_limit_still_serves_a_few():
    limits = FdBudget(64, 60).allot("public")
    assert limits.max_connections == http_limits.MIN_CONNECTIONS
    assert limits.max_per_client == http_limits.MIN_PER_CLIENT


def test_guard_caps_per_client_and_in_total():
    guard = ConnectionGuard(
        ListenerLimits("public", max_connections=5, max_per_client=3), None, logging.getLogger("test")
    )
    assert [guard.admit("a") for _ in range(4)] == [None, None, None, "client"]
    assert [guard.admit("b") for _ in range(3)] == [None, None, "total"]
    guard.release("a")
    assert guard.admit("b") is None and guard.open == 5
    for _ in range(2):
        guard.release("a")
    assert "a" not in guard.by_client and guard.open == 3


def test_trusted_proxies_are_held_only_to_the_total():
    limits = FdBudget(100_000, 60).allot(
        "public", max_connections=8, fds_per_connection=1, trusted_clients=["10.42.0.0/16", "2001:db8::/32"]
    )
    assert limits.trusted_clients == ("10.42.0.0/16", "2001:db8::/32")
    guard = ConnectionGuard(
        ListenerLimits("public", max_connections=7, max_per_client=2, trusted_clients=limits.trusted_clients),
        None,
        logging.getLogger("test"),
    )
    assert [guard.admit("10.42.7.1") for _ in range(3)] == [None, None, None]
    assert [guard.admit("::ffff:10.42.7.2") for _ in range(2)] == [None, None]  # IPv4 on a dual-stack socket
    assert guard.admit("10.43.0.1") is None and guard.admit("10.43.0.1") is None
    assert guard.admit("2001:db8::5") == "total"
    guard.release("10.42.7.1")
    assert guard.admit("10.43.0.1") == "client"  # not a proxy: its own cap, room or not
    assert guard.admit("2001:db8::5") is None
    assert guard.admit("unknown") in ("client", "total") and not guard.trusted("unknown")
    assert "none for 10.42.0.0/16, 2001:db8::/32" in guard.limits.describe()


def test_a_cap_refusal_says_how_to_trust_a_proxy(caplog):
    guard = ConnectionGuard(
        ListenerLimits("public", max_connections=6, max_per_client=1),
        None,
        logging.getLogger("test.hint"),
        client_cap_hint="; list it in ONAIR_PLAYBACK_TRUSTED_PROXIES",
    )

    class Transport:
        def write(self, data: bytes) -> None:
            self.data = data

        def can_write_eof(self) -> bool:
            return False

        def abort(self) -> None:
            pass

        def close(self) -> None:
            pass

    assert guard.admit("192.0.2.9") is None and guard.admit("192.0.2.9") == "client"
    with caplog.at_level(logging.WARNING, "test.hint"):
        guard.refuse(Transport(), "192.0.2.9", "client")  # type: ignore[arg-type]
    assert "192.0.2.9" in caplog.text and "ONAIR_PLAYBACK_TRUSTED_PROXIES" in caplog.text


def test_log_limiter_counts_what_it_left_out(caplog, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(http_limits.time, "monotonic", lambda: clock[0])
    limiter = LogLimiter(logging.getLogger("test.limiter"), every=10)
    with caplog.at_level(logging.INFO, "test.limiter"):
        assert [limiter.log("k", logging.WARNING, "refused %s", i) for i in range(5)] == [True] + [False] * 4
        assert limiter.log("other", logging.WARNING, "another kind")
        clock[0] += 10
        assert limiter.log("k", logging.WARNING, "refused %s", 9)
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "another kind",
        "refused 9 (and 4 more like it in the last 10s)",
    ]


def test_rate_limit_filter_keys_on_the_message_template(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(http_limits.time, "monotonic", lambda: clock[0])
    flt = RateLimitFilter(every=10)

    def record(msg, *args):
        return logging.LogRecord("aiohttp.server", logging.WARNING, __file__, 1, msg, args, None)

    assert flt.filter(record("malformed (%s)", 1))
    assert not flt.filter(record("malformed (%s)", 2))
    assert flt.filter(record("Error handling request"))
    clock[0] = 11
    later = record("malformed (%s)", 3)
    assert flt.filter(later) and later.getMessage() == "malformed (3) (and 1 more like it in the last 10s)"
