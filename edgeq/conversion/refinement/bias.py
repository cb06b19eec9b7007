"""--refine bias: the mean output shift that rounding each weight to its int8 step causes, taken
out of the int32 bias of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED in the INT8 file.

For a layer y = W x + b quantized to W_q (per-channel scales s_w), the rounding error
dW = s_w W_q - W shifts each output channel's mean by dW . E[x], where E[x] is the mean of the
layer's float input over the calibration samples, per input channel (convolutions: over the
positions too) or per feature (FULLY_CONNECTED). That shift is subtracted from the bias, in its
own scale (s_in s_w). Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and
Bias Correction", section 4.2, with E[x] measured on the calibration samples instead of taken
from BatchNorm statistics. The scales, zero-points and everything else in the file stay as the
converter wrote them; only bias values change.
"""

from __future__ import annotations

import numpy as np

from edgeq.conversion.refinement.layers import Run, WeightedLayer, buffers, unshared, weighted_layers
from edgeq.records.manifest import Refinement


def input_means(
    calibrated: bytes, samples: list[list[np.ndarray]], tensors: list[int], threads: int = 1
) -> dict[int, np.ndarray]:
    """The mean of each float tensor in `tensors` over the samples (the calibrated graph on
    XNNPACK): per channel (last axis) for a 4-D activation, per feature for anything else."""
    from edgeq.conversion.calibration.observed import observer_graph

    run = Run(observer_graph(calibrated, tensors), samples, threads)
    sums: dict[int, np.ndarray] = {}
    for sample in samples:
        for t, value in run.values(sample, tensors).items():
            mean = value.reshape(-1, value.shape[-1]).mean(0) if value.ndim == 4 else value.reshape(value.shape[0], -1).mean(0)
            sums[t] = sums.get(t, 0) + mean.astype(np.float64)
    return {t: s / max(1, len(samples)) for t, s in sums.items()}


def bias_corrected(
    quantized: bytes, calibrated: bytes, samples: list[list[np.ndarray]], threads: int = 1
) -> tuple[bytes, Refinement]:
    """`quantized` with every weighted layer's weight-rounding shift taken out of its bias."""
    quantized = unshared(quantized)
    layers, skipped = weighted_layers(quantized, calibrated)
    means = input_means(calibrated, samples, sorted({layer.twin_input for layer in layers}), threads)
    data = bytearray(quantized)
    corrected, largest = 0, 0.0
    for layer in layers:
        weights, bias = buffers(data, layer)
        shift = _shift(layer, weights, means[layer.twin_input])
        if isinstance(shift, str):
            skipped.append(f"{layer.name}: {shift}")
            continue
        bias[:] = np.clip(
            bias.astype(np.int64) - np.round(shift / layer.bias_scales).astype(np.int64),
            np.iinfo(np.int32).min,
            np.iinfo(np.int32).max,
        ).astype(np.int32)
        corrected += 1
        largest = max(largest, float(np.abs(shift / layer.output_scale).max()) if shift.size else 0.0)
    return bytes(data), Refinement("bias", corrected, len(samples), round(largest, 3), tuple(skipped))


def _shift(layer: WeightedLayer, weights: np.ndarray, mean: np.ndarray) -> np.ndarray | str:
    """Each output channel's mean shift from rounding its weights: dW . E[x]."""
    channels, k = layer.weights.shape
    if layer.kind == "DEPTHWISE_CONV_2D":
        q = weights.reshape(-1, channels).T  # the file keeps window x channels
        delta = q * layer.scales[:, None] - layer.weights
        return delta.sum(1) * mean[np.arange(channels) // layer.multiplier]
    delta = weights.reshape(channels, k) * layer.scales[:, None] - layer.weights
    if layer.kind == "FULLY_CONNECTED":
        return delta @ mean if mean.size == k else f"input of {mean.size} features for {k} weight columns"
    return delta @ np.tile(mean, k // mean.size)  # columns run kernel row, kernel column, input channel
