"""TensorFlow's native converter modules, loaded by file path without importing TensorFlow.

The calibration wrapper links only TFLite's library; the converter API (its MLIR quantizer) links
TensorFlow's C++ libraries but not its Python package. Loaded this way, a calibration worker starts
in well under a second, and quantizing a calibrated model costs 0.2 s of loading instead of the
4 s of `import tensorflow`, with the same bytes as `tensorflow.lite.python.convert.mlir_quantize`.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from edgeq.core.errors import ConversionError

CALIBRATION_WRAPPER = "_pywrap_tensorflow_lite_calibration_wrapper"
CONVERTER_API = "_pywrap_converter_api"

# tensorflow/compiler/mlir/lite/types.proto, enum IODataType (checked against TensorFlow by the tests)
IO_DATA_TYPES = {"float32": 1, "uint8": 17, "int8": 18, "int16": 19}
QUANTIZED_INT8 = 9


def extension_file(folder: str, name: str) -> str:
    """The path of TensorFlow's extension module `name` in `folder` (relative to the package)."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or spec.origin is None:
        raise ConversionError("TensorFlow is not installed; pip install 'edgeq[convert]'")
    found = sorted((Path(spec.origin).parent / folder).glob(f"{name}*.so"))
    if not found:
        raise ConversionError(f"this TensorFlow has no {name} module in {folder}")
    return str(found[0])


def calibration_wrapper_file() -> str:
    return extension_file("lite/python", CALIBRATION_WRAPPER)


def load_module(name: str, file: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConversionError(f"cannot load TensorFlow's native module {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def converter_api() -> ModuleType:
    """The converter API module: TensorFlow's own when TensorFlow is imported already (one
    extension loaded once), else loaded by file path."""
    if "tensorflow" in sys.modules:
        from tensorflow.compiler.mlir.lite.python import _pywrap_converter_api

        return _pywrap_converter_api
    return load_module(CONVERTER_API, extension_file("compiler/mlir/lite/python", CONVERTER_API))


def mlir_quantize(
    calibrated: bytes,
    per_tensor: bool,
    io_type: str,
    numeric_verify: bool,
    denylisted_ops: list[str] | None,
    denylisted_nodes: list[str] | None,
) -> bytes:
    """`tensorflow.lite.python.convert.mlir_quantize` with the arguments the converter passes for int8."""
    io = IO_DATA_TYPES[io_type]
    return converter_api().ExperimentalMlirQuantizeModel(
        calibrated,
        per_tensor,
        False,
        QUANTIZED_INT8,
        io,
        io,
        numeric_verify,
        False,
        denylisted_ops,
        denylisted_nodes,
        False,
        False,
        "",
    )
