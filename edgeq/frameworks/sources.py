"""Load a Keras file or a SavedModel and make a TFLite converter for it, with fixed input shapes.

TensorFlow is imported inside its functions only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.core.errors import ModelError, UsageError
from edgeq.data.normalization import Statement
from edgeq.data.samples import InputSpec, Preprocessing
from edgeq.frameworks.keras_rewrites import layer_norms, recurrent_layers, unrolled, without_neg
from edgeq.frameworks.trust import check_saved_model, refusal
from edgeq.tflite.mediapipe_ops import (
    NO_BUILTIN_FORM,
    REWRITABLE,
    TOLERANCE,
    TRANSPOSE_CONV_BIAS,
    transposed_conv_bias_as_builtin,
    transposed_conv_error,
)

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class ModelSource:
    """A float model ready to convert: its fixed input specs per signature and a converter factory.

    The converter gives the SignatureDefs the plain converter gives for the same source (keys of
    the signature's inputs and outputs, output order); `restore` puts them back on paths whose
    converter drops them (the TF1 converter).
    """

    path: Path
    kind: str  # "keras" | "saved_model" | "saved_model (TF1 converter)"
    signatures: dict[str, list[InputSpec]]  # signature key -> its inputs, in the converter's order
    make_converter: Callable[[], Any]
    owner: Any = None  # the loaded model: concrete functions only hold weak references to its variables
    restore: Callable[[bytes], bytes] = lambda model: model
    keyed: bool = True  # the converter's model has the signatures, so samples can be fed by key
    rewrites: list[str] = field(default_factory=list)  # equivalent rewrites applied before converting (proven in float)
    flatbuffer: bytes | None = None  # a float .tflite source: calibrated and quantized as it is
    trained_ranges: bool = False  # fake-quant ops (quantization-aware training) carry the ranges

    @property
    def specs(self) -> list[InputSpec]:
        """The inputs of the only (or first) signature."""
        return next(iter(self.signatures.values()))


FAKE_QUANT_OPS = (b"FakeQuantWithMinMaxVars", b"FakeQuantWithMinMaxArgs", b"QuantizeAndDequantizeV")


def require_tensorflow(what: str) -> None:
    """UsageError (exit 2) naming the extra to install when TensorFlow is not there."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("keras") is None:
        raise UsageError(f"{what} needs TensorFlow, which this install lacks: pip install 'edgeq[convert]'")


def has_fake_quant(path: str | Path) -> bool:
    """Whether a SavedModel's graph has fake-quant ops (a QAT model), read without TensorFlow."""
    graph = Path(path) / "saved_model.pb"
    return graph.is_file() and any(op in graph.read_bytes() for op in FAKE_QUANT_OPS)


def parse_input_shapes(values: list[str]) -> dict[str | None, tuple[int, ...]]:
    """'1,224,224,3' (the only input) or 'name=1,224,224,3' (repeatable)."""
    shapes: dict[str | None, tuple[int, ...]] = {}
    for value in values:
        name, _, dims = value.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise UsageError(f"--input-shape {value!r}: expected comma-separated integers, e.g. 1,224,224,3") from None
        if not shape or any(d < 1 for d in shape):
            raise UsageError(f"--input-shape {value!r}: every dimension must be a positive integer")
        shapes[name or None] = shape
    return shapes


def fix_shape(name: str, shape: list[int | None], given: dict[str | None, tuple[int, ...]], single: bool) -> tuple[int, ...]:
    """Batch None becomes 1; any other unknown dimension must come from --input-shape."""
    override = given.get(name) or (given.get(None) if single else None)
    if override is not None:
        if len(override) != len(shape) or any(d is not None and d != o for d, o in zip(shape, override)):
            raise UsageError(f"--input-shape {list(override)} does not fit input '{name}' of shape {_show(shape)}")
        return override
    dims = [1 if (i == 0 and d is None) else d for i, d in enumerate(shape)]
    if any(d is None for d in dims):
        raise UsageError(
            f"input '{name}' has dynamic dimensions {_show(shape)}; pass --input-shape {name}="
            + ",".join("1" if i == 0 else "N" if d is None else str(d) for i, d in enumerate(shape))
        )
    return tuple(int(d) for d in dims)


def _show(shape) -> str:
    return "[" + ", ".join("?" if d is None or d == -1 else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class KerasCode:
    """What a Keras file or SavedModel may need to load: the user's custom classes (a .py file they
    name), and their explicit trust to run code the file holds (a Lambda layer's Python, a
    SavedModel's file or Python ops: edgeq.frameworks.trust). Neither is ever implied."""

    custom_objects: str | None = None
    trust_model: bool = False


def load_source(
    path: str | Path,
    signature: str | tuple[str, ...] = "serving_default",
    input_shapes: list[str] | None = None,
    code: KerasCode = KerasCode(),
) -> ModelSource:
    """`signature`: one key, several, or ("all",) for every signature of a SavedModel."""
    path = Path(path)
    wanted = (signature,) if isinstance(signature, str) else tuple(signature) or ("serving_default",)
    given = parse_input_shapes(input_shapes or [])
    if not path.exists():
        raise ModelError(f"{path}: no such model; pass a .keras or .h5 file or a SavedModel folder")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        check_saved_model(path, code.trust_model)
        return _saved_model(path, wanted, given)
    if path.suffix.lower() == ".tflite":
        return _tflite(path, wanted)
    if path.suffix.lower() in KERAS_SUFFIXES:
        if wanted != ("serving_default",):
            raise UsageError(f"{path}: a Keras model has one signature, serving_default; drop --signature")
        return _keras(path, given, code)
    raise ModelError(
        f"{path}: unsupported model type '{path.suffix}'; pass a .keras or .h5 file, a SavedModel folder or a float .tflite"
    )


def _keras(path: Path, given, code: KerasCode) -> ModelSource:
    import keras
    import tensorflow as tf

    custom = _custom_objects(code.custom_objects) if code.custom_objects else {}
    try:
        model = keras.models.load_model(path, compile=False, custom_objects=custom or None, safe_mode=not code.trust_model)
    except Exception as exc:
        message = str(exc)
        if "safe_mode" in message or "Lambda" in message and "unsafe" in message:
            raise refusal(path, "a Lambda layer (Python code stored in the model; Keras' safe_mode)") from None
        if "Could not locate" in message or "Unknown layer" in message or "custom" in message.lower():
            import re

            names = re.findall(r"Could not locate class '([^']+)'", message)
            raise ModelError(
                f"{path}: uses the custom class {' and '.join(dict.fromkeys(names)) or '(unnamed)'}, which Keras does not "
                "know; pass --custom-objects "
                "FILE.py, a file that defines it (registered with @keras.saving.register_keras_serializable, "
                "or listed in a module-level custom_objects dict)"
            ) from None
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({first_line(exc)})") from exc
    inputs = _symbolic_inputs(model)
    recurrent = recurrent_layers(model)
    try:
        specs = (
            [
                InputSpec(_input_name(t, i), fix_shape(_input_name(t, i), list(t.shape), given, len(inputs) == 1))
                for i, t in enumerate(inputs)
            ]
            if inputs is not None
            else _traced(path, model, given)
        )
    except UsageError as exc:
        if not recurrent:
            raise
        raise UsageError(
            f"{exc} (the recurrent layer(s) {', '.join(recurrent)} convert to int8 only unrolled over a fixed sequence length)"
        ) from None
    notes = []
    if recurrent:
        model, note = unrolled(model, [s.shape for s in specs])
        notes.append(note)
    if layer_norms(model):
        model, note = without_neg(model, [s.shape for s in specs])
        notes.append(note)
    tensor_specs = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs]

    def make_converter():
        """Exported as from_keras_model exports a Keras 3 model (an ExportArchive of the inference
        call), with fixed shapes: the same `serving_default` keys, input keys from the input names,
        outputs output_0, output_1, ..."""
        import functools

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve", functools.partial(model.__call__, training=False), [tensor_specs] if len(tensor_specs) > 1 else tensor_specs
        )
        return _saved_converter(lambda folder: _silently(archive.write_out, folder), ["serving_default"])

    return ModelSource(path, "keras", {"serving_default": specs}, make_converter, model, rewrites=notes)


def _symbolic_inputs(model: Any) -> list | None:
    """A functional or Sequential model's inputs; None for a subclassed model, which has none."""
    try:
        return list(model.inputs) or None
    except (AttributeError, ValueError):
        return None


def _traced(path: Path, model: Any, given: dict[str | None, tuple[int, ...]]) -> list[InputSpec]:
    """A subclassed model's inputs from --input-shape, built and traced by one call on zeros."""
    import numpy as np

    if not given:
        raise UsageError(
            f"{path}: {type(model).__name__} is a subclassed Keras model, which has no fixed inputs; pass "
            "--input-shape 1,H,W,C (one per input: --input-shape NAME=...) to build and trace it"
        )
    specs = [InputSpec(name or f"input_{i}", shape) for i, (name, shape) in enumerate(given.items())]
    zeros = [np.zeros(s.shape, np.float32) for s in specs]
    try:
        model(zeros if len(zeros) > 1 else zeros[0], training=False)
    except Exception as exc:
        raise UsageError(
            f"{path}: calling {type(model).__name__} on zeros of {', '.join(str(list(s.shape)) for s in specs)} "
            f"failed ({type(exc).__name__}: {first_line(exc)}); check --input-shape"
        ) from None
    return specs


def _custom_objects(file: str) -> dict[str, Any]:
    """Import the user's FILE.py: its registered classes register themselves; a module-level
    `custom_objects` dict is passed to Keras."""
    import importlib.util

    path = Path(file)
    if not path.is_file() or path.suffix != ".py":
        raise UsageError(f"--custom-objects {file}: no such Python file; pass the .py that defines the model's custom classes")
    spec = importlib.util.spec_from_file_location(f"edgeq_custom_objects_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"--custom-objects {file}: importing it failed ({type(exc).__name__}: {first_line(exc)})") from None
    found = getattr(module, "custom_objects", {})
    if not isinstance(found, dict):
        raise UsageError(f"--custom-objects {file}: its custom_objects must be a dict of name -> class")
    return found


def _silently(function: Callable[..., Any], *args: Any) -> Any:
    """Keras prints the exported endpoints to stdout, which is the user's (and --json's)."""
    import contextlib
    import os

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return function(*args)


def _input_name(tensor, index: int) -> str:
    name = getattr(tensor, "name", None) or f"input_{index}"
    return name.split(":")[0].replace("/", "_")


def _pick_signatures(path: Path, available: list[str], wanted: tuple[str, ...]) -> list[str]:
    if wanted == ("all",):
        return sorted(available)
    missing = [k for k in wanted if k not in available]
    if missing:
        raise UsageError(
            f"{path}: no signature '{missing[0]}'; it has {sorted(available)} (pass --signature KEY or --signature all)"
        )
    return list(dict.fromkeys(wanted))


def _saved_model(path: Path, wanted: tuple[str, ...], given) -> ModelSource:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        log.warning("tf.saved_model.load failed (%s); using the TF1 converter for %s", first_line(exc), path)
        return _saved_model_v1(path, wanted, given)
    keys = _pick_signatures(path, list(loaded.signatures), wanted)
    signatures, functions = {}, {}
    for key in keys:
        function = loaded.signatures[key]
        _, kwargs = function.structured_input_signature
        names = sorted(kwargs)
        for n in names:
            if kwargs[n].dtype != tf.float32:
                raise ModelError(
                    f"{path}: input '{n}' of signature '{key}' is {kwargs[n].dtype.name}; edgeq calibrates float32 inputs only"
                )
        specs = [InputSpec(n, fix_shape(n, kwargs[n].shape.as_list(), given, len(names) == 1)) for n in names]
        signatures[key] = specs
        functions[key] = _fixed(function, names, [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs])

    return ModelSource(
        path, "saved_model", signatures, lambda: _via_saved_model(loaded, functions), loaded, trained_ranges=has_fake_quant(path)
    )


def _via_saved_model(owner, functions: dict[str, Any]):
    """The fixed-shape functions saved under their own keys, converted as the plain converter
    converts a SavedModel, so the .tflite has the same SignatureDefs."""
    import tensorflow as tf

    return _saved_converter(lambda folder: tf.saved_model.save(owner, folder, signatures=functions), list(functions))


def _saved_converter(save: Callable[[str], Any], keys: list[str]):
    """A converter for the SavedModel that `save(folder)` writes to a scratch folder."""
    import shutil
    import tempfile

    import tensorflow as tf

    scratch = tempfile.mkdtemp(prefix="edgeq-sm-")
    try:
        save(scratch)
        return _Cleanup(tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=keys), scratch)
    except Exception:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _fixed(function, names: list[str], tensor_specs: list):
    """`function` (keyword inputs) as a concrete function with fixed shapes and the same keys."""
    import tensorflow as tf

    def call(*args):
        return function(**dict(zip(names, args)))

    return tf.function(call, input_signature=tensor_specs).get_concrete_function()


class _Cleanup:
    """A converter whose scratch SavedModel is removed once it has converted."""

    def __init__(self, converter, scratch: str):
        self._converter, self._scratch = converter, scratch

    def __getattr__(self, name):
        return getattr(self._converter, name)

    def __setattr__(self, name, value):
        if name in ("_converter", "_scratch"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._converter, name, value)

    def convert(self):
        import shutil

        try:
            return self._converter.convert()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _saved_model_v1(path: Path, wanted: tuple[str, ...], given) -> ModelSource:
    """Older TF 2.x SavedModels that tf.saved_model.load rejects still convert with the TF1 converter.

    That converter writes no SignatureDef; `restore` writes the SavedModel's own one back, its
    keys pointing at the tensors the converter named after the graph's tensors.
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    from edgeq.tflite.signatures import SignatureSpec, with_signatures

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    defs = proto.meta_graphs[0].signature_def
    keys = _pick_signatures(path, list(defs), wanted)
    if len(keys) > 1:
        raise UsageError(
            f"{path}: this SavedModel converts only on the TF1 converter, which takes one signature; pass --signature KEY"
        )
    key = keys[0]
    inputs, outputs = defs[key].inputs, defs[key].outputs
    names = sorted(inputs)
    specs = []
    for n in names:
        dims = [None if d.size < 0 else d.size for d in inputs[n].tensor_shape.dim]
        specs.append(InputSpec(n, fix_shape(n, dims, given, len(names) == 1)))
    tensor_names = {inputs[s.name].name.split(":")[0]: list(s.shape) for s in specs}
    spec = SignatureSpec(key, [(n, inputs[n].name) for n in names], [(n, outputs[n].name) for n in sorted(outputs)])
    return ModelSource(
        path,
        "saved_model (TF1 converter)",
        {key: specs},
        lambda: tf.compat.v1.lite.TFLiteConverter.from_saved_model(str(path), input_shapes=tensor_names, signature_key=key),
        restore=lambda model: with_signatures(model, [spec]),
        keyed=False,
    )


def _tflite(path: Path, wanted: tuple[str, ...]) -> ModelSource:  # its shapes are fixed: no --input-shape
    """A float .tflite (from TensorFlow, MediaPipe, litert-torch, onnx2tf...): calibrated with
    TensorFlow's flatbuffer calibrator, quantized by the same step as the other sources."""
    from edgeq.tflite.float16_weights import fold_float16_weights, has_float16_weights
    from edgeq.tflite.model import parse_tflite, read_tflite
    from edgeq.tflite.sparse_weights import densify_weights, has_sparse_weights
    from edgeq.tflite.stablehlo_constants import (
        STABLEHLO_FLAG,
        STABLEHLO_REWRITES,
        has_stablehlo_constant_flag,
        stablehlo_ops,
        without_stablehlo_constant_flag,
    )
    from edgeq.tflite.summary import summarize

    model = read_tflite(path)
    summary = summarize(model)
    if summary.precision not in ("float", "float16"):  # float16 weights are a float model stored small
        raise ModelError(
            f"{path}: already {summary.precision} ({summary.ops_int8} of {summary.ops_total} ops on int8 kernels); "
            "validate it with edgeq validate, or convert its float original"
        )
    custom = [op for op in model.operators if op.type.startswith("CUSTOM") and op.type.partition(":")[2] not in REWRITABLE]
    if custom:
        kinds: dict[str, list] = {}
        for op in custom:
            kinds.setdefault(op.type.partition(":")[2] or "unnamed", []).append(op)
        named = ", ".join(_custom_ops(kind, ops, model) for kind, ops in list(kinds.items())[:5])
        raise ModelError(
            f"{path}: uses custom op(s) {named}{' and more' if len(kinds) > 5 else ''}, which LiteRT's built-in "
            "kernels do not include and edgeq has no built-in form of (it rewrites "
            f"{', '.join(f'{k} as {v}' for k, v in REWRITABLE.items())}); calibration runs every op, so convert the model "
            "without them (keep that part out of the float model, or replace the op with built-in ones) and add it back "
            "in the app"
        )
    stablehlo = stablehlo_ops(model)
    if stablehlo:
        raise ModelError(
            f"{path}: has StableHLO op(s) {', '.join(f'{k} x{v}' for k, v in stablehlo.items())}, which TensorFlow's "
            "quantizer does not take (nothing was calibrated); "
            + "; ".join(
                f"{k}: {STABLEHLO_REWRITES.get(k, 'rewrite it with ops that export to TFLite builtins')}" for k in stablehlo
            )
        )
    notes, data = [], model.data
    if has_stablehlo_constant_flag(data):
        data = without_stablehlo_constant_flag(data)
        model = parse_tflite(data, path)
        notes.append(
            f"the '{STABLEHLO_FLAG}' metadata entry the LiteRT converter writes (litert-torch, litert-converter) "
            "was left out of the calibration copy: with it, TensorFlow's quantizer keeps every weight in float"
        )
    if has_sparse_weights(model):
        data = densify_weights(data)
        model = parse_tflite(data, path)
        notes.append(
            "sparse weights (behind DENSIFY ops) densified into plain constants, which the calibrator and "
            "quantizer take; the sparse copies are not kept"
        )
    if has_float16_weights(model):
        data = fold_float16_weights(data)
        model = parse_tflite(data, path)
        notes.append(
            "float16 weights (behind DEQUANTIZE ops) folded into float32 constants, which TensorFlow's "
            "calibrator takes; the float16 copies are not kept"
        )
    if any(op.type == f"CUSTOM:{TRANSPOSE_CONV_BIAS}" for op in model.operators):  # after folding: constant weights
        data, model, note = _builtin_transposed_convs(data, path)
        notes.append(note)
    main = [s for s in model.signatures if s.subgraph == 0]
    if wanted not in (("serving_default",), ("all",)) and not any(s.key in wanted for s in main):
        raise UsageError(f"{path}: no signature {wanted[0]!r}; it has {[s.key for s in model.signatures] or 'none'}")
    if main:
        signature = next((s for s in main if s.key in wanted), main[0])
        by_index = dict((i, k) for k, i in signature.inputs)
        specs = [InputSpec(by_index.get(i, model.tensors[i].name), model.tensors[i].shape) for i in model.inputs]
        key = signature.key
    else:
        specs, key = [InputSpec(model.tensors[i].name, model.tensors[i].shape) for i in model.inputs], "serving_default"
    for i in model.inputs:
        if model.tensors[i].dtype != "float32":
            raise ModelError(
                f"{path}: input '{model.tensors[i].name}' is {model.tensors[i].dtype}; edgeq calibrates float32 inputs only"
            )
    return ModelSource(path, "tflite", {key: specs}, lambda: None, rewrites=notes, keyed=bool(main), flatbuffer=data)


def _custom_ops(kind: str, ops: list, model) -> str:
    """One custom op type as the refusal names it: where, and what MediaPipe's ops compute."""
    nodes = ", ".join(str(op.index) for op in ops[:3]) + (", ..." if len(ops) > 3 else "")
    output = model.tensors[ops[0].outputs[0]].name if ops[0].outputs else "?"
    where = f"node {nodes}, output '{output}'" if len(ops) == 1 else f"x{len(ops)}: nodes {nodes}, first output '{output}'"
    what = f": {NO_BUILTIN_FORM[kind]}" if kind in NO_BUILTIN_FORM else ""
    return f"{kind} ({where}{what})"


def _builtin_transposed_convs(data: bytes, path: Path):
    """MediaPipe's Convolution2DTransposeBias ops as TRANSPOSE_CONV, proven equal in float first
    (edgeq.tflite.mediapipe_ops); the rewritten bytes, their parsed model and the manifest's note."""
    import tempfile

    from edgeq.tflite.model import parse_tflite

    done = transposed_conv_bias_as_builtin(data)
    if done is None:
        return data, parse_tflite(data, path), f"{TRANSPOSE_CONV_BIAS}: options not readable, left as they are"
    rewritten, ops = done
    with tempfile.TemporaryDirectory(prefix="edgeq-mediapipe-") as folder:
        error = transposed_conv_error(rewritten, ops, Path(folder))
    if not error <= TOLERANCE:
        raise ModelError(
            f"{path}: {TRANSPOSE_CONV_BIAS} as TRANSPOSE_CONV differs from the transposed convolution of its own input by "
            f"{error:.2g} of the output's scale (more than {TOLERANCE:g}); not rewritten: report the model to edgeq"
        )
    return (
        rewritten,
        parse_tflite(rewritten, path),
        (
            f"MediaPipe's {TRANSPOSE_CONV_BIAS} (node{'s' if len(ops) > 1 else ''} {', '.join(map(str, ops))}) rewritten as the "
            f"built-in TRANSPOSE_CONV with its bias before calibration: equal in float to a transposed convolution of "
            f"each op's own input (largest difference {error:.1g} of the output's scale)"
        ),
    )


def stated_scaling(source: ModelSource) -> Statement | None:
    """The input scaling the model states about itself: TFLite Model Metadata in a float .tflite,
    or a Rescaling/Normalization layer at a Keras model's image input (it then takes raw pixels)."""
    if source.flatbuffer is not None:
        from edgeq.tflite.metadata import read_metadata, stated_normalization

        stated = stated_normalization(read_metadata(source.path.read_bytes()))
        return Statement(stated, "model metadata") if stated else None
    if source.kind != "keras" or source.owner is None or any(len(s.shape) != 4 for s in source.specs):
        return None
    layer = _first_layer(source.owner)
    name = type(layer).__name__ if layer is not None else ""
    if name == "Rescaling":
        what = f"Keras layer '{layer.name}' (Rescaling scale {float(layer.scale):.6g}, offset {float(layer.offset):.6g})"
        return Statement(Preprocessing(value_range="0,255"), what)
    if name == "Normalization":
        import numpy as np

        mean = np.ravel(np.asarray(layer.mean, dtype=float))
        raw = float(np.max(mean)) > 1.5  # adapted on 0..255 pixels, not on 0..1
        what = f"Keras layer '{layer.name}' (Normalization mean {', '.join(f'{m:.4g}' for m in mean[:3])})"
        return Statement(Preprocessing(value_range="0,255" if raw else "0,1"), what)
    return None


def _first_layer(model: Any) -> Any:
    """The first layer that computes (no InputLayer, no inactive Random* augmentation), through nested models."""
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind == "InputLayer" or kind.startswith("Random"):
            continue
        return _first_layer(layer) if hasattr(layer, "layers") else layer
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def export_in_memory(source: Any, exported: Path) -> Path:
    """A keras.Model, tf.Module or concrete function written as a SavedModel, so that an in-memory
    source converts exactly as a path does."""
    import tensorflow as tf

    if hasattr(source, "export") and hasattr(source, "inputs"):  # a keras.Model: its inference call, as Keras exports it
        source.export(str(exported), verbose=False)
    elif hasattr(source, "structured_input_signature") and hasattr(source, "graph"):  # a concrete function
        holder = tf.Module()
        holder.function = source
        tf.saved_model.save(holder, str(exported), signatures={"serving_default": source})
    elif isinstance(source, tf.Module):
        tf.saved_model.save(source, str(exported))
    else:
        raise UsageError(
            f"cannot convert a {type(source).__name__}: pass a path, a keras.Model, a tf.Module or a concrete function"
        )
    return exported
