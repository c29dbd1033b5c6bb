"""What the origin changes in the MPDs it serves (the rest is served as uploaded).

DVR for DASH, as implemented: the MPD is the transcoder's, but the origin
* keeps DASH segment files for the whole DVR window (it ignores the transcoder's DELETEs and
  deletes them itself by age), and advertises that window as ``timeShiftBufferDepth``: a
  player addressing segments by ``$Number$``/``$Time$`` from ``availabilityStartTime`` (ffmpeg
  ``-use_timeline 0``) can rewind the whole window; with a ``SegmentTimeline`` the rewind depth
  is what the transcoder lists (its ``-window_size``), since the timeline is not merged;
* points ``UTCTiming`` at its own ``/time`` so players sync their clock to the origin;
* carries a ``?token=`` into segment URLs, as for HLS;
* in low-latency mode (``LowLatency``) on a live MPD: ``availabilityTimeOffset`` (a segment minus
  one chunk: a segment may be asked for once its first chunk exists, and the origin answers it
  chunk by chunk, see ``chunked``) with ``availabilityTimeComplete="false"`` on every
  SegmentTemplate, and a ``ServiceDescription`` with the latency target and the playback rates a
  player may use to hold it. Players without LL-DASH support ignore them and play as before;
* says ``bitstreamSwitching="false"``: ffmpeg's dash muxer declares every AdaptationSet
  bitstream-switchable, but each rung has its own init segment (its own H.264 profile, level and
  parameter sets), so a player that believes it can switch rungs without the new init appends one
  rung's media after another's init and stops (stock dash.js: CHUNK_DEMUXER_ERROR_APPEND_FAILED
  on its first switch up).

Edited as XML (xml.etree): the MPD is parsed, the few attributes and elements above are
changed, and the tree is written back with the namespace prefixes the transcoder used.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator, Optional

UTC_TIMING_SCHEME = "urn:mpeg:dash:utc:http-iso:2014"
URL_ATTRIBUTES = ("media", "initialization", "sourceURL")
_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


# Playback rates a player may use to catch up with (or fall back to) the latency target: a few
# percent is not heard or seen (DASH-IF low-latency guidelines suggest about this).
LL_MIN_PLAYBACK_RATE = 0.96
LL_MAX_PLAYBACK_RATE = 1.04
# The latency target, like LL-HLS's PART-HOLD-BACK, is three chunks behind the live edge, plus this
# for a chunk's way from the packager to the player (upload, download). The edge is already as late
# as ffmpeg's dash muxer: availabilityStartTime is its clock when the first frame reached it, so
# everything before (camera, ingest, encoding) is added to it, and every tenth of a second here
# shows in glass-to-glass latency (bench/glass_to_glass.py measured 2.14 s at 0.5 s).
LL_TARGET_CHUNKS = 3
LL_TRANSIT_SECONDS = 0.1
# Standard (not low-latency) live DASH: how many segment durations behind the MPD's live edge a
# player should play (``suggestedPresentationDelay``). A segment is whole at the origin only a
# while after its nominal end (encoding, packaging, upload): stock dash.js one segment behind the
# edge (ffmpeg's dash muxer says one) ran dry at every segment boundary (bench/glass_to_glass.py).
PRESENTATION_DELAY_SEGMENTS = 2
# dash.js fixes its delay once, at its first MPD, and never above the time the stream has existed
# (its DVR window): a viewer who opened a stream a second old played at the edge and stalled. So
# the first MPD of a young stream is held until the stream is old enough (``young_stream_wait``),
# at most this long.
MAX_YOUNG_STREAM_WAIT_SECONDS = 10.0


class MpdError(ValueError):
    pass


@dataclass(frozen=True)
class LowLatency:
    """What a low-latency MPD announces: chunk duration and the latency players should hold."""

    chunk_seconds: float
    target_seconds: float
    min_seconds: float
    max_seconds: float

    @classmethod
    def for_chunks(cls, chunk_seconds: float) -> "LowLatency":
        target = LL_TARGET_CHUNKS * chunk_seconds + LL_TRANSIT_SECONDS
        # Below two chunks there is nothing left to play; far beyond, a player should jump back.
        return cls(chunk_seconds, target, min_seconds=2 * chunk_seconds, max_seconds=2 * target + 1.0)


def parse_duration(text: str) -> Optional[float]:
    """ISO 8601 duration (the subset MPDs use) in seconds; None if unparsable."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def young_stream_wait(text: str, now: float) -> float:
    """How long to hold a request for this MPD so a player reading it can start
    ``suggestedPresentationDelay`` behind the edge: 0 for a stream old enough or a static MPD."""
    root = _parse(text)
    start, delay = root.get("availabilityStartTime"), root.get("suggestedPresentationDelay")
    if root.get("type") != "dynamic" or start is None or delay is None:
        return 0.0
    try:
        started = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    segments = [_segment_seconds(t, root) for t in root.iter() if _local(t.tag) == "SegmentTemplate"]
    old_enough = (parse_duration(delay) or 0.0) + max((s for s in segments if s), default=0.0)
    return min(MAX_YOUNG_STREAM_WAIT_SECONDS, max(0.0, started + old_enough - now))


def format_duration(seconds: float) -> str:
    return f"PT{seconds:.1f}S"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse(text: str) -> ET.Element:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise MpdError(f"not a DASH MPD (not well-formed XML: {exc})") from None
    if _local(root.tag) != "MPD":
        raise MpdError(f"not a DASH MPD (the root element is <{_local(root.tag)}>, not <MPD>)")
    return root


def _keep_prefixes(text: str) -> None:
    # ElementTree writes ns0:, ns1: for namespaces it was not told about; tell it the document's.
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(text), events=("start-ns",)):
        if not re.match(r"ns\d+$", prefix):
            ET.register_namespace(prefix, uri)


def _templates(root: ET.Element) -> Iterator[ET.Element]:
    return (el for el in root.iter() if any(a in el.attrib for a in URL_ATTRIBUTES))


def check_mpd(text: str) -> None:
    _parse(text)


def time_shift_buffer_depth(text: str) -> Optional[float]:
    value = _parse(text).get("timeShiftBufferDepth")
    return parse_duration(value) if value is not None else None


def init_patterns(text: str) -> list[re.Pattern]:
    """File names the MPD's ``initialization`` templates can produce.

    Init segments are uploaded once per transcoder run and never again, so age-based DVR
    retention must never take them while an MPD still points at them.
    """
    templates = {el.get("initialization") for el in _parse(text).iter()} - {None}
    patterns = []
    for template in sorted(t for t in templates if t is not None):
        name = template.split("/")[-1]
        parts = re.split(r"(\$[A-Za-z]+(?:%0\d+d)?\$)", name)
        regex = "".join(
            r"[^/]+" if part.startswith("$") and part.endswith("$") and len(part) > 1 else re.escape(part)
            for part in parts
        )
        patterns.append(re.compile(f"^{regex}$"))
    return patterns


def _segment_seconds(template: ET.Element, root: ET.Element) -> Optional[float]:
    timescale = float(template.get("timescale") or 1)
    if template.get("duration"):
        return float(template.get("duration") or 0) / timescale
    durations = [float(s.get("d") or 0) for s in template.iter() if _local(s.tag) == "S"]
    if durations:
        return max(durations) / timescale
    longest = root.get("maxSegmentDuration")
    return parse_duration(longest) if longest else None


def _low_latency(root: ET.Element, namespace: str, ll: LowLatency) -> None:
    segments = []
    for template in [el for el in root.iter() if _local(el.tag) == "SegmentTemplate"]:
        segment = _segment_seconds(template, root)
        if segment is None:
            continue
        segments.append(segment)
        template.set("availabilityTimeOffset", f"{max(0.0, segment - ll.chunk_seconds):.3f}")
        template.set("availabilityTimeComplete", "false")
    # ffmpeg says 500 s for $Number$ addressing (nothing changes in steady state), but a transcoder
    # restart brings new segment names and a new availabilityStartTime: players must see it soon.
    update = parse_duration(root.get("minimumUpdatePeriod") or "")
    if segments and (update is None or update > max(segments)):
        root.set("minimumUpdatePeriod", format_duration(max(segments)))
    for old in [el for el in root if _local(el.tag) == "ServiceDescription"]:
        root.remove(old)
    service = ET.Element(f"{namespace}ServiceDescription", {"id": "0"})
    ET.SubElement(
        service,
        f"{namespace}Latency",
        {
            "target": str(round(ll.target_seconds * 1000)),
            "min": str(round(ll.min_seconds * 1000)),
            "max": str(round(ll.max_seconds * 1000)),
        },
    )
    ET.SubElement(
        service, f"{namespace}PlaybackRate", {"min": f"{LL_MIN_PLAYBACK_RATE:g}", "max": f"{LL_MAX_PLAYBACK_RATE:g}"}
    )
    # Schema order: after ProgramInformation, BaseURL and Location, before the Periods.
    children = list(root)
    first_period = next((i for i, el in enumerate(children) if _local(el.tag) == "Period"), len(children))
    root.insert(first_period, service)


def rewrite_mpd(
    text: str,
    utc_timing_url: str,
    dvr_seconds: Optional[float] = None,
    query: str = "",
    low_latency: Optional[LowLatency] = None,
) -> str:
    root = _parse(text)
    _keep_prefixes(text)
    namespace = root.tag[: -len("MPD")]  # "{urn:mpeg:dash:schema:mpd:2011}" or ""
    for el in root.iter():
        if el.get("bitstreamSwitching") == "true":
            el.set("bitstreamSwitching", "false")
    for timing in [el for el in root if _local(el.tag) == "UTCTiming"]:
        root.remove(timing)
    ET.SubElement(root, f"{namespace}UTCTiming", {"schemeIdUri": UTC_TIMING_SCHEME, "value": utc_timing_url})
    if dvr_seconds is not None and root.get("type") == "dynamic":
        root.set("timeShiftBufferDepth", format_duration(dvr_seconds))
    if low_latency is not None and root.get("type") == "dynamic":
        _low_latency(root, namespace, low_latency)
    elif root.get("type") == "dynamic":
        segments = [_segment_seconds(t, root) for t in root.iter() if _local(t.tag) == "SegmentTemplate"]
        longest = max((s for s in segments if s), default=None)
        if longest:
            root.set("suggestedPresentationDelay", format_duration(PRESENTATION_DELAY_SEGMENTS * longest))
    if query:
        for el in _templates(root):
            for attr in URL_ATTRIBUTES:
                url = el.get(attr)
                if url is not None:
                    el.set(attr, f"{url}{'&' if '?' in url else '?'}{query}")
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
