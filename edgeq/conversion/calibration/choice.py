"""--calibration other than minmax: activation ranges chosen from histograms, and `auto`, which
tries the methods on the tuning split of --eval-data and judges each on every output; without a
budget, a method other than minmax is kept only when it beats minmax on the held-back split beyond
that split's interval (with a budget, the search confirms the choice there).

When no single method serves every output (entropy ranges that sharpen one head and clip the
tail another head outputs), `auto` also tries a mix by output path: each tensor that feeds only
outputs one method serves best takes that method's range; tensors shared between outputs keep
the method that is best for the worst output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.conversion.calibration.calibrated import Calibrated
from edgeq.conversion.calibration.methods import AUTO_ORDER
from edgeq.conversion.quantize import quantize
from edgeq.conversion.search.budget import Candidate, evaluator_for, leximin, output_quality
from edgeq.host.isolation import step
from edgeq.records.budget import Budget
from edgeq.records.manifest import KeepFloat, MethodTry, RangeChange, SearchStep
from edgeq.records.recipe import Method, Recipe
from edgeq.scoring.held_back import Gain, gain
from edgeq.tflite.graph import tensor_outputs
from edgeq.tflite.model import parse_tflite


@dataclass(frozen=True)
class ChosenRanges:
    """The calibrated model with the ranges a method chose, and how they were chosen."""

    model: bytes | None  # None: TensorFlow's min/max, as calibrated
    method: Method | None = None  # the method carried out (auto's choice); None: the recipe's
    changes: tuple[RangeChange, ...] = ()
    tries: tuple[MethodTry, ...] = ()  # auto: each method tried
    steps: tuple[SearchStep, ...] = ()  # auto with a budget: the tries as search steps
    histograms: dict[int, np.ndarray] | None = None


MINMAX_RANGES = ChosenRanges(None)
BY_OUTPUT_PATH = "by output path"


def choose_ranges(calibrated: Calibrated, options, data: Path, keep: KeepFloat, jobs: int = 1) -> ChosenRanges:
    """The ranges --calibration chooses from histograms of the calibration samples (built in
    `jobs` processes unless the calibration has them); `auto` tries the methods in turn on --eval-data."""
    recipe = options.recipe
    chooser = RangeChooser(calibrated.model, list(calibrated.specs), recipe, data, jobs, calibrated.histograms)
    if not recipe.calibration.is_auto:
        model, changes = chooser.with_method(recipe.calibration)
        return ChosenRanges(model, None, changes, histograms=chooser.counts)
    budget = options.budget or Budget(min_sqnr=float("inf"))  # no budget: the best worst-output SQNR wins
    evaluator = evaluator_for(calibrated.model, calibrated.specs, options, budget)
    tried: list[tuple[SearchStep, bytes, tuple[RangeChange, ...], str]] = []

    def attempt(group: list[tuple[tuple[bytes, tuple[RangeChange, ...]], str]]) -> bool:
        """The methods of `group` in turn, up to the first that meets the budget (all of them at once on a cluster)."""
        candidates = [Candidate(partial(quantize, model, recipe, keep), method=name) for (model, _), name in group]
        for ((model, changes), name), (_, judged) in zip(group, evaluator.evaluate_all(candidates, "calibration method")):
            tried.append((judged, model, changes, name))
            if judged.meets and options.budget is not None:
                return True
        return False

    methods: list[Method] = []
    at_once = len(AUTO_ORDER) if options.cluster else 1  # here, a method that meets spares the next ones
    for i in range(0, len(AUTO_ORDER), at_once):
        group = list(AUTO_ORDER[i : i + at_once])
        methods += group
        if attempt([(chooser.with_method(m), str(m)) for m in group]):
            methods = methods[: len(tried)]
            break
    if not any(t[0].meets for t in tried):
        mix = _by_output_path(chooser, methods, [t[0] for t in tried])
        if mix is not None:
            attempt([mix])
    best = next((t for t in tried if t[0].meets), None) or max(tried, key=lambda t: leximin(t[0]))
    sure, rival, judge = None, best, evaluator.held_back or evaluator
    if options.budget is None and not options.feedback and best is not tried[0]:  # auto never loses to plain minmax
        sure = _gain_over_minmax(calibrated.model, judge.samples, [tried[0][1], best[1]], recipe, keep, options.output_roles)
        best = best if sure.sure else tried[0]
    where = "held-back" if evaluator.held_back else "tuning (too few --eval-data samples to hold any back)"
    _, model, changes, name = best
    tries = tuple(
        MethodTry(
            t[3],
            t[0].worst_sqnr_db,
            {o.name: o.sqnr_db for o in t[0].outputs},
            t[0].meets if options.budget else None,
            t is best,
            f"{sure.describe()} over minmax, on the {where} samples" if sure is not None and t is rival else None,
        )
        for t in tried
    )
    method = Method.parse(name) if not name.startswith(BY_OUTPUT_PATH) else None
    return ChosenRanges(
        model, method, changes, tries, tuple(t[0] for t in tried) if options.budget is not None else (), chooser.counts
    )


def _gain_over_minmax(calibrated: bytes, samples, models: list[bytes], recipe, keep: KeepFloat, roles) -> Gain:
    """The best method's worst-output SQNR gain over minmax on `samples` (held back), with its
    interval (and the deciding outputs' agreement gain: a sure loss there is never sure)."""
    from edgeq.conversion.search.latency import powers_scorer

    score = powers_scorer(calibrated, samples, roles)
    plain, best = (score(quantize(m, recipe, keep)) for m in models)
    return gain(plain, best)


def _by_output_path(chooser: RangeChooser, methods: list[Method], steps: list[SearchStep]):
    """The mix of the module docstring from `steps`, the figures of `methods`, and its name; None
    when one method is best for every output."""
    names = [o.name for o in steps[0].outputs]
    best_for = {name: max(range(len(steps)), key=lambda i: output_quality(steps[i].outputs[k])) for k, name in enumerate(names)}
    if len(set(best_for.values())) < 2:
        return None
    shared = max(range(len(steps)), key=lambda i: leximin(steps[i]))
    model = chooser.parsed
    positions = {model.tensors[t].name: p for p, t in enumerate(model.outputs)}
    tensor_of = {o.name: o.tensor for o in steps[0].outputs}
    method_at = {positions[tensor_of[n]]: i for n, i in best_for.items() if tensor_of[n] in positions}
    ranges = [chooser.ranges(m) for m in methods]
    chosen = dict(ranges[shared])
    for tensor, fed in tensor_outputs(model).items():
        picks = {method_at.get(p, shared) for p in fed}
        if tensor in chosen and len(picks) == 1:
            chosen[tensor] = ranges[picks.pop()][tensor]
    label = ", ".join(f"{name}: {methods[i]}" for name, i in best_for.items()) + f"; shared tensors: {methods[shared]}"
    return chooser.write(chosen), f"{BY_OUTPUT_PATH} ({label})"


class RangeChooser:
    """Activation ranges chosen from histograms of the calibration samples (built once, in `jobs`
    processes, or taken from the calibration cache), written into the calibrated model by method."""

    def __init__(
        self, calibrated: bytes, specs: list, recipe: Recipe, data: Path, jobs: int = 1, counts: dict[int, Any] | None = None
    ) -> None:
        from edgeq.conversion.calibration.methods import histograms_parallel
        from edgeq.conversion.calibration.parallel import read_ranges
        from edgeq.tflite.signatures import calibrator_order

        self.calibrated = calibrated
        self.parsed = parse_tflite(calibrated)
        self.minmax = read_ranges(calibrated)
        self.counts = counts
        self.averaged: dict[int, tuple[float, float]] | None = None
        order = calibrator_order(self.parsed, [s.name for s in specs])
        self.samples = lambda: [[sample[k] for k in order] for sample in recipe.open(data, specs)]
        if counts is None or set(counts) != set(self.minmax):
            step("building activation histograms")
            self.counts = histograms_parallel(calibrated, self.samples(), self.minmax, jobs)

    def ranges(self, method) -> dict[int, tuple[float, float]]:
        from edgeq.conversion.calibration.methods import chosen_ranges, moving_averages

        if method.name == "moving-average" and self.averaged is None:
            step("moving averages of per-sample ranges")
            self.averaged = moving_averages(self.calibrated, self.samples(), self.minmax)
        return chosen_ranges(self.parsed, method, self.counts, self.minmax, self.averaged)

    def with_method(self, method: Method) -> tuple[bytes, tuple[RangeChange, ...]]:
        return self.write(self.ranges(method))

    def write(self, chosen: dict[int, tuple[float, float]]) -> tuple[bytes, tuple[RangeChange, ...]]:
        """The calibrated model with the `chosen` ranges, and those that differ from min/max."""
        from edgeq.conversion.calibration.methods import clipped_fraction
        from edgeq.conversion.calibration.parallel import write_ranges

        minmax, counts, tensors = self.minmax, self.counts, self.parsed.tensors
        changed = [i for i in chosen if chosen[i] != minmax[i]]
        changes = tuple(
            RangeChange(
                tensors[i].name,
                (minmax[i][0], minmax[i][1]),
                (chosen[i][0], chosen[i][1]),
                round((chosen[i][1] - chosen[i][0]) / (minmax[i][1] - minmax[i][0]), 4),
                clipped_fraction(counts[i], *minmax[i], chosen[i]),
            )
            for i in changed
        )
        return write_ranges(self.calibrated, chosen), changes
