"""The Python API for build scripts: a model and data as the script holds them in, typed results out.

    import edgeq
    result = edgeq.convert(keras_model, calibration_array)      # bytes LiteRT runs, manifest, warnings
    report = edgeq.validate(result.model, keras_model, held_out)  # passed, SQNR, accuracy, latency

Paths work everywhere; in-memory sources (a keras.Model, a tf.Module with one signature, a concrete
function) are exported to a scratch SavedModel, a PyTorch nn.Module (with `sample_inputs=`) to a
torch.export `.pt2`, and arrays to a scratch .npy/.npz, so that the
conversion runs exactly as the command line's does (in its own process, crash-contained).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, Unpack

import numpy as np
from numpy.typing import NDArray

from edgeq.core.errors import DataError, UsageError
from edgeq.core.fileio import save_arrays
from edgeq.records.manifest import Manifest
from edgeq.validation.results import ValidationResult

if TYPE_CHECKING:
    from edgeq.conversion.options import ConvertOptions, ConvertSettings
    from edgeq.validation.options import ValidateOptions, ValidateSettings


# What the API takes, checked at run time (a type checker cannot name them all):
# a model: a path (str or Path), .tflite bytes, or one in memory (keras.Model, tf.Module, a concrete
# function, torch.nn.Module with sample_inputs)
Source: TypeAlias = object
# samples: a path, an array, a dict of arrays, or an iterable of samples (arrays or dicts of arrays)
Data: TypeAlias = object
# a PyTorch module's example inputs, as torch.export takes them
SampleInputs: TypeAlias = "tuple[object, ...] | None"


@dataclass(frozen=True)
class Converted:
    model: bytes  # the .tflite, ready for LiteRT
    manifest: Manifest  # what `OUT.edgeq.json` holds: interface, quantization, recipe, provenance
    warnings: list[str]
    output: Path | None  # where it was written, if an output was given
    budget_met: bool | None = None


@dataclass(frozen=True)
class Validated:
    passed: bool
    worst_sqnr_db: float | None
    agreement: float | None
    top1_drop_pts: float | None
    speedup: float | None
    warnings: list[str]
    results: ValidationResult = field(repr=False)  # everything; .to_json() is the results JSON `edgeq report` reads


def convert(
    source: Source,
    data: Data = None,
    output: str | Path | None = None,
    options: ConvertOptions | None = None,
    *,
    force: bool = False,
    sample_inputs: SampleInputs = None,
    **settings: Unpack[ConvertSettings],
) -> Converted:
    """Quantize `source` (path, keras.Model, tf.Module, concrete function, PyTorch nn.Module with
    `sample_inputs`) calibrated on `data` (path, array, dict of arrays, or iterable of samples).
    The settings are edgeq convert's, as `options` or as keywords (mode="int8", min_sqnr=30, ...)."""
    from edgeq.conversion.converter import convert as convert_and_save
    from edgeq.conversion.converter import quantize_model
    from edgeq.conversion.options import ConvertOptions

    if options is not None and settings:
        raise UsageError(f"give the settings as options= or as keywords ({next(iter(settings))}=...), not both")
    options = options or ConvertOptions.of(**settings)
    with tempfile.TemporaryDirectory(prefix="edgeq-api-") as scratch:
        folder = Path(scratch)
        source_path, data_path = _as_path(source, folder, sample_inputs), _data_path(data, folder)
        if output is not None:
            saved = convert_and_save(source_path, output, data_path, options, force=force)
            return Converted(saved.output.read_bytes(), saved.manifest, list(saved.warnings), saved.output, saved.budget_met)
        result = quantize_model(source_path, data_path, options)
        return Converted(result.model, result.manifest, list(result.manifest.warnings), None, result.budget_met)


def validate(
    model: Source,
    reference: Source,
    data: Data,
    options: ValidateOptions | None = None,
    *,
    sample_inputs: SampleInputs = None,
    **settings: Unpack[ValidateSettings],
) -> Validated:
    """Compare `model` (path or .tflite bytes) with `reference` on `data`. The settings are edgeq
    validate's, as `options` or as keywords (runs=20, min_sqnr=30, ...)."""
    from edgeq.validation.compare import validate as run
    from edgeq.validation.options import ValidateOptions

    if options is not None and settings:
        raise UsageError(f"give the settings as options= or as keywords ({next(iter(settings))}=...), not both")
    options = options or ValidateOptions.of(**settings)
    with tempfile.TemporaryDirectory(prefix="edgeq-api-") as scratch:
        folder = Path(scratch)
        if isinstance(model, (bytes, bytearray)):
            (folder / "model.tflite").write_bytes(model)
            model = folder / "model.tflite"
        if not isinstance(model, (str, Path)):
            raise UsageError(f"cannot validate a {type(model).__name__}: pass the INT8 model's path or its .tflite bytes")
        samples = _data_path(data, folder)
        if samples is None:
            raise UsageError("validate needs data: a path, an array, a dict of arrays or an iterable of samples")
        results = run(model, _as_path(reference, folder, sample_inputs), samples, options)
    return Validated(
        results.passed,
        results.worst_sqnr_db,
        results.accuracy.agreement,
        results.accuracy.top1_drop_pts,
        results.latency.speedup,
        list(results.warnings),
        results,
    )


def _as_path(source: Source, folder: Path, sample_inputs: SampleInputs = None) -> Path:
    from edgeq.frameworks.pytorch import is_module, save_program

    if isinstance(source, (str, Path)):
        return Path(source)
    if is_module(source):  # a PyTorch nn.Module: exported as the CLI's .pt2 input
        return save_program(source, sample_inputs, folder / "source.pt2")
    if isinstance(source, (bytes, bytearray)):
        (folder / "source.tflite").write_bytes(source)
        return folder / "source.tflite"
    from edgeq.frameworks.sources import export_in_memory

    return export_in_memory(source, folder / "source_saved_model")


def _data_path(data: Data, folder: Path) -> Path | None:
    if data is None or isinstance(data, (str, Path)):
        return None if data is None else Path(data)
    if isinstance(data, np.ndarray):
        np.save(folder / "data.npy", data)
        return folder / "data.npy"
    if isinstance(data, Mapping):
        save_arrays(folder / "data.npz", {str(k): np.asarray(v) for k, v in data.items()})
        return folder / "data.npz"
    if isinstance(data, Iterable):  # samples: arrays (one input) or dicts of arrays, batch 1 or not
        samples = list(data)
        if not samples:
            raise DataError("the data iterable gave no samples")
        if isinstance(samples[0], Mapping):
            keys = list(samples[0])
            return _data_path({k: np.concatenate([_batched(s[k]) for s in samples]) for k in keys}, folder)
        return _data_path(np.concatenate([_batched(s) for s in samples]), folder)
    raise UsageError(
        f"cannot use a {type(data).__name__} as data: pass a path, an array, a dict of arrays or an iterable of samples"
    )


def _batched(sample: object) -> NDArray[np.float32]:
    array = np.asarray(sample, np.float32)
    return array if array.ndim and array.shape[0] == 1 else array[None]
