"""ONNX models in: an `.onnx` file becomes a PyTorch module (onnx2torch), then takes the PyTorch
route (litert-torch to a float .tflite, then calibration like every float .tflite). Validation
checks the float .tflite against the ONNX model itself, run by ONNX Runtime.

onnx2torch was chosen over onnx2tf by measurement on real files (the closing note of issue 38).
Everything here runs in a child process (`run_isolated`), as PyTorch sources do.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import ModelError, UsageError

ONNX_SUFFIX = ".onnx"
NEEDED = ("onnx", "onnx2torch", "onnxruntime", "torch", "litert_torch")  # torchvision: see _onnx2torch
INSTALL = "pip install 'edgeq[onnx]' (torch's CPU build first, as for 'edgeq[torch]')"
FLOAT = 1  # onnx.TensorProto.FLOAT
FALLBACK_OPSET = 17  # onnx2torch 1.5.15 has converters up to here (Constant-19 and others after it are missing)


def require_onnx(what: str) -> None:
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{what} needs {', '.join(missing)}, which this install lacks: {INSTALL}")


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _graph_inputs(model) -> list:
    initializers = {i.name for i in model.graph.initializer}  # old exporters list the weights as inputs too
    return [value for value in model.graph.input if value.name not in initializers]


def input_names(model) -> list[str]:
    return [value.name for value in _graph_inputs(model)]


def input_shapes(model, path: Path, given: tuple[str, ...] = ()) -> list[tuple[str, tuple[int, ...]]]:
    """Each graph input's name and shape in `model` (loaded from `path`); a symbolic first
    dimension (the batch) is 1, any other symbolic dimension comes from `given` (--input-shape,
    `1,1,64,160` or `NAME=1,1,64,160`), and is written into `model`'s input."""
    from edgeq.frameworks.sources import fix_shape, parse_input_shapes

    wanted, values, shapes = parse_input_shapes(list(given)), _graph_inputs(model), []
    for value in values:
        tensor = value.type.tensor_type
        if tensor.elem_type != FLOAT:
            raise ModelError(
                f"{path}: input '{value.name}' is not float32 (ONNX type {tensor.elem_type}); "
                "edgeq calibrates float32 inputs only"
            )
        dims = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None for dim in tensor.shape.dim]
        try:
            shape = fix_shape(value.name, dims, wanted, len(values) == 1)
        except UsageError as exc:
            symbolic = [d.dim_param or "?" for d in tensor.shape.dim if not d.HasField("dim_value")]
            raise UsageError(f"{path}: {exc} (symbolic: {', '.join(symbolic)})") from None
        for dim, size in zip(tensor.shape.dim, shape):
            dim.dim_value = size  # the file's symbolic dimensions fixed, as onnx2torch and the folding see them
        shapes.append((value.name, shape))
    return shapes


def _onnx2torch():
    """onnx2torch's convert. onnx2torch imports torchvision for two converters only
    (NonMaxSuppression, RoiAlign: ops no int8 TFLite graph takes). Where torchvision does not load
    beside this torch (PyPI's torchvision is built against torch's CUDA build: "operator
    torchvision::nms does not exist" beside the CPU build), a stand-in takes its place in this
    child process, and a model with those ops is refused by name."""
    import sys
    import types

    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

        def missing(*args, **kwargs):
            raise ModelError(
                "the model has NonMaxSuppression or RoiAlign, which need torchvision (it does not load beside "
                "this torch) and which no int8 TFLite graph takes; cut the model before them"
            )

        ops = types.ModuleType("torchvision.ops")
        for name in ("nms", "roi_align", "box_convert"):
            setattr(ops, name, missing)
        stand_in = types.ModuleType("torchvision")
        stand_in.__dict__["ops"] = ops
        sys.modules.update({"torchvision": stand_in, "torchvision.ops": ops})
    from onnx2torch import convert

    from edgeq.frameworks import onnx_pools, onnx_recurrent

    onnx_recurrent.register()  # LSTM and GRU, which onnx2torch lacks
    onnx_pools.register()  # padded AveragePool and LRN that lower to TFLite builtins
    return convert


def _modules(path: Path, given: tuple[str, ...] = ()) -> Iterator[tuple[str, Any, tuple, list[str], list[str]]]:
    """The ONNX graph as torch modules (onnx2torch), each way it converts: as given, with its
    constant subgraphs folded, at FALLBACK_OPSET; with zero inputs of its shapes (`given`: the
    --input-shape values fixing symbolic dimensions) and the names of its inputs and outputs. The
    caller takes the first that litert-torch exports (a shape computed at run time converts as
    given but exports only folded); none at all is a ModelError naming each failure."""
    import onnx
    import torch

    model = _load(path)
    shapes = input_shapes(model, path, given)  # a file edgeq cannot feed is refused before any conversion
    names = ([name for name, _ in shapes], [value.name for value in model.graph.output])
    convert = _onnx2torch()
    from edgeq.frameworks.onnx_fixed import fixed_operands

    model = _weights_constant(model)
    failures, converted = [], False
    for name, variant in (
        ("as given", lambda: model),
        ("constants folded", lambda: _folded(model)),
        (f"at opset {FALLBACK_OPSET}", lambda: onnx.version_converter.convert_version(_folded(model), FALLBACK_OPSET)),
    ):
        try:
            module = fixed_operands(convert(_outputs_by_identity(variant()))).eval()
        except ModelError:
            raise
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:160]}")
            continue
        converted = True
        yield name, module, tuple(torch.zeros(shape) for _, shape in shapes), *names
    if not converted:
        raise ModelError(f"{path}: onnx2torch cannot convert it ({'; '.join(failures)})")


def _weights_constant(model):
    """Initializers that IR 3 files also list as graph inputs (overridable there) made plain weights."""
    weights = {i.name for i in model.graph.initializer}
    graph_inputs = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(graph_inputs)
    model.ir_version = max(model.ir_version, 4)
    return model


def _outputs_by_identity(model):
    """Graph outputs that a node with several outputs writes, each read through an Identity:
    onnx2torch returns such a node's whole tuple for them (silero-vad's sequence graph gave
    its LSTM's (Y, Y_h, Y_c) for 'hn' and dropped 'cn')."""
    from onnx import helper

    wanted = {value.name for value in model.graph.output}
    for node in list(model.graph.node):
        if len(node.output) < 2:
            continue
        for i, name in enumerate(node.output):
            if name in wanted:
                node.output[i] = f"{name}__edgeq_output"
                model.graph.node.append(helper.make_node("Identity", [node.output[i]], [name]))
    return model


def _folded(model):
    """The graph with its constant subgraphs folded into weights (ONNX Runtime's basic, standard-op
    optimizations), for files whose weights come from nodes (ConstantOfShape, Constant) where
    onnx2torch wants initializers; shapes inferred, since onnx2torch reads ranks from them."""
    import tempfile

    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="edgeq-onnx-") as scratch:
        given, folded = Path(scratch) / "given.onnx", Path(scratch) / "folded.onnx"
        onnx.save(model, str(given))
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        onnxruntime.InferenceSession(str(given), options, providers=["CPUExecutionProvider"])
        return onnx.shape_inference.infer_shapes(onnx.load(str(folded)))


def _key(name: str) -> str:
    """An ONNX name as a signature key: litert-torch traces keyword inputs, so an identifier
    ("gpu_0/data_0" becomes gpu_0_data_0)."""
    import re

    key = re.sub(r"\W", "_", name)
    return key if key and not key[0].isdigit() else f"_{key}"


def to_float_tflite(path: Path, channels_last: bool, given: tuple[str, ...] = ()) -> bytes:
    """The ONNX model as a float .tflite (onnx2torch, then litert-torch), its signature keyed by
    the ONNX input and output names (as identifiers); `channels_last`: its 4-D inputs taken as NHWC;
    `given`: --input-shape values for its symbolic dimensions."""
    failures = []
    for variant, module, args, names_in, names_out in _modules(path, given):
        try:
            return _exported(module, args, names_in, names_out, channels_last)
        except Exception as exc:
            failures.append(f"{variant}: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}")
    raise ModelError(f"{path}: litert-torch cannot export onnx2torch's module ({'; '.join(failures)})")


def _exported(module, args: tuple, names_in: list[str], names_out: list[str], channels_last: bool) -> bytes:
    """litert-torch's float .tflite of onnx2torch's `module`, its signature keyed by the ONNX names."""
    import tempfile

    import litert_torch
    import torch

    inputs, outputs = [_key(name) for name in names_in], [_key(name) for name in names_out]

    class Named(torch.nn.Module):
        """The module with the ONNX graph's names: inputs by keyword, outputs as a dict."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, **feeds):
            given = [feeds[n].permute(0, 3, 1, 2) if channels_last and feeds[n].dim() == 4 else feeds[n] for n in inputs]
            got = self.inner(*given)
            return dict(zip(outputs, got if isinstance(got, (tuple, list)) else (got,)))

    # litert-torch names each op after its module path: the wrapper's is "onnx", not edgeq's own
    Named.__module__, Named.__qualname__ = "onnx", "graph"
    feeds = {n: a.permute(0, 2, 3, 1) if channels_last and a.dim() == 4 else a for n, a in zip(inputs, args)}
    with tempfile.TemporaryDirectory(prefix="edgeq-onnx-") as scratch:
        out = Path(scratch) / "float.tflite"
        litert_torch.convert(Named().eval(), (), feeds).export(str(out))
        return out.read_bytes()


def run_onnx(path: Path, samples: list[list[np.ndarray]], channels_last: bool) -> list[list[np.ndarray]]:
    """ONNX Runtime's outputs for `samples` (each a list of float arrays in the .tflite's layout)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = input_names(_load(path))
    outputs = []
    for sample in samples:
        feeds = {
            n: np.ascontiguousarray(a.transpose(0, 3, 1, 2) if channels_last and a.ndim == 4 else a)
            for n, a in zip(names, sample)
        }
        outputs.append([np.asarray(o, np.float32) for o in session.run(None, feeds)])
    return outputs


def versions() -> str:
    from importlib.metadata import version

    return f"onnx2torch {version('onnx2torch')}, torch {version('torch')}, litert-torch {version('litert-torch')}"
