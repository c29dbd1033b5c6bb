"""The built-in CallTypes as a user meets them: backstage preview and backstage recording, end to end.

Local control plane + the operator + the pod runner running every agent as a real process, an
encoder pushing RTMP, and hls.js in headless Chromium. The CallType is the chart's built-in
``livestream`` file, applied under a name of its own so the test never depends on (or changes)
what else the cluster holds. Nobody writes ``spec.broadcasting``: what GetStream users get from
the built-in call type is what must happen.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import m3u8
import pytest
import yaml

from onair.agent.origin.server import HLS_JS
from tests.e2e.test_livestream_e2e import LS, Show, http_get
from tests.fixtures.browser import browser  # noqa: F401  (fixture)
from tests.fixtures.media import ffprobe_json
from tests.fixtures.podrunner import operator_with_podrunner, podrunner  # noqa: F401

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.media,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not HLS_JS.is_file(), reason="hls.js not built: run scripts/build-player"),
]

BUILTIN = Path(__file__).resolve().parents[2] / "charts" / "onair" / "files" / "calltypes" / "livestream.yaml"
# Small and cheap: the built-in ladder is fitted to the source, so only 360p is encoded.
SOURCE = dict(width=640, height=360, fps=15)
PLAYING = "window.onairPlayer && document.getElementById('video').currentTime > 0.5"
CURRENT_TIME = "document.getElementById('video').currentTime"


@pytest.fixture
def builtin_livestream(kube):
    """The built-in ``livestream`` CallType, settings and grants as shipped, under a test's own name."""
    shipped = yaml.safe_load(BUILTIN.read_text())
    assert shipped["metadata"]["name"] == "livestream"
    name = f"builtin-livestream-{secrets.token_hex(3)}"
    kube.create_calltype(name, settings=shipped["spec"]["settings"], grants=shipped["spec"]["grants"])
    yield name
    kube.delete_calltype(name)


async def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking waits (the API, HTTP) off the event loop the browser's DevTools connection runs on."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def assert_plays(show: Show, page, what: str) -> None:
    # Chromium pauses a muted autoplaying video in a hidden tab: look at this one.
    await page.send("Page.bringToFront")
    try:
        await page.wait_for(PLAYING, timeout=60, what=f"{what}: playback to start")
        start = await page.evaluate(CURRENT_TIME)
        await asyncio.sleep(5)
        end = await page.evaluate(CURRENT_TIME)
    except TimeoutError as exc:
        pytest.fail(f"{exc}{await off_loop(show.diagnostics)}", pytrace=False)
    show.check(end - start > 1.0, f"{what}: the video stalled ({start:.2f} -> {end:.2f}); console {page.console[-10:]}")
    show.check(await page.evaluate("onairPlayer.fatal") is None, f"{what}: hls.js fatal error")
    show.step(f"ok: {what} plays ({start:.1f} s -> {end:.1f} s)")


def media_uris(show: Show, url: str) -> list[str]:
    return [s.uri.split("?")[0] for s in show.media(url).segments]


def member_token(show: Show, user_id: str) -> str:
    status = show.status()
    secret = show.kube.core.read_namespaced_secret(status["memberTokensSecret"], show.ns)
    return base64.b64decode(secret.data[user_id]).decode()


async def test_hosts_preview_the_backstage_of_the_builtin_livestream_calltype_in_a_real_player(
    operator_with_podrunner, podrunner, kube, namespace, publishers, builtin_livestream, browser, tmp_path
):  # noqa: F811
    show = Show(kube, podrunner, namespace, tmp_path)
    await off_loop(
        kube.create_livestream,
        namespace,
        LS,
        {
            "callType": builtin_livestream,
            "members": [{"userId": "alice", "role": "host"}, {"userId": "bob", "role": "user"}],
        },
    )
    show.step("Livestream created with the built-in livestream CallType: a host and a user")
    st = await off_loop(
        show.until_status,
        lambda s: any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or ()),
        180,
        "Ready",
    )
    show.check(
        st.get("phase") == "backstage" and st.get("viewersAllowed") is False,
        f"a new stream of the livestream CallType is in backstage, closed to viewers: {st}",
    )
    show.check(
        st.get("backstageMembers") == ["alice"], f"only the host may join backstage: {st.get('backstageMembers')}"
    )
    publishers.rtmp(await off_loop(show.publish_url, "main"), **SOURCE)
    await off_loop(show.until_status, lambda s: s.get("live") is True, 60, "status.live")

    # -------------------------------------------------------------- the host's preview
    alice = await off_loop(member_token, show, "alice")
    master = await off_loop(show.master_url, alice)
    variants = await off_loop(
        show.until,
        lambda: (lambda r: r[0] == 200 and show.variants(master))(http_get(master)),
        90,
        "the host's token opens the backstage master playlist",
    )
    preview_url = next(iter(variants.values()))
    await off_loop(show.until, lambda: len(media_uris(show, preview_url)) >= 2, 60, "the preview has segments")
    code, _ = await off_loop(http_get, await off_loop(show.master_url))
    show.check(code == 403, f"backstage without a token answered {code}")
    player = await off_loop(show.local_url, "playback", "player")
    page = await browser.new_page(f"{player}?token={alice}")
    await assert_plays(show, page, "the host's backstage preview in Chromium")
    preview = await off_loop(media_uris, show, preview_url)
    anonymous = await browser.new_page(player)
    text = await anonymous.evaluate("document.body.innerText")
    show.check(
        "token is required" in text, f"the player without a token should say a token is required: {text[:200]!r}"
    )

    # -------------------------------------------------------------- live: viewers, without the preview
    await off_loop(kube.patch_livestream, namespace, LS, {"spec": {"phase": "live"}})
    await off_loop(
        show.until_status,
        lambda s: s.get("phase") == "live" and s.get("viewersAllowed") is True,
        60,
        "live, open to viewers",
    )
    public_url = preview_url.split("?")[0]
    public = await off_loop(
        show.until,
        lambda: (
            lambda r: (
                r[0] == 200
                and m3u8.loads(r[1].decode()).segments
                and [s.uri for s in m3u8.loads(r[1].decode()).segments]
            )
        )(http_get(public_url)),
        60,
        "a segment made after going live, for viewers",
    )
    show.check(
        not set(public) & set(preview),
        f"the viewers' playlist lists backstage segments: {sorted(set(public) & set(preview))}",
    )
    code, body = await off_loop(http_get, public_url.rsplit("/", 1)[0] + "/" + preview[0])
    show.check(
        code == 403 and b"not broadcast to viewers" in body,
        f"a backstage segment without a token answered {code}: {body[:200]!r}",
    )
    await anonymous.navigate(player)
    await assert_plays(show, anonymous, "a viewer without a token, once live")
    await assert_plays(show, page, "the host's player across going live")
    show.check(
        page.exceptions == [] and anonymous.exceptions == [],
        f"page exceptions: {page.exceptions + anonymous.exceptions}",
    )


async def test_an_auto_on_transcoded_recording_starts_in_backstage_and_is_kept_after_the_end(
    operator_with_podrunner, podrunner, kube, namespace, publishers, builtin_livestream, tmp_path
):  # noqa: F811
    show = Show(kube, podrunner, namespace, tmp_path)
    await off_loop(
        kube.create_livestream,
        namespace,
        LS,
        {"callType": builtin_livestream, "settingsOverride": {"recording": {"mode": "auto-on", "type": "transcoded"}}},
    )
    show.step("Livestream created: built-in livestream CallType, recording auto-on, transcoded")

    def recording_condition(status: dict) -> dict:
        return next((c for c in status.get("conditions") or () if c["type"] == "Recording"), {})

    await off_loop(
        show.until_status,
        lambda s: any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("conditions") or ()),
        180,
        "Ready",
    )
    publishers.rtmp(await off_loop(show.publish_url, "main"), **SOURCE)

    # -------------------------------------------------------------- backstage: GetStream's "recording starts in backstage"
    st = await off_loop(
        show.until_status,
        lambda s: s.get("recording") is True and (s.get("recordingDurationSeconds") or 0) >= 4,
        120,
        "recording 4 s in backstage",
    )
    show.check(st["phase"] == "backstage" and st["viewersAllowed"] is False, f"still backstage, closed: {st}")
    show.check(recording_condition(st).get("reason") == "RecordingInProgress", f"{recording_condition(st)}")
    code, _ = await off_loop(http_get, await off_loop(show.master_url))
    show.check(code == 403, f"the recording opens nothing to viewers, yet backstage answered {code}")

    # -------------------------------------------------------------- live: the same recording goes on
    recorded = st["recordingDurationSeconds"]
    await off_loop(kube.patch_livestream, namespace, LS, {"spec": {"phase": "live"}})
    st = await off_loop(
        show.until_status,
        lambda s: (
            s.get("phase") == "live"
            and s.get("recording") is True
            and (s.get("recordingDurationSeconds") or 0) >= recorded + 4
        ),
        60,
        "the recording goes on after going live",
    )

    # -------------------------------------------------------------- ended: what was recorded stays
    await off_loop(kube.patch_livestream, namespace, LS, {"spec": {"phase": "ended"}})
    ended_at = time.monotonic()
    st = await off_loop(
        show.until_status,
        lambda s: s.get("phase") == "ended" and s.get("recording") is False and s.get("recordings"),
        90,
        "the finished recording in the status",
    )
    [session] = st["recordings"]
    show.check(
        st["recordingDurationSeconds"] >= recorded + 4,
        f"recordingDurationSeconds after the end is {st['recordingDurationSeconds']}, the final duration expected",
    )
    show.check(
        st["recordingDurationSeconds"] == round(session["durationSeconds"]),
        f"{st['recordingDurationSeconds']} vs the session's {session['durationSeconds']}",
    )
    volumes = sorted((podrunner.root / "namespaces" / namespace / "volumes").glob(f"{LS}-recordings-*"))
    show.check(len(volumes) == 1, f"one recordings volume expected: {volumes}")
    for part in session["parts"]:
        path = volumes[0] / part["file"]
        show.check(path.is_file() and path.stat().st_size == part["bytes"], f"{part} on the volume: {path}")
        info = await off_loop(ffprobe_json, str(path))
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        show.check((video["width"], video["height"]) == (640, 360), f"the top transcoded rung: {video}")
    await asyncio.sleep(max(0.0, 3 - (time.monotonic() - ended_at)))  # a few more polls: nothing drops back to 0
    later = await off_loop(show.status)
    show.check(
        later.get("recordings") == st["recordings"]
        and later.get("recordingDurationSeconds") == st["recordingDurationSeconds"],
        f"{later}",
    )
    reasons = await off_loop(kube.event_reasons, namespace, LS)
    show.check(
        reasons.count("RecordingStarted") == 1 and reasons.count("RecordingStopped") == 1,
        f"one recording from backstage to the end: {reasons}",
    )
    warnings = [
        (e["reason"], e["message"])
        for e in await off_loop(kube.events, namespace, LS)
        if e["type"] == "Warning" and e["reason"] not in ("BroadcastingFailed", "IngestStopped")
    ]
    show.check(not warnings, f"unexpected Warning events: {warnings}")
    show.step(
        f"recorded {st['recordingDurationSeconds']} s from backstage to the end: "
        f"{[p['file'] for p in session['parts']]}"
    )
