"""edgeq: trained TensorFlow/Keras model in, production INT8 TFLite model out, proven fit to ship.

The heavy entry points are imported lazily so that `import edgeq` (and `edgeq --help`) never
pulls in TensorFlow.
"""

from typing import Any

from edgeq.version import __version__

__all__ = ["__version__", "convert", "inspect_model", "validate"]


def convert(source: Any, data: Any = None, output: Any = None, **options: Any) -> Any:
    """Quantize a model (path, keras.Model, tf.Module, concrete function) on data (path, array,
    dict of arrays, iterable of samples); returns edgeq.api.Converted. See edgeq.api."""
    from edgeq.api import convert as _convert

    return _convert(source, data, output, **options)


def inspect_model(*args: Any, **kwargs: Any) -> Any:
    """See edgeq.records.manifest_file.inspect_model."""
    from edgeq.records.manifest_file import inspect_model as _inspect

    return _inspect(*args, **kwargs)


def validate(model: Any, reference: Any, data: Any, **options: Any) -> Any:
    """Compare an INT8 model (path or bytes) with its float reference; returns edgeq.api.Validated."""
    from edgeq.api import validate as _validate

    return _validate(model, reference, data, **options)
