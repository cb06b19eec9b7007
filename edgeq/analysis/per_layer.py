"""Per-layer quantization error, from TensorFlow's QuantizationDebugger.

The debug model is the INT8 model's own recipe (the manifest's calibration data, sample count,
seed, preprocessing, per-channel and keep-float choices) quantized with NumericVerify ops: every
quantized op keeps its float twin, so the error of each layer is measured where it arises.
Layers are ranked by their SQNR (float signal power over quantization-error power, in dB): a
layer whose range is stretched by outliers keeps rounding every ordinary value to a coarse grid
and sinks to the top. RMSE and max error are also given in units of the tensor's scale (LSB).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeq.core.errors import UsageError
from edgeq.data.samples import InputSpec
from edgeq.host.native import captured_native_stderr
from edgeq.records.manifest import LayerError, Manifest, PerLayer
from edgeq.records.recipe import Recipe
from edgeq.tflite.model import parse_tflite


def _signal_power(float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    return float(np.mean(np.square(float_values.astype(np.float64))))


def per_layer_errors(
    model: Path,
    reference: Path,
    debug_samples: list[list[np.ndarray]],
    specs: list[InputSpec],
    signature: str = "serving_default",
    custom_objects: str | None = None,
    trust_model: bool = False,
    manifest: Manifest | None = None,
) -> PerLayer:
    """Rank the layers of `model` (an edgeq INT8 .tflite) by quantization error on `debug_samples`."""
    from edgeq.conversion.calibration.calibrate import calibrate
    from edgeq.conversion.calibration.choice import RangeChooser
    from edgeq.conversion.quantize import quantize, resolve_keep_float
    from edgeq.frameworks.sources import KerasCode, load_source

    recipe = manifest.recipe if manifest else Recipe(signatures=(signature,), samples=len(debug_samples))
    if not recipe.mode.int8_activations:
        raise UsageError(f"--per-layer needs an int8 model; {model} was converted with --mode {recipe.mode}")
    with captured_native_stderr():
        source = load_source(
            reference,
            recipe.signatures[:1],
            [",".join(map(str, s.shape)) for s in specs]
            if len(specs) == 1
            else [f"{s.name}=" + ",".join(map(str, s.shape)) for s in specs],
            KerasCode(custom_objects, trust_model),
        )
        recorded = recipe.data is not None and Path(recipe.data).exists()
        if recorded:
            calibration = list(recipe.open(recipe.data, source.specs))
            note = f"recalibrated as the model was: {len(calibration)} samples of {recipe.data}"
        else:
            calibration = debug_samples
            note = f"no calibration data recorded beside {model.name}; calibrated on the {len(debug_samples)} debug samples"
        calibrated = calibrate(source, recipe, lambda: iter(calibration))
        keep = resolve_keep_float(parse_tflite(calibrated), recipe.keep_float)
        if not recipe.calibration.is_minmax and recorded:
            calibrated, _ = RangeChooser(calibrated, source.specs, recipe, Path(recipe.data)).with_method(recipe.calibration)
            note += f", ranges chosen by {recipe.calibration}"
        debug_model = quantize(calibrated, recipe, keep, numeric_verify=True)
        matches = same_ops(quantize(calibrated, recipe, keep), model.read_bytes()) if manifest else None
        layers = run_debugger(debug_model, debug_samples)
    ranges = manifest.calibration.ranges if manifest and manifest.calibration else ()
    chosen = {r.tensor: r for r in ranges} | {r.tensor.rstrip("0123456789"): r for r in ranges}  # the debugger may drop a digit
    for i, layer in enumerate(layers):
        found = chosen.get(layer.tensor_name) or chosen.get(layer.tensor_name.rstrip("0123456789"))
        if found:
            layers[i] = replace(layer, range_ratio=found.range_ratio, clipped_fraction=found.clipped_fraction)
    return PerLayer(
        "sqnr_db (lowest first)",
        note,
        len(debug_samples),
        tuple(layers),
        tuple(sorted(ranges, key=lambda r: r.range_ratio)[:20]),
        "TensorFlow's QuantizationDebugger on a NumericVerify model of the same recipe",
        matches,
    )


def same_ops(rebuilt: bytes, shipped: bytes) -> bool:
    """Whether the recipe's model has the op census of the file: every op type, as often, in the same types."""
    from edgeq.tflite.summary import summarize

    return summarize(parse_tflite(rebuilt)).op_census == summarize(parse_tflite(shipped)).op_census


def debugger_feeds(debug_model: bytes, samples: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Samples in each debug-model input's own type: quantized with that input's scale and zero-point.

    TensorFlow's debugger quantizes float samples itself only for int8 inputs, and only when the
    zero-point is truthy: its check `quant_params['zero_points']` is a numpy array, so an input
    whose zero-point is 0 (a calibrated range of [-128 s, 127 s], e.g. pixels in -1..1) gets the
    float array and fails with "Cannot set tensor"; uint8 inputs are never quantized at all.
    """
    from edgeq.run.litert import to_model_dtype
    from edgeq.tflite.model import parse_tflite

    model = parse_tflite(debug_model)
    inputs = [model.tensors[i] for i in model.inputs]

    def cast(array: np.ndarray, tensor) -> np.ndarray:
        q = tensor.quantization
        return to_model_dtype(array, np.dtype(tensor.dtype), q.scales[0], q.zero_points[0]) if q else array.astype(tensor.dtype)

    return [[cast(a, t) for a, t in zip(sample, inputs)] for sample in samples]


def run_debugger(debug_model: bytes, samples: list[list[np.ndarray]]) -> list[LayerError]:
    """Per-layer statistics of the NumericVerify `debug_model` on float `samples` (input order)."""
    from edgeq.frameworks.debugger import layer_statistics

    dump = io.StringIO(layer_statistics(debug_model, debugger_feeds(debug_model, samples), {"signal_power": _signal_power}))
    layers = [_layer(row) for row in csv.DictReader(dump)]
    # a layer whose error could not be measured (no signal, or a NaN from LOG on zeros) is a suspect: first, never last
    layers.sort(key=lambda layer: (layer.sqnr_db is not None, layer.sqnr_db or 0.0))
    return [replace(layer, rank=rank) for rank, layer in enumerate(layers, 1)]


def _layer(row: dict[str, str]) -> LayerError:
    """One row of TensorFlow's layer statistics (its CSV's columns)."""
    scale, mse = float(row["scale"]), float(row["mean_squared_error"])
    signal = float(row["signal_power"])
    rmse, max_abs = math.sqrt(mse), float(row["max_abs_error"])
    return LayerError(
        rank=0,
        op_type=row["op_name"],
        tensor_name=row["tensor_name"],
        scale=scale,
        zero_point=int(float(row["zero_point"])),
        sqnr_db=round(10 * math.log10(signal / mse), 3) if mse > 0 and signal > 0 else None,
        rmse=rmse,
        mean_error=float(row["mean_error"]),
        max_abs_error=max_abs,
        rmse_lsb=round(rmse / scale, 4) if scale else None,
        max_abs_error_lsb=round(max_abs / scale, 4) if scale else None,
    )
