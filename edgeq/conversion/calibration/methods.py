"""Activation ranges beyond min/max: percentile, MSE and entropy, chosen per tensor from
histograms, then written into the calibrated model for the same quantize step.

TensorFlow sets each activation's range from the global min and max over the samples, so one rare
outlier widens the range and costs every ordinary value its resolution. These methods choose a
clipping range from a 2048-bin histogram of each tensor the calibrator logged (bins fixed by the
min/max pass, so histograms of sample shards add up exactly):

- percentile:P  clips at the P-th percentile of |x| on each side (both signs present), or at the
                P-th and (100-P)-th percentiles for a one-sided tensor;
- mse           the range [a*lo, a*hi] (a in (0, 1]) with the least expected squared error:
                rounding (step^2 / 12) for values inside, clipping for values outside;
- entropy       the range whose 8-bit quantized histogram has the least KL divergence from the
                clipped float histogram (TensorRT's entropy calibration, on the asymmetric range);
- moving-average  ai-edge-quantizer's statistic, from the samples rather than the histograms: a
                moving average (smoothing 0.95) of each sample's min and max, in sample order. It
                narrows rare extremes (on PP-OCRv4's recognizer ai-edge-quantizer's scales came
                out at a median 0.81 of min/max's, and 3.2 dB better held back).

The graph's outputs, the outputs of ops with fixed output ranges (SOFTMAX, LOGISTIC, TANH) and
their inputs (clipped logits change which class wins) keep their min/max (a graph input may be
clipped: a stray calibration value widens it like any other tensor, and values beyond the range
saturate when the app quantizes them); ops that pass values through (RESHAPE, MAX_POOL_2D, ...) get their input's range,
as the quantizer wants one scale on both sides; every range includes 0.
"""

from __future__ import annotations

import numpy as np

from edgeq.records.recipe import Method

BINS = 2048
LEVELS = 255
FIXED_OUTPUT = frozenset({"SOFTMAX", "LOGISTIC", "TANH", "LOG_SOFTMAX"})
PASS_THROUGH = frozenset(
    {
        "RESHAPE",
        "SQUEEZE",
        "EXPAND_DIMS",
        "MAX_POOL_2D",
        "TRANSPOSE",
        "STRIDED_SLICE",
        "SLICE",
        "GATHER",
        "PAD",
        "SPACE_TO_DEPTH",
        "DEPTH_TO_SPACE",
    }
)
Ranges = dict[int, tuple[float, float]]


AUTO_ORDER = (
    Method("minmax"),
    Method("entropy"),
    Method("percentile", 99.99),
    Method("percentile", 99.999),
    Method("mse"),
    Method("moving-average"),
)
SMOOTHING = 0.95  # moving-average: ai-edge-quantizer's weight of the range so far (qsv_utils.moving_average_update)


def histograms(model: bytes, samples, ranges: Ranges) -> dict[int, np.ndarray]:
    """Counts of every logged tensor's values in BINS fixed bins over its min/max, on `samples`
    (lists of arrays in the model's input order): the graph on XNNPACK with those tensors as
    outputs where it shows them all (edgeq.conversion.calibration.observed), else on the built-in
    kernels with every tensor preserved."""
    counts = {i: np.zeros(BINS, np.int64) for i in ranges}

    def add(index: int, values: np.ndarray) -> None:
        lo, hi = ranges[index]
        if hi > lo:
            counts[index] += _bin_counts(values, lo, hi)

    for visit in _runs(model, samples, ranges):
        visit(add)
    return counts


def moving_averages(model: bytes, samples, ranges: Ranges) -> Ranges:
    """Each logged tensor's moving average of its per-sample min and max over `samples`, in order
    (the first sample's extremes to start), as ai-edge-quantizer's calibrator keeps them."""
    averaged: Ranges = {}

    def add(index: int, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return
        lo, hi = float(finite.min()), float(finite.max())
        old = averaged.get(index)
        averaged[index] = (
            (lo, hi) if old is None else (SMOOTHING * old[0] + (1 - SMOOTHING) * lo, SMOOTHING * old[1] + (1 - SMOOTHING) * hi)
        )

    for visit in _runs(model, samples, ranges):
        visit(add)
    return {i: averaged.get(i, r) for i, r in ranges.items()}


def _runs(model: bytes, samples, ranges: Ranges):
    from edgeq.conversion.calibration.observed import observable, observe

    if observable(model):
        yield from observe(model, samples, ranges, threads=1)
        return
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=model,
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    for sample in samples:
        for detail, array in zip(inputs, sample):
            interpreter.set_tensor(detail["index"], np.asarray(array, np.float32))
        interpreter.invoke()
        yield lambda visitor: [visitor(index, interpreter.get_tensor(index)) for index in ranges]


def _bin_counts(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """np.histogram(values, BINS, (lo, hi)) for finite values inside the range, by one bincount."""
    flat = values.ravel().astype(np.float64)
    flat = flat[(flat >= lo) & (flat <= hi)]
    index = np.minimum(((flat - lo) * (BINS / (hi - lo))).astype(np.int64), BINS - 1)
    return np.bincount(index, minlength=BINS)


def histograms_parallel(model: bytes, samples: list, ranges: Ranges, jobs: int) -> dict[int, np.ndarray]:
    """The same histograms, built in `jobs` spawned processes on shards and added up (exact)."""
    if jobs <= 1 or len(samples) < 2:
        return histograms(model, samples, ranges)
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from edgeq.host.isolation import main_module_hidden

    shards = [samples[k::jobs] for k in range(jobs)]
    with main_module_hidden(), ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(histograms, [model] * jobs, shards, [ranges] * jobs))
    return {i: np.sum([part[i] for part in parts], axis=0) for i in ranges}


def choose(method: Method, counts: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The clipping range `method` picks from one tensor's histogram over [lo, hi]."""
    if method.name == "minmax" or counts.sum() == 0 or hi <= lo:
        return lo, hi
    edges = np.linspace(lo, hi, BINS + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    if method.name == "percentile":
        return _percentile(counts, centres, edges, lo, hi, method.percentile)
    scores = [(_mse if method.name == "mse" else _kl)(counts, centres, a * lo, a * hi) for a in _alphas()]
    best = _alphas()[int(np.argmin(scores))]
    return best * lo, best * hi


def _alphas() -> np.ndarray:
    return np.linspace(1.0, 0.02, 128)


def _percentile(counts, centres, edges, lo, hi, p) -> tuple[float, float]:
    if lo < 0 < hi:  # both signs: one threshold on |x|
        magnitude = np.abs(centres)
        order = np.argsort(magnitude)
        cumulative = np.cumsum(counts[order]) / counts.sum()
        t = float(magnitude[order][min(np.searchsorted(cumulative, p / 100), len(order) - 1)])
        return max(lo, -t), min(hi, t)
    cumulative = np.cumsum(counts) / counts.sum()
    low = edges[min(np.searchsorted(cumulative, (100 - p) / 100), BINS - 1)]
    high = edges[min(np.searchsorted(cumulative, p / 100) + 1, BINS)]
    return (float(low), float(high)) if lo >= 0 else (float(low), float(hi))


def _mse(counts, centres, lo, hi) -> float:
    step = (hi - lo) / LEVELS
    clipped = np.clip(centres, lo, hi)
    inside = (centres >= lo) & (centres <= hi)
    error = np.where(inside, step * step / 12.0, (centres - clipped) ** 2)
    return float((counts * error).sum())


def _kl(counts, centres, lo, hi) -> float:
    """KL(P || Q) as TensorRT's entropy calibrator computes it: P is the histogram inside the range
    with the clipped mass added to its edge bins; Q is the inside histogram alone (without that
    mass) quantized to LEVELS levels, each level's mass spread over its non-empty bins. Ranges
    narrower than LEVELS bins are not candidates (their quantization would look lossless)."""
    inside = (centres >= lo) & (centres <= hi)
    if inside.sum() < LEVELS:
        return np.inf
    kept = counts[inside].astype(np.float64)
    p = kept.copy()
    p[0] += counts[centres < lo].sum()
    p[-1] += counts[centres > hi].sum()
    level = np.minimum(((centres[inside] - lo) / max(hi - lo, 1e-12) * LEVELS).astype(int), LEVELS - 1)
    zero = int(np.argmin(np.abs(centres[inside])))  # 0 is exact in int8 (the zero-point): ReLU's spike there is no error
    level[zero] = -1
    leveled = level >= 0
    mass = np.bincount(level[leveled], weights=kept[leveled], minlength=LEVELS)
    filled = np.bincount(level[leveled & (kept > 0)], minlength=LEVELS)
    q = np.where(leveled & (kept > 0), mass[np.maximum(level, 0)] / np.maximum(filled[np.maximum(level, 0)], 1), 0.0)
    q[zero] = kept[zero]
    mask = p > 0
    if not np.all(q[mask] > 0):  # mass P has where Q has none: an infinite divergence, smoothed
        q = np.where(mask & (q == 0), 1e-4 * max(kept.sum(), 1.0) / mask.sum(), q)
    p, q = p[mask] / p.sum(), q[mask] / q[mask].sum()
    return float(np.sum(p * np.log(p / q)))


def chosen_ranges(model, method: Method, counts: dict[int, np.ndarray], minmax: Ranges, averaged: Ranges | None = None) -> Ranges:
    """Every logged tensor's range under `method`, respecting what the quantizer needs.

    `model`: the parsed calibrated TfliteModel (op types, producers, graph inputs); `averaged`:
    the moving averages (moving-average's ranges, edgeq.conversion.calibration.methods.moving_averages)."""
    ranges = dict(minmax)
    if method.name == "minmax":
        return ranges
    producer = {o: op for op in model.operators for o in op.outputs}
    feeds_fixed = {i for op in model.operators if op.type in FIXED_OUTPUT for i in op.inputs}
    for index, (lo, hi) in minmax.items():
        op = producer.get(index)
        if index not in model.inputs and (op is None or op.type in FIXED_OUTPUT or op.type in PASS_THROUGH):
            continue
        if index in model.outputs or index in feeds_fixed:
            continue
        a, b = averaged[index] if method.name == "moving-average" and averaged else choose(method, counts[index], lo, hi)
        ranges[index] = (min(a, 0.0), max(b, 0.0))
    for op in model.operators:  # pass-through ops: one scale on both sides, the input's
        if op.type in PASS_THROUGH and op.inputs and op.inputs[0] in ranges:
            for out in op.outputs:
                if out in ranges:
                    ranges[out] = ranges[op.inputs[0]]
    return ranges


def clipped_fraction(counts: np.ndarray, lo: float, hi: float, chosen: tuple[float, float]) -> float:
    if counts.sum() == 0 or hi <= lo:
        return 0.0
    centres = np.linspace(lo, hi, BINS + 1)
    centres = (centres[:-1] + centres[1:]) / 2
    outside = (centres < chosen[0]) | (centres > chosen[1])
    return float(counts[outside].sum() / counts.sum())
