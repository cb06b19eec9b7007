"""Speed ratios."""

from __future__ import annotations

from edgeq.scoring.speed import speedup

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_speedup_is_a_ratio_of_p50s_and_none_without_them():
    assert speedup(3.0, 1.5) == 2.0 and speedup(None, 1.0) is None and speedup(1.0, 0.0) is None
