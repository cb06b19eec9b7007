"""--calibration other than minmax: activation ranges chosen from histograms, and `auto`, which
tries the methods on --eval-data and judges each on every output.

When no single method serves every output (entropy ranges that sharpen one head and clip the
tail another head outputs), `auto` also tries a mix by output path: each tensor that feeds only
outputs one method serves best takes that method's range; tensors shared between outputs keep
the method that is best for the worst output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeq.conversion.quantize import RangeChooser, quantize
from edgeq.conversion.ranges import AUTO_ORDER, Method
from edgeq.conversion.search import Budget, Evaluator, leximin, output_quality
from edgeq.data.samples import InputSpec, open_samples
from edgeq.tflite.graph import tensor_outputs


def choose_ranges(calibrated: bytes, specs: list[InputSpec], options, data: Path, keep: dict[str, Any], jobs: int = 1,
                  histograms: dict[int, np.ndarray] | None = None) -> tuple[bytes, dict, dict[int, np.ndarray]]:
    """The calibrated model with activation ranges chosen by --calibration from histograms of
    the calibration samples (built in `jobs` processes unless given); `auto` tries the methods in
    turn on --eval-data. Returns the model, the record, and the histograms."""
    chooser = RangeChooser(calibrated, specs, options.recipe, data, jobs, histograms)
    if options.calibration != "auto":
        return (*chooser.with_method(Method.parse(options.calibration)), chooser.counts)
    budget = options.budget or Budget(min_sqnr=float("inf"))  # no budget: the best worst-output SQNR wins
    eval_source = open_samples(options.eval_data, specs, options.preprocessing, None, options.seed)
    evaluator = Evaluator(calibrated, list(eval_source), [s.name for s in specs], eval_source.labels, budget,
                          class_count=len(eval_source.class_names or []) or None)
    tried = []

    def attempt(ranges: tuple[bytes, dict[str, Any]], kind: str) -> bool:
        model, record = ranges
        step_record = evaluator.evaluate(quantize(model, options.recipe, keep), [], kind=f"int8 ({kind})", phase="calibration method")
        tried.append((step_record, model, record))
        return step_record["meets"]

    methods = []
    for method in AUTO_ORDER:
        methods.append(method)
        if attempt(chooser.with_method(method), str(method)) and options.budget is not None:
            break
    if not any(t[0]["meets"] for t in tried):
        mix = _by_output_path(chooser, methods, [t[0] for t in tried])
        if mix is not None:
            attempt(mix, "by output path")
    best = next((t for t in tried if t[0]["meets"]), None) or max(tried, key=lambda t: leximin(t[0]))
    return best[1], {**best[2], "auto": [{"method": t[2]["method"], "worst_sqnr_db": t[0]["worst_sqnr_db"],
                                          "outputs": {o["name"]: o["sqnr_db"] for o in t[0]["outputs"]},
                                          "meets": t[0]["meets"] if options.budget else None} for t in tried],
                     "steps": [t[0] for t in tried] if options.budget is not None else []}, chooser.counts


def _by_output_path(chooser: RangeChooser, methods: list[Method], steps: list[dict[str, Any]]) -> tuple[bytes, dict[str, Any]] | None:
    """The mix of the module docstring from `steps`, the figures of `methods`, or None when one
    method is best for every output."""
    names = [o["name"] for o in steps[0]["outputs"]]
    best_for = {name: max(range(len(steps)), key=lambda i: output_quality(steps[i]["outputs"][k]))
                for k, name in enumerate(names)}
    if len(set(best_for.values())) < 2:
        return None
    shared = max(range(len(steps)), key=lambda i: leximin(steps[i]))
    model = chooser.parsed
    positions = {model.tensors[t].name: p for p, t in enumerate(model.outputs)}
    tensor_of = {o["name"]: o["tensor"] for o in steps[0]["outputs"]}
    method_at = {positions[tensor_of[n]]: i for n, i in best_for.items() if tensor_of[n] in positions}
    ranges = [chooser.ranges(m) for m in methods]
    chosen = dict(ranges[shared])
    for tensor, fed in tensor_outputs(model).items():
        picks = {method_at.get(p, shared) for p in fed}
        if tensor in chosen and len(picks) == 1:
            chosen[tensor] = ranges[picks.pop()][tensor]
    label = ", ".join(f"{name}: {methods[i]}" for name, i in best_for.items()) + f"; shared tensors: {methods[shared]}"
    return chooser.write(chosen, f"by output path ({label})")
