"""edgeq: trained TensorFlow/Keras model in, production INT8 TFLite model out, proven fit to ship.

The heavy entry points are imported lazily so that `import edgeq` (and `edgeq --help`) never
pulls in TensorFlow.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "convert", "inspect_model", "validate"]


def convert(*args: Any, **kwargs: Any) -> Any:
    """See edgeq.converter.convert."""
    from edgeq.converter import convert as _convert

    return _convert(*args, **kwargs)


def inspect_model(*args: Any, **kwargs: Any) -> Any:
    """See edgeq.inspection.inspect_model."""
    from edgeq.inspection import inspect_model as _inspect

    return _inspect(*args, **kwargs)


def validate(*args: Any, **kwargs: Any) -> Any:
    """See edgeq.validation.validate."""
    from edgeq.validation import validate as _validate

    return _validate(*args, **kwargs)
