"""The float reference: its float .tflite (converted once, kept in the cache), its signature, and the
preprocessing both models are fed with (the manifest's, the flags', what the model states).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgeq.core.errors import ModelError
from edgeq.core.fileio import sha256_of
from edgeq.data.normalization import Resolved, Statement, resolve
from edgeq.data.samples import InputSpec, Preprocessing
from edgeq.frameworks.onnx import ONNX_SUFFIX
from edgeq.frameworks.pytorch import PT2_SUFFIX
from edgeq.host.native import captured_native_stderr
from edgeq.records.manifest import Manifest
from edgeq.records.recipe import Recipe
from edgeq.run.litert import LiteRTRunner
from edgeq.tflite.metadata import read_metadata, stated_normalization
from edgeq.validation.options import ValidateOptions
from edgeq.validation.streaming import Spill, int8_runs
from edgeq.validation.sweep import samples_of


def preprocessing_for(manifest: Manifest | None, options: ValidateOptions, int8: LiteRTRunner) -> Resolved:
    """The flags given to validate over the manifest's preprocessing, else over the normalization
    the model's own metadata states (edgeq.data.normalization.resolve, as convert does)."""
    if manifest is not None:
        return resolve(options.preprocessing, manifest.recipe.preprocessing)
    stated = stated_normalization(read_metadata(int8.model.data))
    return resolve(options.preprocessing, stated=Statement(stated, "model metadata") if stated is not None else None)


def signature_of(recipe: Recipe | None, asked: str) -> str:
    """The signature the model was converted from (its manifest's recipe), else the one asked for."""
    return recipe.signatures[0] if recipe is not None and recipe.signatures != ("all",) else asked


def same_source(manifest: Manifest | None, reference: Path) -> bool:
    """Whether `reference` is the very file the model's manifest says it was converted from."""
    if manifest is None or not manifest.source.sha256 or not reference.exists():
        return False
    try:
        return manifest.source.sha256 == sha256_of(reference)
    except OSError:
        return False


def channels_last_of(manifest: Manifest | None) -> bool:
    return bool(manifest and manifest.recipe.channels_last)


def float_reference(
    reference: Path,
    int8: LiteRTRunner,
    options: ValidateOptions,
    manifest: Manifest | None,
    scratch: Path,
    data,
    pre: Preprocessing,
) -> tuple[Path, str, list[np.ndarray] | None]:
    """The float model as a .tflite, so both run in the same runtime on the same delegate, and what
    was described of it; with the INT8 model's raw outputs on every sample when the reference had to
    be converted, since those ran meanwhile.

    A Keras/SavedModel or PyTorch reference is converted to float TFLite in a child process
    (TensorFlow is never imported here), while the INT8 model runs on the samples.
    """
    if not reference.exists():
        raise ModelError(f"{reference}: no such reference model; pass the float .tflite, .keras/.h5 or SavedModel")
    if reference.suffix == ".tflite":
        return reference, "given", None
    cache, key = None, None
    if options.cache:
        from edgeq.core.cache import Cache, cache_key

        cache = Cache.open()
        key = cache_key(
            {
                "reference": sha256_of(reference),
                "suffix": reference.suffix.lower(),
                "signature": options.signature,
                "inputs": [(p.label, p.shape) for p in int8.input_ports],
                "channels_last": channels_last_of(manifest),
                "custom_objects": sha256_of(Path(options.custom_objects)) if options.custom_objects else None,
                "trust_model": options.trust_model,
            }
        )
        entry = cache.find("reference", key)
        if entry is not None:
            path = scratch / (reference.stem + "_float.tflite")
            path.write_bytes(entry.blobs["tflite"])
            return path, entry.header["described"] + " (kept in the conversion cache by an earlier run)", None
    if options.cluster:  # the cluster runs both sides: nothing to run here while the reference converts
        path, note = converted_reference(reference, int8, options, manifest, scratch)
        if cache is not None:
            cache.store("reference", key, {"described": note}, {"tflite": path.read_bytes()})
        return path, note, None
    with ThreadPoolExecutor(1) as pool:  # the thread waits on the converting child; this process runs the INT8 side
        converting = pool.submit(converted_reference, reference, int8, options, manifest, scratch)
        samples = samples_of(int8, data, options, pre)
        spill = Spill(scratch, len(samples))
        int8_runs(samples, int8, max(1, options.jobs - 1), spill)  # one core stays the converting child's: it is the longer
        path, note = converting.result()
    if cache is not None:
        cache.store("reference", key, {"described": note}, {"tflite": path.read_bytes()})
    return path, note, spill.stacked("int8_first") if spill.columns else None


def converted_reference(
    reference: Path, int8: LiteRTRunner, options: ValidateOptions, manifest: Manifest | None, scratch: Path
) -> tuple[Path, str]:
    if reference.suffix.lower() == ONNX_SUFFIX:
        from edgeq.frameworks.onnx import require_onnx, versions
        from edgeq.frameworks.onnx import to_float_tflite as onnx_to_float_tflite
        from edgeq.host.isolation import run_isolated

        require_onnx(f"an ONNX reference ({reference.name})")
        path = scratch / (reference.stem + "_float.tflite")
        path.write_bytes(
            run_isolated(
                quietly,
                onnx_to_float_tflite,
                reference,
                channels_last_of(manifest),
                manifest.options.input_shapes if manifest else (),
                what="onnx2torch and litert-torch",
            )
        )
        return path, f"converted from {reference.name} to float TFLite by onnx2torch and litert-torch ({versions()})"
    if reference.suffix.lower() == PT2_SUFFIX:
        from edgeq.frameworks.pytorch import require_torch, to_float_tflite, versions
        from edgeq.host.isolation import run_isolated

        require_torch(f"a PyTorch reference ({reference.name})")
        path = scratch / (reference.stem + "_float.tflite")
        path.write_bytes(
            run_isolated(
                quietly, to_float_tflite, reference, channels_last_of(manifest), options.trust_model, what="litert-torch"
            )
        )
        return path, f"converted from {reference.name} to float TFLite by litert-torch ({versions()})"
    from edgeq.frameworks.sources import KerasCode, require_tensorflow
    from edgeq.host.isolation import run_isolated

    require_tensorflow(f"a {'SavedModel' if reference.is_dir() else 'Keras'} reference ({reference.name})")
    shapes = [f"{p.label}=" + ",".join(map(str, p.shape)) for p in int8.input_ports]
    signature = signature_of(manifest.recipe if manifest else None, options.signature)
    path = scratch / (reference.stem + "_float.tflite")
    path.write_bytes(
        run_isolated(
            quietly,
            float_tflite_of,
            reference,
            signature,
            shapes if len(shapes) > 1 else [shapes[0].split("=", 1)[1]],
            KerasCode(options.custom_objects, options.trust_model),
        )
    )
    return path, f"converted from {reference.name} to float TFLite"


def float_tflite_of(reference: Path, signature: str, shapes: list[str], code) -> bytes:
    """The plain converter's float .tflite of a Keras model or SavedModel."""
    from edgeq.frameworks.sources import load_source

    return load_source(reference, (signature,), shapes, code).make_converter().convert()


def quietly(function, *args):
    """`function(*args)` with the chatter of TensorFlow, torch or litert-torch (stderr, and stdout,
    where litert-torch prints its progress) captured: run in the converting child, so the parent's
    own progress goes on meanwhile."""
    with captured_native_stderr(stdout=True):
        return function(*args)


def range_warnings(
    seen: dict[str, tuple[float, float]], specs: list[InputSpec], low: list[float], high: list[float]
) -> list[str]:
    """Validation data on another scale than the calibration data (e.g. 0..255 against 0..1)."""
    found = []
    for spec, lo, hi in zip(specs, low, high):
        ref = seen.get(spec.name)
        if not ref or len(ref) != 2:
            continue
        span = max(ref[1] - ref[0], 1e-6)
        if lo < ref[0] - 0.5 * span or hi > ref[1] + 0.5 * span:
            found.append(
                f"input '{spec.name}' spans [{lo:.4g}, {hi:.4g}] here but [{ref[0]:.4g}, {ref[1]:.4g}] in the "
                "calibration data: check --range/--mean/--std"
            )
    return found
