"""ONNX models in: an `.onnx` file becomes a PyTorch module (onnx2torch), then takes the PyTorch
route (litert-torch to a float .tflite, then calibration like every float .tflite). Validation
checks the float .tflite against the ONNX model itself, run by ONNX Runtime.

onnx2torch was chosen over onnx2tf by measurement on real files (the closing note of issue 38).
Everything here runs in a child process (`run_isolated`), as PyTorch sources do.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.errors import ModelError, UsageError

ONNX_SUFFIX = ".onnx"
NEEDED = ("onnx", "onnx2torch", "onnxruntime", "torch", "litert_torch")
INSTALL = "pip install 'edgeq[onnx]' (torch's CPU build first, as for 'edgeq[torch]')"
FLOAT = 1  # onnx.TensorProto.FLOAT


def require_onnx(what: str) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{what} needs {', '.join(missing)}, which this install lacks: {INSTALL}")


def input_shapes(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """Each graph input's name and shape; a symbolic first dimension (the batch) is 1, any other
    symbolic dimension is the user's to fix in the file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    initializers = {i.name for i in model.graph.initializer}
    shapes = []
    for value in model.graph.input:
        if value.name in initializers:  # old exporters list the weights as inputs too
            continue
        tensor = value.type.tensor_type
        if tensor.elem_type != FLOAT:
            raise ModelError(f"{path}: input '{value.name}' is not float32 (ONNX type {tensor.elem_type}); "
                             "edgeq calibrates float32 inputs only")
        dims = []
        for axis, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                dims.append(dim.dim_value)
            elif axis == 0:
                dims.append(1)
            else:
                raise ModelError(f"{path}: input '{value.name}' has a symbolic dimension '{dim.dim_param or '?'}' at axis "
                                 f"{axis}; fix it in the file (e.g. onnxruntime.tools.make_dynamic_shape_fixed) and convert again")
        shapes.append((value.name, tuple(dims)))
    return shapes


def _module(path: Path) -> tuple[Any, tuple]:
    """The ONNX graph as a torch module (onnx2torch), and zero inputs of its shapes."""
    import onnx
    import torch
    from onnx2torch import convert

    try:
        module = convert(onnx.load(str(path)))
    except Exception as exc:  # noqa: BLE001 - an op onnx2torch does not take
        raise ModelError(f"{path}: onnx2torch cannot convert it ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    return module.eval(), tuple(torch.zeros(shape) for _, shape in input_shapes(path))


def to_float_tflite(path: Path, channels_last: bool) -> bytes:
    """The ONNX model as a float .tflite: onnx2torch, then torch.export and litert-torch."""
    import torch

    from edgeq.conversion.pytorch import module_to_tflite

    module, args = _module(path)
    try:
        program = torch.export.export(module, args)
    except Exception as exc:  # noqa: BLE001 - the module onnx2torch built does not trace
        raise ModelError(f"{path}: torch.export cannot trace onnx2torch's module ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:300]})") from None
    return module_to_tflite(program.module(), args, channels_last)


def run_onnx(path: Path, samples: list[list[np.ndarray]], channels_last: bool) -> list[list[np.ndarray]]:
    """ONNX Runtime's outputs for `samples` (each a list of float arrays in the .tflite's layout)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [name for name, _ in input_shapes(path)]
    outputs = []
    for sample in samples:
        feeds = {n: np.ascontiguousarray(a.transpose(0, 3, 1, 2) if channels_last and a.ndim == 4 else a)
                 for n, a in zip(names, sample)}
        outputs.append([np.asarray(o, np.float32) for o in session.run(None, feeds)])
    return outputs


def versions() -> str:
    from importlib.metadata import version

    return f"onnx2torch {version('onnx2torch')}, torch {version('torch')}, litert-torch {version('litert-torch')}"
