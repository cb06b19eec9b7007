"""Quantizing a calibrated model (`mlir_quantize`, exactly as TensorFlow's converter calls it,
after edgeq.conversion.calibration.calibrate), TensorFlow's one-step paths (int16x8, dynamic,
float16), and the layers the recipe keeps in float, by name or op type.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from edgeq.core.errors import ConversionError, UsageError
from edgeq.host.isolation import step
from edgeq.records.manifest import KeepFloat
from edgeq.records.recipe import Mode, Recipe
from edgeq.tflite.mediapipe_ops import REWRITTEN_AS
from edgeq.tflite.model import TfliteModel, parse_tflite
from edgeq.tflite.summary import FloatOp, float_ops

log = logging.getLogger("edgeq")


def tf_type(name: str):
    import tensorflow as tf

    return {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}[name]


QUANTIZE_ATTEMPTS = 12


def quantize(calibrated: bytes, recipe: Recipe, keep: KeepFloat, numeric_verify: bool = False) -> bytes:
    """`numeric_verify`: the debug model of QuantizationDebugger (float ops kept beside the quantized ones).

    TensorFlow's MLIR quantizer is not deterministic on some graphs: on an unrolled LSTM the same
    calibrated bytes came out three different ways in six calls, one of them with the first step's
    SPLIT left in float. In strict int8, where such a result would be refused, a result with ops
    in float that nobody kept is quantized again (at most QUANTIZE_ATTEMPTS calls).
    """
    from edgeq.frameworks.native_converter import mlir_quantize
    from edgeq.tflite.rewrites import min_max_ranges_widened

    step("quantizing (TensorFlow's MLIR quantizer)")
    calibrated, widened = min_max_ranges_widened(calibrated)
    if widened:
        log.info(f"the range of {len(widened)} MINIMUM/MAXIMUM output(s) widened to their input's: {', '.join(widened[:5])}")
    if recipe.int16_layers:
        from edgeq.conversion.a16w8 import a16w8

        floats = keep.nodes + _nodes_of_types(calibrated, keep.ops)
        result = a16w8(calibrated, recipe.int16_layers, floats)
        stray = not_kept(float_ops(parse_tflite(result)), KeepFloat(nodes=floats))
        if stray:  # ai-edge-quantizer leaves ops it cannot quantize (PRELU) in float, which strict int8 refuses
            listed = ", ".join(f"{op.type} ({op.outputs[0]})" for op in stray[:3])
            raise ConversionError(f"ai-edge-quantizer left {len(stray)} op(s) in float that nobody kept: {listed}")
        return result
    ops = list(keep.ops)
    for _ in range(1 if numeric_verify or recipe.mode != Mode.INT8 else QUANTIZE_ATTEMPTS):
        result = mlir_quantize(calibrated, recipe.per_tensor, recipe.io, numeric_verify, ops or None, list(keep.nodes) or None)
        found = float_ops(parse_tflite(result))
        named = nodes_named([output for op in found for output in op.outputs], keep.nodes)
        left = [n for n in keep.nodes if n not in named]
        whole = _types_kept_only_by_type(parse_tflite(calibrated), left, ops) if left else []
        if whole:  # TensorFlow keeps e.g. a TRANSPOSE_CONV in float by its type only: every one of them was asked for
            ops += whole
            result = mlir_quantize(calibrated, recipe.per_tensor, recipe.io, numeric_verify, ops, list(keep.nodes) or None)
            found = float_ops(parse_tflite(result))
        if not not_kept(found, keep):
            break
    return result


def _nodes_of_types(calibrated: bytes, ops: tuple[str, ...]) -> tuple[str, ...]:
    """The nodes (first outputs) of every op of the types `ops`; the model is parsed only when there are some."""
    if not ops:
        return ()
    parsed = parse_tflite(calibrated)
    return tuple(parsed.tensors[op.outputs[0]].name for op in parsed.operators if op.type in ops and op.outputs)


def _types_kept_only_by_type(calibrated: TfliteModel, left: list[str], ops: list[str]) -> list[str]:
    """The op types of the nodes the quantizer left in int8 although asked to keep them, where every
    op of that type was asked for: keeping the type keeps exactly those nodes. A type only some of
    whose ops were asked for stays as it is (keeping it would keep others); the caller's check says so."""
    writers = {calibrated.tensors[i].name: op.type for op in calibrated.operators for i in op.outputs if i >= 0}
    types = {writers[n] for n in left if n in writers} - set(ops)
    asked = set(left)
    return sorted(
        t for t in types if all(calibrated.tensors[op.outputs[0]].name in asked for op in calibrated.operators if op.type == t)
    )


def one_step(source, recipe: Recipe, representative_dataset, float_only: bool = False) -> bytes:
    """The converter's own one-step path: int16x8, dynamic range, float16, and plain float."""
    import tensorflow as tf

    if source.flatbuffer is not None:
        if float_only:
            return source.flatbuffer
        raise UsageError(
            f"--mode {recipe.mode} needs TensorFlow's converter, which takes a TensorFlow model, not a "
            ".tflite; a .tflite converts with --mode int8 or int8-fallback"
        )
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
        converter._experimental_disable_per_channel = recipe.per_tensor
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
        op_type = REWRITTEN_AS.get(name, name.upper())  # a MediaPipe custom op is kept as the built-in edgeq rewrote it to
        if op_type in op_types:
            ops.append(op_type)
            kept[name] = sum(op.type == op_type for op in calibrated.operators)
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
    return [op for op in found if op.type not in set(keep.ops) and not nodes_named(op.outputs, keep.nodes)]


def nodes_named(names: Iterable[str], nodes: Iterable[str]) -> set[str]:
    """The `nodes` that some of a quantized model's tensor `names` belong to: the quantizer may
    suffix a kept node's name with a digit (Identity -> Identity1), and fuse it with its activation
    ('activation_1;add_1' for the nodes add_1 and activation_1). One pass over the names (a search
    candidate keeps hundreds of nodes: matching each against each took 0.46 s with 587, this 0.006 s)."""
    wanted, found = set(nodes), set()
    for name in names:
        for part in (name, *name.split(";")):
            stem = part
            while stem:
                if stem in wanted:
                    found.add(stem)
                if not stem[-1].isdigit():
                    break
                stem = stem[:-1]
    return found
