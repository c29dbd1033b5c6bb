"""The pure parts of bench/cluster_path.py and bench/_hls_viewer.py: the side-by-side table,
reading `onair dev`'s printed URLs, the viewer's playlist parsing and the failover gap."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bench._onair_dev import dev_endpoints
from onair.localcluster.devruntime import urls_text

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cp():
    return _load("cluster_path")


@pytest.fixture(scope="module")
def viewer():
    return _load("_hls_viewer")


def test_summary_and_ratio_of_medians(cp):
    assert cp.summary([]) is None
    assert cp.summary([3.0, 1.0, 2.0, 10.0]) == (1.0, 2.5, 10.0)
    assert cp.format_summary([1.0, 2.0, 4.0]) == "1.00 / 2.00 / 4.00 s (n=3)"
    assert cp.format_summary([]) == "n/a"
    assert cp.ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == "2.00x"
    assert cp.ratio([], [1.0]) == "n/a"


def test_table_puts_both_ways_side_by_side(cp):
    out = cp.table(
        {"node": {"publish -> status.live": [1.0, 3.0]}, "dev": {"publish -> status.live": [1.0]}},
        metrics=["publish -> status.live", "publish -> first playable"],
    )
    header, live, first = out.splitlines()
    assert "real node" in header and "process runner" in header
    assert "1.00 / 2.00 / 3.00 s (n=2)" in live and "1.00 / 1.00 / 1.00 s (n=1)" in live and live.endswith("2.00x")
    assert first.split()[-3:] == ["n/a", "n/a", "n/a"]


def test_dev_endpoints_reads_the_latest_block_per_livestream():
    printed = [
        "operator ready\n",
        "\n",
        "Livestream bench/bench-0 on this machine:\n",
        "  push  rtmp         rtmp://127.0.0.1:4001/live\n",
        "  RTMP needs the stream key: kubectl -n bench get secret bench-0-credentials -o jsonpath=...\n",
        "\n",
        "Livestream bench/bench-0 on this machine:\n",
        "  push  rtmp         rtmp://127.0.0.1:4001/live\n",
        "  push  backupRtmp   rtmp://127.0.0.1:4002/live\n",
        "  play  hlsCmaf      http://127.0.0.1:4003/hls/cmaf/master.m3u8\n",
        "something else\n",
        "  play  hlsCmaf      http://not-this\n",
    ]
    assert dev_endpoints(printed) == {
        ("bench", "bench-0"): {
            "ingest": {"rtmp": "rtmp://127.0.0.1:4001/live", "backupRtmp": "rtmp://127.0.0.1:4002/live"},
            "playback": {"hlsCmaf": "http://127.0.0.1:4003/hls/cmaf/master.m3u8"},
        }
    }


def test_gap_is_from_the_cut_to_the_first_backup_segment_listed_after_it(cp):
    red, blue = [200, 10, 10], [10, 10, 200]
    events = cp.viewer_events(
        "\n".join(
            [
                '{"event": "baseline", "t": 0.0, "count": 3}',
                "a stray warning",
                '{"event": "segment", "t": 1.0, "uri": "a", "rgb": [%s]}' % str(blue),  # before the cut: not counted
                '{"event": "segment", "t": 2.0, "uri": "b", "rgb": [%s, %s]}' % (str(red), str(red)),
                '{"event": "segment", "t": 4.0, "uri": "c", "rgb": [%s]}' % str(red),
                '{"event": "segment", "t": 6.5, "uri": "d", "rgb": [%s, %s]}' % (str(red), str(blue)),
            ]
        )
    )
    assert [e["event"] for e in events] == ["baseline", "segment", "segment", "segment", "segment"]
    assert cp.steady(events[:4])
    assert not cp.steady(events)
    assert cp.gap_after(events, 3.0) == pytest.approx(3.5)
    assert cp.gap_after(events, 7.0) is None


def test_viewer_parses_master_and_media_playlists(viewer):
    master = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=1\n240p/x.m3u8\n"
    )
    assert viewer.first_variant(master) == "360p/index.m3u8"
    with pytest.raises(ValueError):
        viewer.first_variant("#EXTM3U\n")
    media = (
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n'
        "#EXTINF:2.0,\nseg_1.m4s\n#EXTINF:2.0,\nseg_2.m4s\n"
    )
    assert viewer.media_entries(media) == ("init.mp4", ["seg_1.m4s", "seg_2.m4s"])
    assert viewer.media_entries("#EXTM3U\n#EXTINF:2,\na.ts\n") == (None, ["a.ts"])


def test_pushes_are_spread_evenly_over_one_poll_interval(cp):
    assert [cp.push_phase(i, 4, 5.0) for i in range(4)] == [0.625, 1.875, 3.125, 4.375]
    assert cp.push_phase(0, 1, 5.0) == 2.5


@pytest.mark.parametrize("where", ["on this machine", "on the node"])
def test_dev_endpoints_reads_what_onair_dev_prints(where):
    urls = {
        "ingest": {"rtmp": "rtmp://10.0.0.1:31935/live", "srt": "srt://10.0.0.1:30998?streamid=x"},
        "playback": {"hlsCmaf": "http://10.0.0.1:30081/hls/cmaf/master.m3u8"},
    }
    printed = ("operator ready\n" + urls_text("bench", "show", where, urls) + "\nlater line\n").splitlines(True)
    assert dev_endpoints(printed) == {("bench", "show"): urls}
