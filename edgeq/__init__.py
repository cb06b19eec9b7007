"""edgeq: trained TensorFlow/Keras model in, production INT8 TFLite model out, proven fit to ship.

The heavy entry points are imported lazily so that `import edgeq` (and `edgeq --help`) never
pulls in TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from edgeq.core.version import __version__

if TYPE_CHECKING:  # the types only: importing edgeq.api here would load it on `import edgeq`
    from pathlib import Path

    from edgeq.api import Converted, Data, SampleInputs, Source, Validated
    from edgeq.conversion.options import ConvertOptions, ConvertSettings
    from edgeq.tflite.summary import ModelSummary
    from edgeq.validation.options import ValidateOptions, ValidateSettings

__all__ = ["__version__", "convert", "inspect_model", "validate"]


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
    """Quantize a model (path, keras.Model, tf.Module, concrete function, nn.Module) on data (path,
    array, dict of arrays, iterable of samples); returns edgeq.api.Converted. See edgeq.api."""
    from edgeq.api import convert as _convert

    return _convert(source, data, output, options, force=force, sample_inputs=sample_inputs, **settings)


def inspect_model(path: str | Path) -> ModelSummary:
    """What is inside a .tflite, with the float size its manifest records. See edgeq.records.manifest_file."""
    from edgeq.records.manifest_file import inspect_model as _inspect

    return _inspect(path)


def validate(
    model: Source,
    reference: Source,
    data: Data,
    options: ValidateOptions | None = None,
    *,
    sample_inputs: SampleInputs = None,
    **settings: Unpack[ValidateSettings],
) -> Validated:
    """Compare an INT8 model (path or bytes) with its float reference; returns edgeq.api.Validated."""
    from edgeq.api import validate as _validate

    return _validate(model, reference, data, options, sample_inputs=sample_inputs, **settings)
