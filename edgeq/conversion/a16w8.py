"""16-bit activations on chosen layers, int8 elsewhere (a16w8 per layer), from the calibrated
graph and edgeq's own min/max ranges: TensorFlow's quantizer makes a whole model int16x8 or none,
so these models come from ai-edge-quantizer (Google's, in the LiteRT ecosystem), given the ranges
TensorFlow's calibrator recorded rather than its own moving average of per-sample extremes, which
clips the rarer large values (on a test model an output's int16 range came out +-0.27 where its
samples reach 0.57: 13.7 dB instead of 37.6).

Inputs and outputs are int8 (a 16-bit output is requantized to int8 at the end), the signature
keys stay; 16-bit ops run on LiteRT's built-in kernels, not on XNNPACK (INT16X8_NOTE)."""

from __future__ import annotations

import importlib.util
import re

import numpy as np

from edgeq.core.errors import UsageError
from edgeq.host.isolation import step
from edgeq.tflite.model import parse_tflite

INSTALL = "pip install ai-edge-quantizer==0.10.0"


def available() -> bool:
    return importlib.util.find_spec("ai_edge_quantizer") is not None


def a16w8(calibrated: bytes, layers: tuple[str, ...], float_layers: tuple[str, ...] = ()) -> bytes:
    """`calibrated` quantized static int8 (weights per channel) with `layers` (node names: an op's
    first output tensor) at 16-bit activations and `float_layers` left in float, every tensor at
    the range the calibration recorded."""
    if not available():
        raise UsageError(f"16-bit layers are quantized by ai-edge-quantizer, which is not installed: {INSTALL}")
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    from edgeq.conversion.calibration.parallel import read_ranges

    step(f"quantizing with {len(layers)} 16-bit and {len(float_layers)} float layer(s) (ai-edge-quantizer)")
    parsed = parse_tflite(calibrated)
    ranges = {
        parsed.tensors[i].name: {"min": np.array(lo, np.float32), "max": np.array(hi, np.float32)}
        for i, (lo, hi) in read_ranges(calibrated).items()
    }
    qt = quantizer.Quantizer(calibrated)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    if layers:
        qt.add_static_config(
            regex=_scope(layers), operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=16, weight_num_bits=8
        )
    if float_layers:
        qt.update_quantization_recipe(
            _scope(float_layers), qtyping.TFLOperationName.ALL_SUPPORTED, algorithm_key=AlgorithmName.NO_QUANTIZE
        )
    return bytes(qt.quantize(ranges, enable_progress_report=False).quantized_model)


def _scope(nodes: tuple[str, ...]) -> str:
    """The ops writing `nodes`: ai-edge-quantizer matches an op's scope, its output names each followed by ";"."""
    return "^(" + "|".join(re.escape(n) for n in nodes) + ");"
