"""The latency check's stopping rule."""

from __future__ import annotations

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_the_latency_check_settles_only_on_a_clear_verdict():
    from edgeq.conversion.search.latency import _settled

    assert _settled([1.0, 1.1, 0.9, 1.0], [2.0, 2.1, 1.9, 2.0])  # p50s 1 ms apart, spreads of 0.05 ms
    assert not _settled([1.0, 1.5, 0.6, 1.2], [1.3, 1.9, 0.9, 1.4])  # apart by less than three spreads: keep timing
