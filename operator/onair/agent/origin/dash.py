"""What the origin changes in the MPDs it serves (the rest is served as uploaded).

DVR for DASH, as implemented: the MPD is the transcoder's, but the origin
* keeps DASH segment files for the whole DVR window (it ignores the transcoder's DELETEs and
  deletes them itself by age), and advertises that window as ``timeShiftBufferDepth``: a
  player addressing segments by ``$Number$``/``$Time$`` from ``availabilityStartTime`` (ffmpeg
  ``-use_timeline 0``) can rewind the whole window; with a ``SegmentTimeline`` the rewind depth
  is what the transcoder lists (its ``-window_size``), since the timeline is not merged;
* points ``UTCTiming`` at its own ``/time`` so players sync their clock to the origin;
* carries a ``?token=`` into segment URLs, as for HLS;
* says ``bitstreamSwitching="false"``: ffmpeg's dash muxer declares every AdaptationSet
  bitstream-switchable, but each rung has its own init segment (its own H.264 profile, level and
  parameter sets), so a player that believes it can switch rungs without the new init appends one
  rung's media after another's init and stops (stock dash.js: CHUNK_DEMUXER_ERROR_APPEND_FAILED
  on its first switch up).

Text rewriting rather than an XML round trip: it keeps ffmpeg's namespaces and formatting, and
only touches the MPD root's attributes, UTCTiming elements and template URL attributes.
"""
from __future__ import annotations

import re
from typing import Optional

UTC_TIMING_SCHEME = "urn:mpeg:dash:utc:http-iso:2014"
_MPD_OPEN = re.compile(r"<MPD\b[^>]*>", re.S)
_UTC_TIMING = re.compile(r"\s*<UTCTiming\b[^>]*?(/>|>.*?</UTCTiming>)", re.S)
_TSBD = re.compile(r'\stimeShiftBufferDepth="[^"]*"')
_BITSTREAM_SWITCHING = re.compile(r'\bbitstreamSwitching="true"')
_URL_ATTRS = re.compile(r'\b(media|initialization|sourceURL)="([^"]*)"')
_DURATION = re.compile(r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


class MpdError(ValueError):
    pass


def parse_duration(text: str) -> Optional[float]:
    """ISO 8601 duration (the subset MPDs use) in seconds; None if unparsable."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: float) -> str:
    return f"PT{seconds:.1f}S"


def check_mpd(text: str) -> None:
    if not _MPD_OPEN.search(text) or "</MPD>" not in text:
        raise MpdError("not a DASH MPD (no <MPD> element)")


def is_dynamic(text: str) -> bool:
    root = _MPD_OPEN.search(text)
    return bool(root and re.search(r'\stype="dynamic"', root.group(0)))


def time_shift_buffer_depth(text: str) -> Optional[float]:
    root = _MPD_OPEN.search(text)
    match = root and re.search(r'\stimeShiftBufferDepth="([^"]*)"', root.group(0))
    return parse_duration(match.group(1)) if match else None


def init_patterns(text: str) -> list[re.Pattern]:
    """File names the MPD's ``initialization`` templates can produce.

    Init segments are uploaded once per transcoder run and never again, so age-based DVR
    retention must never take them while an MPD still points at them.
    """
    patterns = []
    for template in set(re.findall(r'\binitialization="([^"]*)"', text)):
        name = template.split("/")[-1]
        parts = re.split(r"(\$[A-Za-z]+(?:%0\d+d)?\$)", name)
        regex = "".join(r"[^/]+" if part.startswith("$") and part.endswith("$") and len(part) > 1 else re.escape(part)
                        for part in parts)
        patterns.append(re.compile(f"^{regex}$"))
    return patterns


def rewrite_mpd(text: str, utc_timing_url: str, dvr_seconds: Optional[float] = None, query: str = "") -> str:
    check_mpd(text)
    text = _BITSTREAM_SWITCHING.sub('bitstreamSwitching="false"', text)
    text = _UTC_TIMING.sub("", text)
    end = text.rindex("</MPD>")
    timing = f'\t<UTCTiming schemeIdUri="{UTC_TIMING_SCHEME}" value="{_xml_attr(utc_timing_url)}"/>\n'
    text = text[:end] + timing + text[end:]
    if dvr_seconds is not None and is_dynamic(text):
        root = _MPD_OPEN.search(text)
        assert root is not None
        tag = _TSBD.sub("", root.group(0))
        tag = tag[:-1].rstrip() + f' timeShiftBufferDepth="{format_duration(dvr_seconds)}">'
        text = text[:root.start()] + tag + text[root.end():]
    if query:
        q = _xml_attr(query)
        text = _URL_ATTRS.sub(lambda m: f'{m.group(1)}="{m.group(2)}{"&amp;" if "?" in m.group(2) else "?"}{q}"', text)
    return text


def _xml_attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
