"""Load a Keras file or a SavedModel and make a TFLite converter for it, with fixed input shapes.

This is the one module that imports TensorFlow, and only inside its functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeq.errors import ModelError, UsageError
from edgeq.samples import InputSpec

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class ModelSource:
    """A float model ready to convert: its fixed input specs and a converter factory."""

    path: Path
    kind: str  # "keras" | "saved_model" | "saved_model (TF1 converter)"
    specs: list[InputSpec]
    make_converter: Callable[[], Any]
    owner: Any = None  # the loaded model: concrete functions only hold weak references to its variables


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
        raise UsageError(f"input '{name}' has dynamic dimensions {_show(shape)}; pass --input-shape {name}=" + ",".join(
            "1" if i == 0 else "N" if d is None else str(d) for i, d in enumerate(shape)))
    return tuple(int(d) for d in dims)


def _show(shape) -> str:
    return "[" + ", ".join("?" if d is None or d == -1 else str(d) for d in shape) + "]"


def load_source(path: str | Path, signature: str = "serving_default", input_shapes: list[str] | None = None) -> ModelSource:
    path = Path(path)
    given = parse_input_shapes(input_shapes or [])
    if not path.exists():
        raise ModelError(f"{path}: no such model; pass a .keras or .h5 file or a SavedModel folder")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        return _saved_model(path, signature, given)
    if path.suffix.lower() in KERAS_SUFFIXES:
        return _keras(path, given)
    raise ModelError(f"{path}: unsupported model type '{path.suffix}'; pass a .keras or .h5 file or a SavedModel folder")


def _keras(path: Path, given) -> ModelSource:
    import keras
    import tensorflow as tf

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise ModelError(f"{path}: cannot be loaded as a Keras model ({first_line(exc)})") from exc
    inputs = list(model.inputs)
    specs = [
        InputSpec(_input_name(t, i), fix_shape(_input_name(t, i), list(t.shape), given, len(inputs) == 1))
        for i, t in enumerate(inputs)
    ]
    tensor_specs = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs]

    def call(*args):
        return model(list(args) if len(args) > 1 else args[0], training=False)

    function = tf.function(call, input_signature=tensor_specs).get_concrete_function()
    return ModelSource(path, "keras", specs, lambda: tf.lite.TFLiteConverter.from_concrete_functions([function]), model)


def _input_name(tensor, index: int) -> str:
    name = getattr(tensor, "name", None) or f"input_{index}"
    return name.split(":")[0].replace("/", "_")


def _saved_model(path: Path, signature: str, given) -> ModelSource:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        log.warning("tf.saved_model.load failed (%s); using the TF1 converter for %s", first_line(exc), path)
        return _saved_model_v1(path, signature, given)
    if signature not in loaded.signatures:
        raise UsageError(f"{path}: no signature '{signature}'; it has {sorted(loaded.signatures)} (pass --signature)")
    function = loaded.signatures[signature]
    _, kwargs = function.structured_input_signature
    names = sorted(kwargs)
    specs = [InputSpec(n, fix_shape(n, kwargs[n].shape.as_list(), given, len(names) == 1)) for n in names]
    for n in names:
        if kwargs[n].dtype != tf.float32:
            raise ModelError(f"{path}: input '{n}' is {kwargs[n].dtype.name}; edgeq calibrates float32 inputs only")
    tensor_specs = [tf.TensorSpec(s.shape, tf.float32, name=s.name) for s in specs]

    def call(*args):
        return function(**dict(zip(names, args)))

    fixed = tf.function(call, input_signature=tensor_specs).get_concrete_function()
    return ModelSource(path, "saved_model", specs, lambda: tf.lite.TFLiteConverter.from_concrete_functions([fixed], loaded), loaded)


def _saved_model_v1(path: Path, signature: str, given) -> ModelSource:
    """Older TF 2.x SavedModels that tf.saved_model.load rejects still convert with the TF1 converter."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    defs = proto.meta_graphs[0].signature_def
    if signature not in defs:
        raise UsageError(f"{path}: no signature '{signature}'; it has {sorted(defs)} (pass --signature)")
    inputs = defs[signature].inputs
    names = sorted(inputs)
    specs = []
    for n in names:
        dims = [None if d.size < 0 else d.size for d in inputs[n].tensor_shape.dim]
        specs.append(InputSpec(n, fix_shape(n, dims, given, len(names) == 1)))
    tensor_names = {inputs[s.name].name.split(":")[0]: list(s.shape) for s in specs}
    return ModelSource(
        path,
        "saved_model (TF1 converter)",
        specs,
        lambda: tf.compat.v1.lite.TFLiteConverter.from_saved_model(
            str(path), input_shapes=tensor_names, signature_key=signature
        ),
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
