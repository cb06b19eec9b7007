"""The flatbuffer reader's records."""

from __future__ import annotations

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_quantization_matches_within_relative_tolerance_and_exact_zero_points():
    from edgeq.tflite.model import Quantization

    base = Quantization((0.5, 0.25), (0, 0), 0)
    assert base.matches(Quantization((0.5 * (1 + 4e-6), 0.25), (0, 0), 0))
    assert not base.matches(Quantization((0.5 * (1 + 2e-5), 0.25), (0, 0), 0))
    assert not base.matches(Quantization((0.5, 0.25), (0, 1), 0))
    assert not base.matches(None)
