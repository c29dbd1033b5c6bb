"""The in-picture clock of the glass-to-glass benchmark: what is drawn reads back, at any
rendition size, and a damaged band reads as nothing rather than as a wrong time."""

from __future__ import annotations

import pytest

from bench.g2g import clock


def frame(value: int, width: int, height: int) -> bytearray:
    pixels = bytearray(clock.draw_band(value, width, height))
    pixels += bytes(width * (height - clock.band_height(height)))
    return pixels


def reader(pixels: bytes, width: int):
    return lambda x, y: pixels[y * width + x]


@pytest.mark.parametrize("width,height", [(1280, 720), (854, 480), (640, 360), (256, 144)])
def test_round_trip_at_every_rendition_size(width, height):
    value = 1_796_000_000_123
    pixels = frame(value, width, height)
    assert clock.read_band(reader(pixels, width), width, height) == value


def test_a_scaled_frame_reads_back():
    # 1280x720 drawn, read as the 640x360 rung would show it (every other pixel and row).
    big = frame(1_796_000_000_777, 1280, 720)
    small = bytes(big[(2 * y) * 1280 + 2 * x] for y in range(360) for x in range(640))
    assert clock.read_band(reader(small, 640), 640, 360) == 1_796_000_000_777


def test_encoder_noise_is_tolerated_but_damage_is_not_misread():
    width, height = 640, 360
    pixels = frame(1_796_000_000_001, width, height)
    noisy = bytes(min(255, max(0, p + (17 if i % 3 else -17))) for i, p in enumerate(pixels))
    assert clock.read_band(reader(noisy, width), width, height) == 1_796_000_000_001
    # One row damaged: the rows disagree, nothing is read.
    damaged = bytearray(pixels)
    top, bottom = clock.row_band(height, 1)
    left, right = clock.block_edges(width)[-1]
    for y in range(top, bottom):
        for x in range(left, right):
            damaged[y * width + x] = 255 - damaged[y * width + x]
    assert clock.read_band(reader(damaged, width), width, height) is None
    # No band at all (a black frame): the sync pattern is missing.
    assert clock.read_band(lambda x, y: 16, width, height) is None


def test_values_out_of_range_are_refused():
    with pytest.raises(ValueError):
        clock.bits_of(1 << clock.VALUE_BITS)
    assert clock.value_of(clock.bits_of(12345)) == 12345
