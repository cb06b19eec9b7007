"""Timings as the LiteRT runner compares them."""

from __future__ import annotations

from edgeq.run.litert import MEASURABLE_MS, within_noise
from edgeq.run.protocol import InvokeTimes


def _times(p50_ms: float, spread_ms: float) -> InvokeTimes:
    return InvokeTimes.of([p50_ms - spread_ms, p50_ms, p50_ms, p50_ms + spread_ms], 0, 1)


def test_microseconds_apart_is_no_measurable_difference():
    """A model of a few microseconds: INT8 at 0.5x float is 3 us, which no timing here resolves."""
    assert within_noise(_times(0.006, 0.0001), _times(0.003, 0.0001))
    assert within_noise(_times(0.0, 0.0), _times(MEASURABLE_MS, 0.0))


def test_a_difference_beyond_the_spread_and_the_floor_is_measured():
    assert not within_noise(_times(2.0, 0.05), _times(1.0, 0.05))
    assert within_noise(_times(2.0, 3.0), _times(1.0, 3.0))  # an interquartile range of 1.5 ms swallows it
