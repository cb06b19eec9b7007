"""edgeq convert: a float model plus real samples in, a quantized .tflite and its manifest out.

The parent process looks up the cache, runs the conversion child (edgeq.conversion.child) and
describes what it returns (edgeq.conversion.describe); nothing is written until `save`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from edgeq.conversion import child as conversion_child
from edgeq.conversion.calibration.calibrated import Calibrated, cache_keys
from edgeq.conversion.describe import described
from edgeq.conversion.options import ConvertOptions
from edgeq.conversion.result import QuantizedModel, SavedConversion, check_outputs
from edgeq.core.cache import Cache
from edgeq.core.errors import ConversionError, DataError, EdgeqError, InternalError, ModelError, UsageError
from edgeq.core.fileio import sha256_of
from edgeq.core.timing import Timings, phase
from edgeq.frameworks.onnx import ONNX_SUFFIX, require_onnx
from edgeq.frameworks.onnx import to_float_tflite as onnx_to_float_tflite
from edgeq.frameworks.pytorch import PT2_SUFFIX, require_torch, to_float_tflite
from edgeq.frameworks.sources import first_line, has_fake_quant, require_tensorflow
from edgeq.host.isolation import ChildError, run_isolated
from edgeq.host.native import captured_native_stderr
from edgeq.records.manifest import CacheUse, Manifest
from edgeq.tflite.metadata import Description

log = logging.getLogger(__name__)
EXPORTED = (PT2_SUFFIX, ONNX_SUFFIX)  # sources litert-torch exports to a float .tflite first


def convert(
    model: str | Path,
    output: str | Path,
    data: str | Path | None = None,
    options: ConvertOptions | None = None,
    quiet_native: bool = True,
    isolated: bool = True,
    force: bool = False,
    about: Description | None = None,
) -> SavedConversion:
    """Convert `model` and save it to `output` (.tflite) with its manifest beside it; the outputs
    are checked before the (long) conversion, and written together at the end."""
    model, output = Path(model), Path(output)
    inputs = [model] + ([Path(data)] if data is not None else [])
    check_outputs(output, force, inputs)
    return quantize_model(model, data, options, quiet_native, isolated, about).save(output, force, inputs)


def quantize_model(
    model: str | Path,
    data: str | Path | None = None,
    options: ConvertOptions | None = None,
    quiet_native: bool = True,
    isolated: bool = True,
    about: Description | None = None,
) -> QuantizedModel:
    """The quantized model of `model` calibrated on `data`, and its manifest; writes nothing.

    `isolated`: TensorFlow's native steps run in a child process, so a crash there is a
    ConversionError, not the end of the caller's process (and this process never imports TensorFlow).
    `about`: TFLite Model Metadata to embed (labels, name, ...); the tensors stay as quantized.
    """
    options = options or ConvertOptions()
    model, data = Path(model), Path(data) if data is not None else None
    _check_inputs(model, data, options)
    timings = Timings()
    with timings.recording():
        with phase("cache lookup"):
            source_sha256 = sha256_of(model)  # the manifest's too
            cache = Cache.open() if options.cache else None
            keys = cache_keys(model, source_sha256, data, options, about) if cache else None
            served = cache.find("conversion", keys.conversion) if cache else None
        if served is not None:
            return _served(served, timings, cache)
        entry = cache.find("calibration", keys.calibration) if cache and keys.calibration else None
        cached = Calibrated.from_entry(entry) if entry else None
        result, source_model = _converted(model, data, options, quiet_native, isolated, cached, timings)
        if cache and keys.calibration and result.calibrated is not None and (cached is None or cached.histograms is None):
            with phase("cache store"):
                exported = model.suffix.lower() in EXPORTED
                cache.store(
                    "calibration",
                    keys.calibration,
                    *replace(result.calibrated, source_model=source_model if exported else None).to_entry(),
                )
        with phase("checks"):
            quantized = described(result, model, source_sha256, data, options, about, source_model)
        use = CacheUse(
            "miss" if cache else "off",
            "off" if cache is None else "not reusable" if keys.calibration is None else "hit" if cached is not None else "miss",
            str(cache.folder) if cache else None,
        )
        manifest = replace(
            quantized.manifest, cache=use, warnings=quantized.manifest.warnings + tuple(cache.warnings if cache else ())
        )
        quantized = replace(quantized, manifest=manifest)
        if cache:
            with phase("cache store"):
                cache.store("conversion", keys.conversion, {"manifest": manifest.to_json()}, {"tflite": quantized.model})
    return replace(quantized, manifest=replace(quantized.manifest, timings=timings.rounded()))


def _check_inputs(model: Path, data: Path | None, options: ConvertOptions) -> None:
    mode = options.recipe.mode
    if mode.calibrates and data is None and not has_fake_quant(model):
        raise UsageError(f"--mode {mode} calibrates on real samples; pass --data DIR|FILE.npy|FILE.npz")
    if not model.exists():
        raise ModelError(f"{model}: no such model; pass a .keras or .h5 file or a SavedModel folder")
    if data is not None and not data.exists():
        raise DataError(f"{data}: no such file or folder; pass an image folder, a .npy or a .npz")
    require_tensorflow("edgeq convert")


def _converted(
    model: Path,
    data: Path | None,
    options: ConvertOptions,
    quiet_native: bool,
    isolated: bool,
    cached: Calibrated | None,
    timings: Timings,
):
    """The child's result (from the cached calibration, or from the source) and the source's float
    .tflite where there is one; the child's phases join `timings`."""
    with tempfile.TemporaryDirectory(prefix="edgeq-convert-") as scratch:
        if cached is not None:
            started = time.perf_counter()
            result = _in_child(conversion_child.requantize, model, quiet_native, isolated, cached, data, options)
            source_model = cached.source_model or (model.read_bytes() if model.suffix.lower() == ".tflite" else None)
        else:
            with phase("export (litert-torch, in its own child)") if model.suffix.lower() in EXPORTED else nullcontext():
                float_source = _float_source(model, options, quiet_native, isolated, Path(scratch))
            started = time.perf_counter()
            result = _in_child(conversion_child.run, model, quiet_native, isolated, float_source, data, options)
            source_model = float_source.read_bytes() if float_source.suffix.lower() == ".tflite" else None
    timings.merge(result.timings)
    timings.add("child process start", time.perf_counter() - started - sum(result.timings.values()))
    return result, source_model


def _served(entry, timings: Timings, cache: Cache) -> QuantizedModel:
    """A conversion done before with the same inputs and options: its bytes (checked against their
    hash when read) and manifest, which says it came from the cache and how long this run took."""
    manifest = Manifest.from_json(entry.header["manifest"], "conversion cache entry")
    manifest = replace(
        manifest,
        cache=replace(manifest.cache, conversion="hit", calibration="not needed"),
        timings=timings.rounded(),
        warnings=manifest.warnings + tuple(cache.warnings),
    )
    return QuantizedModel(entry.blobs["tflite"], manifest)


def _in_child(function, model: Path, quiet_native: bool, isolated: bool, *args, stdout: bool = False):
    """`function(*args)` in the crash-contained child: edgeq's own exceptions are internal errors
    (exit 3), TensorFlow's and LiteRT's are the converter's (exit 2). `stdout`: its fd 1 is kept off
    the terminal too unless -v (litert-torch prints its progress there)."""
    with captured_native_stderr(quiet_native, stdout=stdout and quiet_native) as native:
        try:
            run = run_isolated if isolated else (lambda function, *args: function(*args))
            return run(function, *args)
        except EdgeqError:
            raise
        except Exception as exc:
            if isinstance(exc, ChildError):
                log.debug("the conversion's traceback (in its child process):\n%s", exc.child_traceback)
                if exc.ours:
                    raise InternalError(f"internal error: {exc} (rerun with -v for the traceback)") from exc
            detail = native.last_error_line() or first_line(exc)
            raise ConversionError(f"the TFLite converter failed on {model}: {detail}") from exc


def _float_source(model: Path, options: ConvertOptions, quiet_native: bool, isolated: bool, scratch: Path) -> Path:
    """The file the conversion starts from: the model itself, or for a PyTorch program (.pt2) or an
    ONNX model the float .tflite litert-torch makes of it."""
    suffix = model.suffix.lower()
    if suffix not in EXPORTED:
        if options.recipe.channels_last:
            raise UsageError("--channels-last sets the I/O layout of a PyTorch (.pt2) or ONNX source; drop it for this model")
        return model
    if suffix == ONNX_SUFFIX:
        require_onnx(f"converting {model.name}")
        flat = _in_child(
            onnx_to_float_tflite,
            model,
            quiet_native,
            isolated,
            model,
            options.recipe.channels_last,
            options.input_shapes,
            stdout=True,
        )
    else:
        require_torch(f"converting {model.name}")
        flat = _in_child(
            to_float_tflite, model, quiet_native, isolated, model, options.recipe.channels_last, options.trust_model, stdout=True
        )
    path = scratch / (model.stem + ".tflite")
    path.write_bytes(flat)
    return path
