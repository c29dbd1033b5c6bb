"""Whether a part file holds any media, read from its top-level MP4 boxes.

A run that ffmpeg never got to write media into (stopped while probing, source gone at once)
still leaves the file the segment muxer opened: empty, or only ``ftyp``+``moov`` (our fragmented
MP4 keeps every sample in ``moof``/``mdat`` boxes after an empty ``moov``). Such a file is not a
recording and must not pile up on the volume or become a session.
"""

from __future__ import annotations

from pathlib import Path

from onair.agent.mp4box import file_boxes

MEDIA_BOXES = frozenset({b"moof", b"mdat"})
# Header boxes come first and are small; a file whose first boxes hold no media within this many
# bytes is not worth reading further.
SCAN_LIMIT = 16 * 1024 * 1024


def holds_media(path: Path) -> bool:
    """True when ``path`` contains a moof or mdat box; unreadable or truncated files hold none."""
    try:
        with open(path, "rb") as f:
            for box in file_boxes(f, path.stat().st_size):
                if box.offset >= SCAN_LIMIT:
                    return False
                if box.kind in MEDIA_BOXES:
                    return True
    except OSError:
        return False
    return False
