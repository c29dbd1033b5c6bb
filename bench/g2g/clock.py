"""The clock inside the picture: each frame carries its capture time as two identical rows of
black/white blocks at the top, so a player's decoded video says when it was captured.

Layout (fractions of the frame, so any rendition of the ladder decodes the same way): two rows,
each ``BITS`` blocks wide and ``ROW_HEIGHT`` of the frame tall; the first two blocks of a row are
the sync pattern (white, black), the other 42 the capture time in Unix milliseconds, most
significant bit first. A row is read by the mean luma of the middle of each block; a frame
counts only when the sync blocks read right and both rows agree, so a block smeared by the
encoder or a frame caught mid-scaling is dropped rather than misread. bench/g2g/page.js decodes
the same layout from a canvas.
"""

from __future__ import annotations

from typing import Callable, Optional

BITS = 44
SYNC = (1, 0)
VALUE_BITS = BITS - len(SYNC)
ROWS = 2
ROW_HEIGHT = 1 / 18  # of the frame height
WHITE, BLACK = 235, 16  # video-range luma, what an encoder keeps exact
THRESHOLD = 128


def bits_of(value_ms: int) -> list[int]:
    if not 0 <= value_ms < 1 << VALUE_BITS:
        raise ValueError(f"{value_ms} does not fit {VALUE_BITS} bits")
    return list(SYNC) + [(value_ms >> (VALUE_BITS - 1 - i)) & 1 for i in range(VALUE_BITS)]


def value_of(bits: list[int]) -> Optional[int]:
    if len(bits) != BITS or tuple(bits[: len(SYNC)]) != SYNC:
        return None
    value = 0
    for bit in bits[len(SYNC) :]:
        value = (value << 1) | bit
    return value


def block_edges(width: int) -> list[tuple[int, int]]:
    return [(width * i // BITS, width * (i + 1) // BITS) for i in range(BITS)]


def row_band(height: int, row: int) -> tuple[int, int]:
    top = round(height * ROW_HEIGHT * row)
    return top, round(height * ROW_HEIGHT * (row + 1))


def band_height(height: int) -> int:
    return row_band(height, ROWS - 1)[1]


def draw_band(value_ms: int, width: int, height: int) -> bytes:
    """The top ``band_height`` rows of a gray (one byte per pixel) frame carrying ``value_ms``."""
    bits = bits_of(value_ms)
    line = b"".join(
        bytes([WHITE if bit else BLACK]) * (right - left) for bit, (left, right) in zip(bits, block_edges(width))
    )
    return line * band_height(height)


def read_band(pixel: Callable[[int, int], int], width: int, height: int) -> Optional[int]:
    """The capture time a decoded frame carries, None when unreadable. ``pixel(x, y)``: luma."""
    values = []
    for row in range(ROWS):
        top, bottom = row_band(height, row)
        y0, y1 = top + (bottom - top) // 4, bottom - (bottom - top) // 4
        bits = []
        for left, right in block_edges(width):
            x0, x1 = left + (right - left) // 4, right - (right - left) // 4
            samples = [pixel(x, y) for y in range(y0, max(y1, y0 + 1)) for x in range(x0, max(x1, x0 + 1))]
            bits.append(1 if sum(samples) / len(samples) > THRESHOLD else 0)
        values.append(value_of(bits))
    return values[0] if values[0] is not None and len(set(values)) == 1 else None
