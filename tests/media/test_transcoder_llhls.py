"""The low-latency tier through the real chain: ingest agent -> transcoder (lowLatency) -> HTTP PUT
part by part -> origin agent. What an LL-HLS client gets: parts of the live segment that decode,
INDEPENDENT parts exactly where segments (keyframes) begin, aligned across the ladder, segments made
of exactly their parts, and a blocking reload answered when the next part exists."""

from __future__ import annotations

import m3u8
import pytest

from tests.fixtures.media import ffprobe_json, first_frame_is_keyframe, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(240)]

RUNGS = ("180p", "144p")


def playlist_of(origin, rung: str, **params) -> tuple[m3u8.M3U8, str]:
    response = origin.get(f"hls/cmaf/{rung}/index.m3u8", params=params)
    assert response.status_code == 200, response.text
    return m3u8.loads(response.text), response.text


def complete(pl: m3u8.M3U8) -> list:
    return [s for s in pl.segments if s.uri]


def last_part(pl: m3u8.M3U8) -> tuple[int, int]:
    """(msn, part index) of the last part listed, as a client numbers it."""
    msn = pl.media_sequence + len(complete(pl))
    tail = pl.segments[-1]
    if tail.uri is None and tail.parts:
        return msn, len(tail.parts) - 1
    return msn - 1, len(tail.parts) - 1


@pytest.fixture
def ll_chain(ingest_agent, origins, transcoder_agent, publishers, tmp_path):
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    origin = origins.start(phase="live", low_latency=True)
    token_file = tmp_path / "uploadToken"
    token_file.write_text(origin.upload_token + "\n")
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=list(RUNGS),
        source_size=(320, 180),
        output_dir=None,
        output_url=origin.upload_url,
        output_token_file=str(token_file),
        low_latency=True,
        part_seconds=0.2,
        hls_mpegts=False,
        dash=False,
    )
    publishers.rtmp(ingest.rtmp_url, width=320, height=180, fps=30)
    ingest.wait_receiving()
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)

    def with_segments(rung, n):
        def check():
            response = origin.get(f"hls/cmaf/{rung}/index.m3u8")
            pl = m3u8.loads(response.text) if response.status_code == 200 else None
            return pl if pl and len(complete(pl)) >= n and pl.part_inf else None

        return check

    for rung in RUNGS:
        wait_for(with_segments(rung, 4), 60, what=f"4 LL segments of {rung} on the origin")
    return origin, tx


def test_parts_of_a_live_stream_are_served_aligned_and_decodable(ll_chain, tmp_path):
    origin, tx = ll_chain
    pl, text = playlist_of(origin, "180p")
    assert pl.server_control.can_block_reload == "YES"
    assert pl.server_control.part_hold_back >= 3 * pl.part_inf.part_target - 1e-6
    assert pl.part_inf.part_target == pytest.approx(0.2, abs=0.01)
    assert "#EXT-X-PRELOAD-HINT:TYPE=PART" in text
    assert '#EXT-X-RENDITION-REPORT:URI="../144p/index.m3u8"' in text
    segments = complete(pl)
    # Plain HLS: 1 s segments, each the concatenation of its parts.
    assert all(s.duration == pytest.approx(1.0, abs=0.05) for s in segments[1:])
    with_parts = [s for s in segments if s.parts]
    assert with_parts and pl.segments[-1].parts  # the last segments and the one being cut
    for seg in with_parts:
        flags = [p.independent == "YES" for p in seg.parts]
        assert flags == [True] + [False] * (len(flags) - 1), f"{seg.uri}: keyframes are not where segments begin"
        assert len(seg.parts) == 5
        assert sum(p.duration for p in seg.parts) == pytest.approx(seg.duration, abs=0.002)
        joined = b"".join(origin.get(f"hls/cmaf/180p/{p.uri}").content for p in seg.parts)
        assert joined == origin.get(f"hls/cmaf/180p/{seg.uri}").content
    # A part decodes on its own after the init; an INDEPENDENT one starts with a keyframe.
    init = origin.get(f"hls/cmaf/180p/{segments[-1].init_section.uri}").content
    first = with_parts[-1].parts[0]
    part = origin.get(f"hls/cmaf/180p/{first.uri}")
    assert part.status_code == 200 and "immutable" in part.headers["cache-control"]
    (tmp_path / "part.mp4").write_bytes(init + part.content)
    assert first_frame_is_keyframe(str(tmp_path / "part.mp4"))
    probe = ffprobe_json(str(tmp_path / "part.mp4"), "-count_frames", "-select_streams", "v:0")
    assert int(probe["streams"][0]["nb_read_frames"]) == 6  # 0.2 s at 30 fps

    # The ladder is aligned: the same segments and part boundaries in every rendition.
    pl, _ = playlist_of(origin, "180p")
    msn, part = last_part(pl)
    other, _ = playlist_of(origin, "144p", _HLS_msn=msn, _HLS_part=part)  # the same live edge
    ours = {pl.media_sequence + i: [p.duration for p in s.parts] for i, s in enumerate(complete(pl)) if s.parts}
    theirs = {other.media_sequence + i: [p.duration for p in s.parts] for i, s in enumerate(complete(other)) if s.parts}
    common = sorted(set(ours) & set(theirs))
    assert len(common) >= 2 and all(ours[m] == theirs[m] for m in common)
    assert [s.uri.replace("180p", "") for s in complete(pl)][: len(complete(other))] == [
        s.uri.replace("144p", "") for s in complete(other)
    ][: len(complete(pl))]


def test_a_blocking_reload_returns_as_soon_as_the_next_part_exists(ll_chain):
    origin, _ = ll_chain
    for _ in range(5):
        pl, _ = playlist_of(origin, "180p")
        msn, part = last_part(pl)
        # What hls.js asks for next: the part after the last one listed (or the next segment's first).
        wanted = (msn, part + 1) if part + 1 < 5 else (msn + 1, 0)
        held, text = playlist_of(origin, "180p", _HLS_msn=wanted[0], _HLS_part=wanted[1])
        got = last_part(held)
        assert got >= wanted, f"answered {got} for a reload of {wanted}"
        # as soon as it exists: not parts later (one more may land while the answer is written)
        distance = (got[0] - wanted[0]) * 5 + got[1] - wanted[1]
        assert distance <= 1, f"answered {got} for a reload of {wanted}: held too long"
        assert "#EXT-X-PRELOAD-HINT:TYPE=PART" in text


def test_delta_updates_from_the_live_chain(ll_chain):
    origin, _ = ll_chain
    wait_for(lambda: len(complete(playlist_of(origin, "180p")[0])) >= 8, 60, what="8 segments")
    delta, text = playlist_of(origin, "180p", _HLS_skip="YES")
    full, _ = playlist_of(origin, "180p")
    assert delta.skip and delta.skip.skipped_segments >= 1
    assert [s.uri for s in complete(delta)] == [s.uri for s in complete(full)][delta.skip.skipped_segments :][
        : len(complete(delta))
    ]
    assert text.index("#EXT-X-MAP") < text.index("#EXTINF")
