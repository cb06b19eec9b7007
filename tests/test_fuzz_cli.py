"""A short slice of the fuzz harness (`make fuzz` runs the full one): mutated models, manifests,
results files, profiles and sample files through the real command line; every exit is 0, 1 or 2,
with no traceback, no signal and no control or bidi character in the output."""

from __future__ import annotations

from fuzz_harness import fuzz


def test_a_slice_of_the_fuzz_harness_finds_nothing(record_property):
    figures = fuzz(models=90, results=60, profiles=40, data=40, manifests=30, seed=7)
    record_property("fuzz", {k: v for k, v in figures.items() if k != "failures"})
    assert figures["total"] == 260
    assert figures["failures"] == [], figures["failures"][:5]
