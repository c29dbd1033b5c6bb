"""Glass-to-glass latency as a viewer gets it: from the moment a frame is made to the moment a
stock player puts it on screen, through the whole product as its user runs it.

`onair dev` (the process runner by default, `--runtime node` for the real node) with the built-in
`livestream` CallType and a Livestream going live at once; a camera (bench/g2g/camera.py) stamps
each 720p30 frame with its capture time and pushes it like OBS (RTMP, or SRT) to the URL onair dev
prints; headless Chromium plays each public playback URL in a stock player (hls.js with its
defaults for HLS CMAF and MPEG-TS, dash.js with its defaults for DASH, the browser's own
RTCPeerConnection for WHEP, as the origin's ``/player?format=whep`` plays it: the Livestream then
has ``broadcasting.outputs.webrtc``) on a page that reads the
stamp back from every decoded frame (bench/g2g/page.js). No server timestamp is used.

Per player: startup (page open -> first frame on screen), latency p50/p95/min/max over the
sampling window (after a settling time), stalls, and how far the player's own idea of the shown
frame's time is from its capture time (``pdt-cap``: hls.js's program-date-time; dash.js's
``timeAsUTC()``, availabilityStartTime + media time), i.e. how much of the latency lies before the
player's timeline begins. Prints figures, asserts nothing; stops everything it started.

Players are measured one after the other, after one unmeasured page per player kind (a fresh
browser's first page starts up to a second slower, which a stock player keeps as latency). Each
standard HLS player joins half a segment after its playlist listed one (``--join-phase``): stock
hls.js counts the live edge's age from its own first load, so the phase a viewer joins at (0 to a
segment) stays in its latency, and two players joined at different phases do not compare.

    python3 bench/glass_to_glass.py [--runtime process|node] [--seconds 30] [--settle 10]
                                    [--protocol rtmp|srt] [--encoder obs|zerolatency] [--size 1280x720]
                                    [--low-latency [--part-ms 200]] [--segment-seconds 1]
                                    [--zero-latency-encoding]

``--low-latency`` measures the low-latency tier: the Livestream overrides its CallType with
``broadcasting.lowLatency: true`` (LL-HLS parts on the CMAF output, chunked DASH), the CMAF playlist
is played by stock hls.js with ``lowLatencyMode: true`` (its LL-HLS support, at PART-HOLD-BACK) and the
origin player page's ``maxLiveSyncPlaybackRate`` (``--hls-max-rate 1`` for hls.js's default), and
the MPD by stock dash.js in its low-latency mode with the settings of the origin's player page
(``streaming.delay.liveDelay`` at the MPD's latency target, ``liveCatchup`` on).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]
# `onair dev` and the agents it starts must run this tree's code.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "operator"), str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
)

from bench._onair_dev import OnairDev  # noqa: E402 - needs the paths above
from onair.agent.origin.dash import LL_MAX_PLAYBACK_RATE, LL_MIN_PLAYBACK_RATE, LowLatency  # noqa: E402
from onair.agent.origin.server import LL_HLS_MAX_PLAYBACK_RATE  # noqa: E402
from bench.g2g import server  # noqa: E402
from bench.g2g.camera import Camera  # noqa: E402
from bench.waiting import wait_until  # noqa: E402

NAMESPACE, NAME = "g2g", "g2g"
GROUP, VERSION = "onair.dev", "v1alpha1"
# status.playback key -> the stock player that plays it.
PLAYERS = {"hlsCmaf": "hls", "hlsMpegts": "hls", "dash": "dash", "whep": "whep"}
# With --low-latency: LL-HLS and LL-DASH in their players' low-latency modes.
LOW_LATENCY_PLAYERS = {"hlsCmaf": "hls-ll", "dash": "dash-ll"}


def livestream_spec(
    low_latency: bool,
    part_ms: int,
    webrtc: bool = False,
    segment_seconds: Optional[int] = None,
    zero_latency_encoding: bool = False,
) -> dict:
    spec: dict = {"callType": "livestream", "phase": "live"}
    broadcasting: dict = {}
    if segment_seconds is not None:
        broadcasting["segmentDurationSeconds"] = segment_seconds
    if zero_latency_encoding:
        broadcasting["zeroLatencyEncoding"] = True
    if low_latency:
        broadcasting.update({"lowLatency": True, "partDurationMs": part_ms})
    if webrtc:
        broadcasting["outputs"] = {"webrtc": True}  # WHEP: one more rendition, so only when it is measured
    if broadcasting:
        spec["settingsOverride"] = {"broadcasting": broadcasting}
    return spec


def player_for(key: str, low_latency: bool) -> str:
    if low_latency and key in LOW_LATENCY_PLAYERS:
        return LOW_LATENCY_PLAYERS[key]
    return PLAYERS[key]


def page_query(player: str, part_ms: int, hls_max_rate: float = LL_HLS_MAX_PLAYBACK_RATE) -> str:
    """The measuring page's player settings: the low-latency modes get the player page's."""
    if player == "whep":
        return os.environ.get("G2G_WHEP_QUERY", "")
    if player == "hls-ll":
        return f"&maxRate={hls_max_rate:g}"
    if player != "dash-ll":
        return ""
    ll = LowLatency.for_chunks(part_ms / 1000)
    return (
        f"&liveDelay={ll.target_seconds:.3f}&maxDrift={ll.max_seconds - ll.target_seconds:.3f}"
        f"&rateMin={LL_MIN_PLAYBACK_RATE - 1:.3f}&rateMax={LL_MAX_PLAYBACK_RATE - 1:.3f}"
    )


def measured(args: argparse.Namespace, key: str) -> bool:
    return not args.players or key in args.players.split(",")


async def join_at_phase(listings: asyncio.Queue[float], phase: float) -> None:
    """Wait until ``phase`` of a segment after its playlist listed a new one.

    Stock hls.js counts the live edge's age from its own first playlist load, so how long the newest
    segment had been listed when a viewer joined (0 to one segment) stays in that viewer's latency
    for good. Joining every HLS player at the same phase makes their figures comparable; 0.5 is the
    average viewer's."""
    while not listings.empty():
        listings.get_nowait()
    try:
        duration = await asyncio.wait_for(listings.get(), 60)
    except asyncio.TimeoutError:
        print("no new segment listed in 60 s: the player joins at whatever phase", flush=True)
        return
    await asyncio.sleep(phase * duration)


async def warm_up(browser, base: str, urls: dict, args: argparse.Namespace) -> None:
    """Play each kind of player once, unmeasured: a fresh browser's first page spends up to a second
    more before its first frame (scripts compiled, media pipeline and decoder started), and a stock
    player that never catches up keeps that second as latency. Measured first, a player would carry it
    alone and lose to the same player measured second."""
    for kind in dict.fromkeys(player_for(key, args.low_latency) for key in play_order(args)):
        key = next(k for k in play_order(args) if player_for(k, args.low_latency) == kind)
        if kind == "whep" or not urls["playback"].get(key):
            continue  # WHEP: the browser's own RTCPeerConnection, no script player to warm
        page = await browser.new_page(
            f"{base}/page.html?player={kind}&src={urls['playback'][key]}"
            f"{page_query(kind, args.part_ms, args.hls_max_rate)}"
        )
        try:
            await page.wait_for("g2g.firstFrameAt !== null", timeout=60, interval=0.2)
        except Exception:  # noqa: BLE001 - the measured run reports what goes wrong
            pass
        finally:
            await page.close()


def play_order(args: argparse.Namespace) -> list[str]:
    """The players to measure, one after the other, in the order --players names them."""
    if not args.players:
        return list(PLAYERS)
    return [key for key in args.players.split(",") if key in PLAYERS]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarize(result: dict, settle_seconds: float) -> dict:
    """Figures of one player's run: startup, latency over the samples after ``settle_seconds`` of play."""
    samples = result.get("samples") or []
    first = result.get("firstFrameAt")
    window = [s for s in samples if first is not None and s["shown"] >= first + 1000 * settle_seconds]
    steady = [s["latency"] for s in window]
    out = {
        "startup": (first - result["openedAt"]) / 1000 if first is not None else None,
        "samples": len(steady),
        "unreadable": result.get("unreadable", 0),
        "stalls": result.get("stalls", 0),
        "stall_events": [
            {**stall, "requests": _requests_around(result, stall)} for stall in result.get("stallEvents") or []
        ],
        "errors": result.get("errors") or [],
    }
    if steady:
        out.update(p50=statistics.median(steady), p95=percentile(steady, 0.95), min=min(steady), max=max(steady))
    if len(window) > 1 and window[-1]["shown"] > window[0]["shown"]:
        # How fast latency grows while sampled (seconds per minute): a player playing slower than the
        # stream is made drifts behind, one that catches up holds 0.
        out["drift"] = 60_000 * statistics.linear_regression([s["shown"] for s in window], steady).slope
    if first is not None:
        # What the player fetched before its first frame, from the page opening: where startup went.
        out["startup_requests"] = [
            f"{r['url']} {r['status']} at {(r['start'] - result['openedAt']) / 1000:.2f} s took {r['seconds']:.2f} s"
            for r in result.get("requests") or ()
            if r["start"] <= first and not r["url"].endswith((".js", ".html"))
        ]
    if result.get("hlsStart"):
        out["hls_start"] = result["hlsStart"]
    offsets = result.get("pdtOffsets") or []
    if offsets:
        out["pdt_offset"] = statistics.median(offsets)
    return out


def _requests_around(result: dict, stall: dict) -> list[str]:
    """The player's fetches that were under way or began in the second before a stall and while it
    lasted: what it waited for."""
    began = stall["since"]
    ended = began + 1000 * (stall.get("seconds") or 0)
    out = []
    for r in result.get("requests") or ():
        finished = r["start"] + 1000 * r["seconds"]
        if finished >= began - 1000 and r["start"] <= ended:
            out.append(f"{r['url']} {r['status']} at {(r['start'] - began) / 1000:+.2f} s took {r['seconds']:.2f} s")
    return out


async def watch_edges(
    urls: dict[str, str],
    into: dict[str, list[float]],
    listings: dict[str, asyncio.Queue[float]],
    every: float = 0.05,
) -> None:
    """How late each HLS variant's segments are listed: per new segment in its first media playlist,
    when it was first seen minus when its last frame was received (PDT + EXTINF). A player's latency
    starts from that listing: two variants cut from one encode differ only by it (and their players)."""
    import urllib.parse

    from bench._hls_viewer import first_variant, get
    from onair.agent.hls import parse_media_playlist

    media: dict[str, str] = {}
    seen: dict[str, int] = {}
    while True:
        for key, master in urls.items():
            try:
                if key not in media:
                    text = (await asyncio.to_thread(get, master)).decode()
                    media[key] = urllib.parse.urljoin(master, first_variant(text))
                playlist = parse_media_playlist((await asyncio.to_thread(get, media[key])).decode())
            except Exception:  # noqa: BLE001 - not listed yet, or a restart: try again
                continue
            now = time.time()
            for segment in playlist.segments:
                if key in seen and segment.sequence > seen[key] and segment.program_date_time is not None:
                    into.setdefault(key, []).append(now - segment.program_date_time.timestamp() - segment.duration)
                    listings.setdefault(key, asyncio.Queue()).put_nowait(segment.duration)
            if playlist.segments:
                seen[key] = max(seen.get(key, -1), playlist.segments[-1].sequence)
        await asyncio.sleep(every)


def _seconds(value: Optional[float]) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "-"


def row(label: str, figures: dict) -> str:
    def s(key: str) -> str:
        value = figures.get(key)
        return f"{value:6.2f}" if isinstance(value, (int, float)) else "     -"

    return (
        f"{label:<22} {s('startup')} {s('p50')} {s('p95')} {s('min')} {s('max')}  {figures['samples']:>6} "
        f"{figures['unreadable']:>6} {figures['stalls']:>6} {s('pdt_offset')} {s('drift')}  "
        f"{'; '.join(figures['errors'])[:80]}"
    )


async def measure(args: argparse.Namespace) -> None:
    from kubernetes import client

    from tests.fixtures.browser import launch

    width, height = (int(x) for x in args.size.split("x"))
    with OnairDev(runtime=args.runtime) as dev, tempfile.TemporaryDirectory(prefix="onair-g2g-") as tmp:
        core, custom = client.CoreV1Api(dev.api), client.CustomObjectsApi(dev.api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NAMESPACE,
            "livestreams",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Livestream",
                "metadata": {"name": NAME},
                "spec": livestream_spec(
                    args.low_latency,
                    args.part_ms,
                    webrtc=measured(args, "whep"),
                    segment_seconds=args.segment_seconds,
                    zero_latency_encoding=args.zero_latency_encoding,
                ),
            },
        )
        urls = await asyncio.to_thread(
            wait_until,
            lambda: (
                (e := dev.endpoints(NAMESPACE, NAME))["ingest"].get(args.protocol)
                and e["playback"].get("hlsCmaf")
                and e
            ),
            180,
            "push and playback URLs from onair dev",
        )
        secret = core.read_namespaced_secret(f"{NAME}-credentials", NAMESPACE)
        if args.protocol == "rtmp":
            push = f"{urls['ingest']['rtmp']}/{base64.b64decode(secret.data['streamKey']).decode()}"
            fmt = "flv"
        else:
            push, fmt = base64.b64decode(secret.data["srtPublishUrl"]).decode(), "mpegts"
            push = urls["ingest"]["srt"].split("?")[0] + "?" + push.split("?", 1)[1]
        camera = Camera(push, fmt=fmt, width=width, height=height, fps=30, encoder=args.encoder).start()
        runner, base = await server.serve()
        browser = await launch(Path(tmp))
        results: dict[str, dict] = {}
        edge_delays: dict[str, list[float]] = {}
        listings: dict[str, asyncio.Queue[float]] = {}
        edge_watch: Optional[asyncio.Task] = None
        try:

            def live() -> Optional[dict]:
                st = (
                    custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "livestreams", NAME).get("status")
                    or {}
                )
                return st if st.get("live") and st.get("broadcasting") else None

            await asyncio.to_thread(wait_until, live, 120, "status.live and status.broadcasting")
            hls_urls = {key: urls["playback"][key] for key in ("hlsCmaf", "hlsMpegts") if urls["playback"].get(key)}
            edge_watch = asyncio.create_task(watch_edges(hls_urls, edge_delays, listings))
            # Players join a stream that has been on for a while, as most viewers do: one opened in its
            # first seconds starts nearer the edge than its player would otherwise choose.
            await asyncio.sleep(args.warmup)
            await warm_up(browser, base, urls, args)
            for key in play_order(args):
                player = player_for(key, args.low_latency)
                url = urls["playback"].get(key)
                if not url:
                    print(f"{key}: not in status.playback, skipped", flush=True)
                    continue
                if player == "hls" and args.join_phase >= 0:
                    await join_at_phase(listings.setdefault(key, asyncio.Queue()), args.join_phase)
                page = await browser.new_page(
                    f"{base}/page.html?player={player}&src={url}{page_query(player, args.part_ms, args.hls_max_rate)}"
                )
                try:
                    await page.wait_for("g2g.firstFrameAt !== null", timeout=60, interval=0.2)
                    await asyncio.sleep(args.settle + args.seconds)
                    results[key] = summarize(await page.evaluate("g2g"), args.settle)
                except Exception:  # noqa: BLE001 - one player failing is a figure too
                    state = await page.evaluate(
                        "({errors: g2g.errors, unreadable: g2g.unreadable, "
                        "readyState: video.readyState, time: video.currentTime})"
                    )
                    results[key] = {
                        "samples": 0,
                        "unreadable": state["unreadable"],
                        "stalls": 0,
                        "errors": [
                            f"no frame within 60 s (video readyState {state['readyState']}, "
                            f"currentTime {state['time']:.1f})",
                            *state["errors"],
                        ],
                    }
                    print(f"{key}: page console: {page.console[-5:]} exceptions: {page.exceptions[-3:]}", flush=True)
                finally:
                    await page.close()
                print(row(f"{key} ({player})", results[key]), flush=True)
            status = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "livestreams", NAME).get("status")
        finally:
            if edge_watch is not None:
                edge_watch.cancel()
            await browser.close()
            await runner.cleanup()
            err = camera.stop()
        tier = (
            f" + lowLatency (parts {args.part_ms} ms, hls.js maxLiveSyncPlaybackRate {args.hls_max_rate:g})"
            if args.low_latency
            else ""
        )
        if args.segment_seconds is not None:
            tier += f" + {args.segment_seconds} s segments"
        if args.zero_latency_encoding:
            tier += " + zeroLatencyEncoding"
        tier += f", players opened {args.warmup:.0f} s after going live"
        if args.join_phase >= 0:
            tier += f" (HLS ones {args.join_phase:g} of a segment after one was listed)"
        print(
            f"\nglass to glass: onair dev --runtime {args.runtime}, callType livestream{tier}, {args.protocol.upper()} "
            f"{width}x{height}@30 ({args.encoder} x264), {args.settle:.0f} s settle + {args.seconds:.0f} s sampled per "
            f"player; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        print(
            f"camera: {camera.frames} frames, {camera.late_frames} made late; transcoding speed "
            f"{(status or {}).get('transcodingSpeed')}; ladder {(status or {}).get('transcodedQualities')}"
        )
        if err.strip():
            print(f"encoder said: {err.strip()[-500:]}")
        print(
            f"\n{'player':<22} {'start':>6} {'p50':>6} {'p95':>6} {'min':>6} {'max':>6}  {'frames':>6} "
            f"{'unread':>6} {'stalls':>6} {'pdt-cap':>6} {'s/min':>6}  errors   (seconds; s/min: latency drift)"
        )
        for key, figures in results.items():
            print(row(f"{key} ({player_for(key, args.low_latency)})", figures))
        for key, figures in results.items():
            if start := figures.get("hls_start"):
                print(
                    f"{key}: hls.js read TARGETDURATION {start['targetDuration']}, HOLD-BACK {start['holdBack']}, "
                    f"last EXTINFs {start['durations']}; started at {_seconds(start.get('startPosition'))} "
                    f"(live edge {_seconds(start.get('edge'))}), target latency {_seconds(start.get('targetLatency'))}; "
                    f"the edge's last frame was received {_seconds(start.get('edgeAge'))} before"
                )
        for key, figures in results.items():
            if figures.get("startup_requests"):
                print(f"{key} before its first frame at {_seconds(figures.get('startup'))}:")
                for request in figures["startup_requests"]:
                    print(f"    {request}")
        for key, delays in edge_delays.items():
            print(
                f"{key}: segments listed {statistics.median(delays):.2f} s (min {min(delays):.2f}, "
                f"max {max(delays):.2f}, {len(delays)} segments) after their last frame was received"
            )
        for key, figures in results.items():
            for stall in figures.get("stall_events") or ():
                lasted = f"{stall['seconds']:.2f} s" if stall.get("seconds") is not None else "until the end"
                seek = ", while seeking" if stall.get("seeking") else ""
                print(f"stall: {key} at {stall['at']:.1f} s after the first frame, {lasted}{seek}")
                for request in stall["requests"]:
                    print(f"    {request}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("process", "node"), default="process")
    parser.add_argument("--seconds", type=float, default=30, help="sampling window per player")
    parser.add_argument("--settle", type=float, default=10, help="play this long before sampling")
    parser.add_argument("--protocol", choices=("rtmp", "srt"), default="rtmp")
    parser.add_argument("--encoder", choices=("obs", "zerolatency"), default="obs")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument(
        "--hls-max-rate",
        type=float,
        default=LL_HLS_MAX_PLAYBACK_RATE,
        help="hls.js maxLiveSyncPlaybackRate with --low-latency (default: the origin's player page's; "
        "1: hls.js's default, no catch-up)",
    )
    parser.add_argument(
        "--players", default="", help="comma-separated status.playback keys, measured in this order (default: all)"
    )
    parser.add_argument(
        "--low-latency",
        action="store_true",
        help="the low-latency tier: broadcasting.lowLatency on the Livestream, hls.js lowLatencyMode, "
        "dash.js low-latency settings",
    )
    parser.add_argument(
        "--join-phase",
        type=float,
        default=0.5,
        help="open each standard HLS player this fraction of a segment after its playlist listed a new one "
        "(0.5: the average viewer's; negative: whenever its turn comes)",
    )
    parser.add_argument(
        "--warmup", type=float, default=15, help="seconds between the stream going live and the first player"
    )
    parser.add_argument(
        "--segment-seconds", type=int, help="broadcasting.segmentDurationSeconds on the Livestream (default: CallType)"
    )
    parser.add_argument(
        "--zero-latency-encoding",
        action="store_true",
        help="broadcasting.zeroLatencyEncoding on the Livestream: the standard tier encoded without B-frames or lookahead",
    )
    parser.add_argument(
        "--part-ms", type=int, default=200, help="LL-HLS part / LL-DASH chunk target with --low-latency"
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
