"""--calibration other than minmax: activation ranges chosen from histograms, and `auto`, which
tries the methods on --eval-data and judges each on every output.

When no single method serves every output (entropy ranges that sharpen one head and clip the
tail another head outputs), `auto` also tries a mix by output path: each tensor that feeds only
outputs one method serves best takes that method's range; tensors shared between outputs keep
the method that is best for the worst output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from edgeq.conversion.calibration.calibrated import Calibrated
from edgeq.conversion.quantize import RangeChooser, quantize
from edgeq.conversion.calibration.methods import AUTO_ORDER
from edgeq.conversion.search.budget import Candidate, Evaluator, leximin, output_quality
from edgeq.records.budget import Budget
from edgeq.records.manifest import KeepFloat, MethodTry, RangeChange, SearchStep
from edgeq.records.recipe import Method
from edgeq.tflite.graph import tensor_outputs


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
    samples, eval_source = options.eval_samples(list(calibrated.specs))
    evaluator = Evaluator(calibrated.model, samples, [s.name for s in calibrated.specs], eval_source.labels, budget,
                          options.output_roles, len(eval_source.class_names or []) or None, options.feedback,
                          getattr(eval_source, "starts", set()), options.cluster)
    tried: list[tuple[SearchStep, bytes, tuple[RangeChange, ...], str]] = []

    def attempt(group: list[tuple[tuple[bytes, tuple[RangeChange, ...]], str]]) -> bool:
        """The methods of `group` in turn, up to the first that meets the budget (all of them at once on a cluster)."""
        candidates = [Candidate(partial(quantize, model, recipe, keep), method=name) for (model, _), name in group]
        for ((model, changes), name), (_, step) in zip(group, evaluator.evaluate_all(candidates, "calibration method")):
            tried.append((step, model, changes, name))
            if step.meets and options.budget is not None:
                return True
        return False

    methods: list[Method] = []
    at_once = len(AUTO_ORDER) if options.cluster else 1  # here, a method that meets spares the next ones
    for i in range(0, len(AUTO_ORDER), at_once):
        group = list(AUTO_ORDER[i:i + at_once])
        methods += group
        if attempt([(chooser.with_method(m), str(m)) for m in group]):
            methods = methods[:len(tried)]
            break
    if not any(t[0].meets for t in tried):
        mix = _by_output_path(chooser, methods, [t[0] for t in tried])
        if mix is not None:
            attempt([mix])
    best = next((t for t in tried if t[0].meets), None) or max(tried, key=lambda t: leximin(t[0]))
    _, model, changes, name = best
    tries = tuple(MethodTry(t[3], t[0].worst_sqnr_db, {o.name: o.sqnr_db for o in t[0].outputs},
                            t[0].meets if options.budget else None, t is best) for t in tried)
    method = Method.parse(name) if not name.startswith(BY_OUTPUT_PATH) else None
    return ChosenRanges(model, method, changes, tries, tuple(t[0] for t in tried) if options.budget is not None else (),
                        chooser.counts)


def _by_output_path(chooser: RangeChooser, methods: list[Method], steps: list[SearchStep]):
    """The mix of the module docstring from `steps`, the figures of `methods`, and its name; None
    when one method is best for every output."""
    names = [o.name for o in steps[0].outputs]
    best_for = {name: max(range(len(steps)), key=lambda i: output_quality(steps[i].outputs[k]))
                for k, name in enumerate(names)}
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
