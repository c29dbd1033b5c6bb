"""The real chain: ingest agents (main + backup) -> transcoder -> HTTP PUT -> origin agent -> viewer."""

from __future__ import annotations

import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from tests.fixtures.media import ffprobe_json, first_frame_is_keyframe, wait_for

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(240)]


def test_ingest_to_origin_over_http_with_failover(ingest_agent, origins, transcoder_agent, publishers, tmp_path):
    main = ingest_agent.start(slot="main", protocols=("rtmp",))
    backup = ingest_agent.start(slot="backup", protocols=("rtmp",))
    origin = origins.start(phase="live")
    token_file = tmp_path / "uploadToken"
    token_file.write_text(origin.upload_token + "\n")
    tx = transcoder_agent.start(
        main_url=main.read_url,
        backup_url=backup.read_url,
        tracks=["180p", "144p"],
        source_size=(320, 180),
        output_dir=None,
        output_url=origin.upload_url,
        output_token_file=str(token_file),
    )
    main_pub = publishers.rtmp(main.rtmp_url, width=320, height=180)
    publishers.rtmp(backup.rtmp_url, width=320, height=180)
    main.wait_receiving()
    backup.wait_receiving()
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase="live", broadcasting=True)

    def served(path):
        response = origin.get(path)
        return response if response.status_code == 200 else None

    master = m3u8.loads(wait_for(lambda: served("hls/cmaf/master.m3u8"), 60, what="master on the origin").text)
    assert sorted(p.uri for p in master.playlists) == ["144p/index.m3u8", "180p/index.m3u8"]

    def playable(rung):
        response = served(f"hls/cmaf/{rung}/index.m3u8")
        playlist = m3u8.loads(response.text) if response else None
        return playlist if playlist and len(playlist.segments) >= 2 else None

    playlist = wait_for(lambda: playable("180p"), 40, what="two segments on the origin")
    segment = playlist.segments[-1]
    init = origin.get(f"hls/cmaf/180p/{segment.init_section.uri}")
    media = origin.get(f"hls/cmaf/180p/{segment.uri}")
    assert init.status_code == 200 and media.status_code == 200
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(init.content + media.content)
    assert first_frame_is_keyframe(str(joined))
    assert any(p.program_date_time for p in playlist.segments)

    ts = wait_for(lambda: served("hls/ts/master.m3u8"), 30, what="TS master on the origin")
    assert len(m3u8.loads(ts.text).playlists) == 2
    mpd = wait_for(lambda: served("dash/manifest.mpd"), 30, what="MPD on the origin")
    assert MPEGDASHParser.parse(mpd.text).type == "dynamic"
    shot = wait_for(lambda: served("screenshot.jpg"), 30, what="screenshot on the origin")
    (tmp_path / "shot.jpg").write_bytes(shot.content)
    assert ffprobe_json(str(tmp_path / "shot.jpg"))["streams"][0]["width"] == 1080

    # Main's encoder goes away: the backup ingest carries on, the origin playlist never ends.
    last = playlist.segments[-1].uri
    main_pub.kill()
    tx.wait_status(lambda s: s.get("activeSource") == "backup", 15, "backup on air")
    newer = wait_for(
        lambda: (
            lambda p: (
                p if p and p.segments[-1].uri != last and sum(1 for s in p.segments if s.uri > last) >= 2 else None
            )
        )(playable("180p")),
        30,
        what="new segments after the failover",
    )
    assert not newer.is_endlist
    assert tx.status()["qualities"] == ["180p", "144p"]
    assert "onair_transcoder_upload_errors_total" in tx.metrics()
    assert 'onair_transcoder_upload_errors_total{livestream="default/test"} 0.0' in tx.metrics()
