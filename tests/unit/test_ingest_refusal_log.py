import datetime as dt

from onair.agent.ingest.refusal_log import RefusalLog
from onair.api import refusals

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_one_entry_per_reason_and_protocol_counting_every_refusal():
    log = RefusalLog()
    log.record(refusals.WRONG_KEY, "rtmp", "203.0.113.7", "wrong stream key", at(0))
    log.record(refusals.WRONG_KEY, "rtmp", "203.0.113.8", "wrong stream key", at(2))
    log.record(refusals.WRONG_KEY, "srt", "203.0.113.9", "wrong passphrase", at(3))
    srt, rtmp = log.snapshot()  # most recent first
    assert (rtmp.reason, rtmp.protocol, rtmp.count) == (refusals.WRONG_KEY, "rtmp", 2)
    assert (rtmp.first_at, rtmp.last_at, rtmp.last_address) == (at(0), at(2), "203.0.113.8")
    assert (srt.protocol, srt.count, srt.message) == ("srt", 1, "wrong passphrase")
    log.record(refusals.WRONG_KEY, "rtmp", None, "wrong stream key", at(4))
    assert log.snapshot()[0].protocol == "rtmp" and log.snapshot()[0].last_address is None


def test_the_least_recent_kinds_go_first_when_the_list_is_full():
    log = RefusalLog(limit=2)
    for i, reason in enumerate((refusals.WRONG_KEY, refusals.INACTIVE, refusals.NO_VIDEO)):
        log.record(reason, "rtmp", "203.0.113.7", reason, at(i))
    assert [e.reason for e in log.snapshot()] == [refusals.NO_VIDEO, refusals.INACTIVE]


def test_the_wire_form_is_camel_case():
    log = RefusalLog()
    log.record(refusals.NO_VIDEO, "srt", "203.0.113.7", "no video", at(0))
    wire = log.snapshot()[0].wire()
    assert wire == {
        "reason": "no_video",
        "protocol": "srt",
        "count": 1,
        "firstAt": "2025-01-02T03:04:05Z",
        "lastAt": "2025-01-02T03:04:05Z",
        "lastAddress": "203.0.113.7",
        "message": "no video",
    }
