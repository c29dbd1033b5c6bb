"""Two origin replicas behind one (imagined) Service, fed by one real LL-HLS transcoder that PUTs
every file to both (``outputUrls``): a viewer balanced from one replica to the other must get the
same playlist, with the same numbering and parts; a crashed replica is no outage, and once back it
continues the survivor's numbering instead of starting again (``origin/replicas.py``)."""

from __future__ import annotations

import concurrent.futures
import shutil
import time

import httpx
import pytest

from tests.fixtures.media import free_port, wait_for
from tests.fixtures.origin import replica_numbering, replicas_agree
from tests.media.test_transcoder_lldash import newest_segment

pytestmark = [pytest.mark.media, pytest.mark.slow, pytest.mark.timeout(300)]

RUNGS = ("180p", "144p")


def playlist(origin, rung: str, **params) -> str:
    response = origin.get(f"hls/cmaf/{rung}/index.m3u8", params=params)
    assert response.status_code == 200, response.text
    return response.text


def last_msn(text: str) -> int:
    return max(replica_numbering(text))


def start_chain(ingest_agent, origins, transcoder_agent, publishers, tmp_path, phase: str, dash: bool = False):
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}/upload" for p in ports]
    a = origins.start(phase=phase, low_latency=True, upload_port=ports[0], peer_upload_urls=[urls[1]])
    b = origins.start(phase=phase, low_latency=True, upload_port=ports[1], peer_upload_urls=[urls[0]])
    assert [a.upload_url, b.upload_url] == urls
    ingest = ingest_agent.start(slot="main", protocols=("rtmp",))
    token_file = tmp_path / "uploadToken"
    token_file.write_text(a.upload_token + "\n")
    tx = transcoder_agent.start(
        main_url=ingest.read_url,
        tracks=list(RUNGS),
        source_size=(320, 180),
        output_dir=None,
        output_urls=urls,
        output_token_file=str(token_file),
        low_latency=True,
        part_seconds=0.2,
        hls_mpegts=False,
        dash=dash,
    )
    publishers.rtmp(ingest.rtmp_url, width=320, height=180, fps=30)
    ingest.wait_receiving()
    tx.wait_status(lambda s: s.get("activeSource") == "main", 30, "main selected")
    tx.put_desired(phase=phase, broadcasting=True)
    for origin in (a, b):
        for rung in RUNGS:
            wait_for(
                lambda: (
                    origin.get(f"hls/cmaf/{rung}/index.m3u8", params={"token": origin.token()}).status_code == 200
                    and len(replica_numbering(playlist(origin, rung, token=origin.token()))) >= 4
                ),
                60,
                what=f"4 segments of {rung} on {origin.base}",
            )
    return a, b, tx


@pytest.fixture
def replicas(ingest_agent, origins, transcoder_agent, publishers, tmp_path):
    return start_chain(ingest_agent, origins, transcoder_agent, publishers, tmp_path, "live")


@pytest.fixture
def backstage_replicas(ingest_agent, origins, transcoder_agent, publishers, tmp_path):
    """In backstage with a host preview (private segments) until each replica is made public."""
    return start_chain(ingest_agent, origins, transcoder_agent, publishers, tmp_path, "backstage")


def settled(a, b, tx) -> None:
    """Uploads stop (broadcasting off) and both replicas finish indexing what was sent."""
    tx.put_desired(phase="live", broadcasting=False)
    previous: dict = {}

    def still() -> bool:
        now = {(o.base, r): playlist(o, r) for o in (a, b) for r in RUNGS}
        same = now == previous
        previous.clear()
        previous.update(now)
        if not same:
            time.sleep(1.5)
        return same

    wait_for(still, 60, what="both replicas' playlists to stop changing")


def identical(a, b) -> None:
    token = a.token()
    for rung in RUNGS:
        for params in ({}, {"token": token}, {"_HLS_skip": "YES"}, {"token": token, "_HLS_skip": "YES"}):
            ours, theirs = playlist(a, rung, **params), playlist(b, rung, **params)
            assert ours == theirs, f"{rung} {params}: the replicas answer differently:\n{ours}\n----\n{theirs}"
            assert "#EXT-X-PART:" in ours
        last = replica_numbering(playlist(a, rung))[last_msn(playlist(a, rung))]
        assert a.get(f"hls/cmaf/{rung}/{last[1]}").content == b.get(f"hls/cmaf/{rung}/{last[1]}").content


def test_both_replicas_serve_the_same_playlists_and_parts(replicas):
    a, b, tx = replicas
    for _ in range(5):
        # The same blocking reload on both: the same segments under the same numbers, the same parts.
        text = playlist(a, "180p")
        msn = last_msn(text) + 1
        ours, theirs = playlist(a, "180p", _HLS_msn=msn, _HLS_part=0), playlist(b, "180p", _HLS_msn=msn, _HLS_part=0)
        replicas_agree(replica_numbering(ours), replica_numbering(theirs), at_least=4)
    settled(a, b, tx)
    identical(a, b)


def test_a_crashed_replica_is_no_outage_and_comes_back_with_the_same_numbering(replicas, origins):
    a, b, tx = replicas
    b.proc.kill()
    b.proc.wait(10)
    # Viewers balanced to the survivor keep playing: its live edge advances, its segments are served.
    start = last_msn(playlist(a, "180p"))
    wait_for(lambda: last_msn(playlist(a, "180p")) >= start + 4, 30, what="the survivor's live edge to advance")
    text = playlist(a, "180p")
    newest = replica_numbering(text)[last_msn(text)][1]
    assert a.get(f"hls/cmaf/180p/{newest}").status_code == 200
    # Back on a new, empty volume (a StatefulSet pod whose claim was lost, or a replica added): it
    # copies the survivor's DVR and what the transcoder sent once (the master playlist) before it
    # serves, and numbers what comes next as the survivor does.
    shutil.rmtree(b.data_dir)
    b.spawn()
    b.wait_ready(30, b.serving)
    b.set_phase("live")
    assert "DVR copied from the peer replica" in b.log_text()
    assert httpx.get(f"{b.agent}/readyz", timeout=5).status_code == 200  # the StatefulSet's readinessProbe
    master = b.get("hls/cmaf/master.m3u8")
    assert master.status_code == 200 and master.text == a.get("hls/cmaf/master.m3u8").text
    ours, theirs = replica_numbering(playlist(a, "180p")), replica_numbering(playlist(b, "180p"))
    replicas_agree(ours, theirs, at_least=4)
    assert min(theirs) <= start, "the restarted replica lost the DVR it was down for"
    wait_for(lambda: last_msn(playlist(b, "180p")) >= last_msn(playlist(a, "180p")) - 1, 30, what="b to follow")
    text = playlist(a, "180p")
    replicas_agree(
        replica_numbering(text),
        replica_numbering(playlist(b, "180p", _HLS_msn=last_msn(text), _HLS_part=0)),
        at_least=4,
    )
    settled(a, b, tx)
    identical(a, b)
    assert httpx.get(f"{b.base}/hls/cmaf/180p/index.m3u8", timeout=5).status_code == 200


def test_replicas_made_public_a_moment_apart_number_the_viewers_playlist_alike_all_along(backstage_replicas):
    """The operator tells each replica in turn: a segment that begins between the two is private on
    one and public on the other. The viewers' numbering does not depend on it: a public segment
    keeps the number the upload order gave it (the members' numbering), so a media sequence number
    names the same segment on both replicas at every instant, not only once the one behind copied
    the other (the replicas still compare their last segments, and b, which has two segments private
    that a has public, copies a)."""
    a, b, tx = backstage_replicas
    seen: dict[int, tuple] = {}
    samples = [0]

    def sample() -> None:
        for origin in (a, b):
            for msn, entry in viewers(origin).items():
                first = seen.setdefault(msn, (origin.base, entry[:2]))
                assert first[1] == entry[:2], f"#{msn} was {first[1]} on {first[0]}, then {entry[:2]} on {origin.base}"
                samples[0] += 1

    def sample_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            sample()
            time.sleep(0.1)

    a.set_phase("live")
    sample_for(2.5)  # two segments and a dozen parts: made public on a, still the preview on b
    b.set_phase("live")
    wait_for(
        lambda: sample() or min(len(viewers(o)) for o in (a, b)) >= 3,
        30,
        what="public segments on both",
    )
    # Through the replicas' comparison (every 3 s) and the copy it starts.
    sample_for(8)
    assert samples[0] > 100, f"only {samples[0]} numbered segments seen: no test"
    ours, theirs = viewers(a), viewers(b)
    replicas_agree(ours, theirs, at_least=3)
    # Why they agree whenever each was made public: viewers' numbers are the upload order's, the
    # members' (who also saw the preview), not a count of the segments made public on that replica.
    for origin, view in ((a, ours), (b, theirs)):
        token_view = replica_numbering(playlist(origin, "180p", token=a.token()))
        members = {uri.split("?")[0]: msn for msn, (_, uri, _) in token_view.items()}
        assert all(members.get(uri) == msn for msn, (_, uri, _) in view.items()), (origin.base, view, members)
    assert "differs from the peer" in a.log_text() + b.log_text(), "the replicas never diverged: no test"
    settled(a, b, tx)
    identical(a, b)


def viewers(origin) -> dict:
    response = origin.get("hls/cmaf/180p/index.m3u8")
    return replica_numbering(response.text) if response.status_code == 200 else {}


@pytest.fixture
def lldash_replicas(ingest_agent, origins, transcoder_agent, publishers, tmp_path):
    """LL-HLS and LL-DASH: each DASH segment is one chunked PUT to every replica as ffmpeg writes it."""
    return start_chain(ingest_agent, origins, transcoder_agent, publishers, tmp_path, "live", dash=True)


def test_both_replicas_serve_the_ll_dash_segment_being_written_chunked_and_the_same_mpd(lldash_replicas):
    a, b, tx = lldash_replicas
    wait_for(lambda: all((s := newest_segment(o.data_dir)) and s[2] >= 3 for o in (a, b)), 60, what="DASH on both")
    # The same MPD from both (one Host, as behind the Service): read when it did not change meanwhile.
    host = {"Host": "origin.example"}
    for _ in range(20):
        first, theirs, again = (o.get("dash/manifest.mpd", headers=host) for o in (a, b, a))
        assert first.status_code == theirs.status_code == 200, (first.text, theirs.text)
        if first.text == again.text:
            assert theirs.text == first.text, f"the replicas' MPDs differ:\n{first.text}\n----\n{theirs.text}"
            break
        time.sleep(0.1)
    else:
        pytest.fail("the MPD changed between every two reads")
    # The segment being written, asked of both replicas at once: each streams it chunk by chunk
    # before it is complete there, and both end with the same bytes, the finished segment's.
    attempts = []
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            run, rep, number = newest_segment(a.data_dir)
            name = f"{run}_{rep}_{number + 1:06d}.m4s"
            got = list(pool.map(lambda o: stream_segment(o, name), (a, b)))
            attempts.append((name, [(g[0].get("transfer-encoding"), g[1], len(g[2])) for g in got]))
            if all(early is False for _, early, _ in got):
                break
            time.sleep(0.1)  # complete on a replica by the time we asked: try the next one
        else:
            pytest.fail(f"never got a segment from both replicas before it was complete: {attempts}")
    for origin, (headers, _, chunks) in zip((a, b), got):
        assert headers.get("transfer-encoding") == "chunked" and "content-length" not in headers
        streamed = b"".join(chunks)
        assert len(chunks[0]) < len(streamed), "its first bytes came only with the rest"
        assert (origin.data_dir / "dash" / name).read_bytes() == streamed
        later = origin.get(f"dash/{name}")
        assert later.status_code == 200 and later.content == streamed
    assert b"".join(got[0][2]) == b"".join(got[1][2])


def stream_segment(origin, name: str) -> tuple:
    """(response headers, whether the segment was complete on the replica's disk at the first chunk, chunks)."""
    on_disk = origin.data_dir / "dash" / name
    chunks: list[bytes] = []
    complete_when_first = None
    with httpx.stream("GET", origin.url(f"dash/{name}"), timeout=10) as response:
        assert response.status_code == 200, response.read()
        for chunk in response.iter_raw():
            if not chunks:
                complete_when_first = on_disk.exists()
            chunks.append(chunk)
        return response.headers, complete_when_first, chunks
