"""The stage functions of a conversion: calibrate a float model, choose its activation ranges,
quantize it. A calibrated model goes in, a quantized one comes out; the recipe says how.

Full-integer modes run TensorFlow's own two steps separately: calibrate (the converter with
`_experimental_calibrate_only`), then quantize (`mlir_quantize`, exactly as the converter calls
it). Splitting them lets edgeq keep chosen layers in float and audit the model in between.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

from edgeq.host.isolation import step
from edgeq.core.errors import UsageError
from edgeq.records.manifest import KeepFloat, RangeChange
from edgeq.records.recipe import Method, Mode, Recipe
from edgeq.tflite.model import TfliteModel, parse_tflite
from edgeq.tflite.summary import FloatOp, float_ops
from edgeq.core.timing import phase


def keyed(source):
    """Samples (lists in input order) as {input key: array}, which the converter maps by signature;
    as they are where the converter's model has no signature, or they are keyed already."""
    if len(source.signatures) > 1 or not source.keyed:
        return lambda samples: samples
    names = [s.name for s in source.specs]
    return lambda samples: (dict(zip(names, sample)) for sample in samples)


def tf_type(name: str):
    import tensorflow as tf

    return {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}[name]


def calibrate(source, recipe: Recipe, samples: Callable[[], Iterable[Any]], phase_name: str = "convert and calibrate") -> bytes:
    """The calibrated float model (min/max on every tensor) of `source` on `samples()`, which
    yields lists of arrays in the order of `source.specs` (or, for several signatures, keyed pairs)."""
    import tensorflow as tf

    if source.flatbuffer is not None:  # what the converter itself runs after converting: the flatbuffer calibrator
        from tensorflow.lite.python.optimize.calibrator import Calibrator

        step("calibrating (TensorFlow's flatbuffer calibrator)")
        with phase(phase_name):
            return Calibrator(source.flatbuffer).calibrate(lambda: keyed(source)(samples()))
    with phase("export"):
        converter = source.make_converter()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: keyed(source)(samples())
    step("calibrating (TensorFlow's converter and calibrator)")
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if recipe.mode == Mode.INT8_FALLBACK or recipe.keep_float:
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    converter.target_spec.supported_ops = ops
    converter._experimental_calibrate_only = True  # noqa: SLF001 - see the module docstring
    with phase(phase_name):
        return converter.convert()


QUANTIZE_ATTEMPTS = 12


def quantize(calibrated: bytes, recipe: Recipe, keep: KeepFloat, numeric_verify: bool = False) -> bytes:
    """`numeric_verify`: the debug model of QuantizationDebugger (float ops kept beside the quantized ones).

    TensorFlow's MLIR quantizer is not deterministic on some graphs: on an unrolled LSTM the same
    calibrated bytes came out three different ways in six calls, one of them with the first step's
    SPLIT left in float. In strict int8, where such a result would be refused, a result with ops
    in float that nobody kept is quantized again (at most QUANTIZE_ATTEMPTS calls).
    """
    from edgeq.frameworks.native_converter import mlir_quantize

    step("quantizing (TensorFlow's MLIR quantizer)")
    for _ in range(1 if numeric_verify or recipe.mode != Mode.INT8 else QUANTIZE_ATTEMPTS):
        result = mlir_quantize(calibrated, recipe.per_tensor, recipe.io, numeric_verify, list(keep.ops) or None,
                               list(keep.nodes) or None)
        if not not_kept(float_ops(parse_tflite(result)), keep):
            break
    return result


def one_step(source, recipe: Recipe, representative_dataset, float_only: bool = False) -> bytes:
    """The converter's own one-step path: int16x8, dynamic range, float16, and plain float."""
    import tensorflow as tf

    if source.flatbuffer is not None:
        if float_only:
            return source.flatbuffer
        raise UsageError(f"--mode {recipe.mode} needs TensorFlow's converter, which takes a TensorFlow model, not a "
                         ".tflite; a .tflite converts with --mode int8 or int8-fallback")
    step(f"converting ({'float' if float_only else recipe.mode}, TensorFlow's converter)")
    converter = source.make_converter()
    if float_only:
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if recipe.mode == Mode.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    elif recipe.mode == Mode.INT16X8:
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf_type(recipe.io)
        converter._experimental_disable_per_channel = recipe.per_tensor  # noqa: SLF001
    return converter.convert()


def resolve_keep_float(calibrated: TfliteModel, names: tuple[str, ...]) -> KeepFloat:
    """Map each --keep-float NAME to op types or the exact node names of the calibrated graph.

    A NAME is an op type (CONV_2D), an exact output tensor name, or a Keras layer name, which
    matches any op whose output name has that path component (TensorFlow may suffix it: conv_1).
    """
    op_types = {op.type for op in calibrated.operators}
    outputs = {op.index: [calibrated.tensors[i].name for i in op.outputs if i >= 0] for op in calibrated.operators}
    nodes: list[str] = []
    ops: list[str] = []
    kept: dict[str, int] = {}
    for name in names:
        if name.upper() in op_types:
            ops.append(name.upper())
            kept[name] = sum(op.type == name.upper() for op in calibrated.operators)
            continue
        exact = [n for names_ in outputs.values() for n in names_ if n == name]
        layer = [n for names_ in outputs.values() for n in names_ if name in _components(n)]
        suffixed = re.compile(re.escape(name) + r"_\d+$")
        loose = [n for names_ in outputs.values() for n in names_ if any(suffixed.match(c) for c in _components(n))]
        found = exact or layer or loose
        if not found:
            raise UsageError(
                f"--keep-float {name}: no op type or layer of that name in the model; "
                f"op types: {', '.join(sorted(op_types))}; some layer names: {', '.join(_unique_layers(outputs)[:12])}"
            )
        kept[name] = len(found)
        nodes.extend(n for n in found if n not in nodes)
    return KeepFloat(tuple(names), tuple(nodes), tuple(ops), kept)


def _unique_layers(outputs: dict[int, list[str]]) -> list[str]:
    """Name components that pick out exactly one op: what a --keep-float suggestion should offer
    (a generic component such as Relu or BiasAdd would keep every op it appears in)."""
    ops_of: dict[str, set[int]] = {}
    for op, names in outputs.items():
        for n in names:
            for part in n.split(";"):
                for c in part.split("/")[:-1]:  # the last part names the TensorFlow op (Relu, BiasAdd), not a layer
                    ops_of.setdefault(c, set()).add(op)
    return sorted(c for c, ops in ops_of.items() if len(ops) == 1 and not c.isdigit() and ":" not in c)


def _components(tensor_name: str) -> set[str]:
    return {c for part in tensor_name.split(";") for c in part.split("/")}


def not_kept(found: list[FloatOp], keep: KeepFloat) -> list[FloatOp]:
    """The float ops that no --keep-float (op type or node) asked for."""
    def kept(name: str) -> bool:
        """The quantizer may suffix a kept node's name with a digit (Identity -> Identity1), and fuse
        it with its activation ('activation_1;add_1' for the nodes add_1 and activation_1)."""
        return any(part == n or (part.startswith(n) and part[len(n):].isdigit()) for part in (name, *name.split(";"))
                   for n in keep.nodes)

    return [op for op in found if op.type not in set(keep.ops) and not any(map(kept, op.outputs))]


class RangeChooser:
    """Activation ranges chosen from histograms of the calibration samples (built once, in `jobs`
    processes, or taken from the calibration cache), written into the calibrated model by method."""

    def __init__(self, calibrated: bytes, specs: list, recipe: Recipe, data: Path, jobs: int = 1,
                 counts: dict[int, Any] | None = None) -> None:
        from edgeq.conversion.calibration.parallel import read_ranges
        from edgeq.conversion.calibration.methods import histograms_parallel
        from edgeq.tflite.signatures import calibrator_order

        self.calibrated = calibrated
        self.parsed = parse_tflite(calibrated)
        self.minmax = read_ranges(calibrated)
        self.counts = counts
        if counts is None or set(counts) != set(self.minmax):
            order = calibrator_order(self.parsed, [s.name for s in specs])
            samples = [[sample[k] for k in order] for sample in
                       recipe.open(data, specs)]
            step("building activation histograms")
            self.counts = histograms_parallel(calibrated, samples, self.minmax, jobs)

    def ranges(self, method) -> dict[int, tuple[float, float]]:
        from edgeq.conversion.calibration.methods import chosen_ranges

        return chosen_ranges(self.parsed, method, self.counts, self.minmax)

    def with_method(self, method: Method) -> tuple[bytes, tuple[RangeChange, ...]]:
        return self.write(self.ranges(method))

    def write(self, chosen: dict[int, tuple[float, float]]) -> tuple[bytes, tuple[RangeChange, ...]]:
        """The calibrated model with the `chosen` ranges, and those that differ from min/max."""
        from edgeq.conversion.calibration.parallel import write_ranges
        from edgeq.conversion.calibration.methods import clipped_fraction

        minmax, counts, tensors = self.minmax, self.counts, self.parsed.tensors
        changed = [i for i in chosen if chosen[i] != minmax[i]]
        changes = tuple(RangeChange(tensors[i].name, tuple(minmax[i]), tuple(chosen[i]),
                                    round((chosen[i][1] - chosen[i][0]) / (minmax[i][1] - minmax[i][0]), 4),
                                    clipped_fraction(counts[i], *minmax[i], chosen[i])) for i in changed)
        return write_ranges(self.calibrated, chosen), changes
