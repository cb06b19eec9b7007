"""PyTorch models in: a torch.export program (`.pt2`) becomes a float .tflite through litert-torch,
then it is calibrated, quantized, checked and described like every float .tflite. An `nn.Module`
with sample inputs (the Python API) is exported to a `.pt2` first.

torch and litert-torch are imported only here, only for PyTorch sources, and in a child process
(`run_isolated`), so a crash of either is one line.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeq.core.errors import ModelError, UsageError
from edgeq.frameworks.trust import checked_pt2

PT2_SUFFIX = ".pt2"
INSTALL = (
    "pip install 'edgeq[torch]' (for the CPU build of torch first: pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu)"
)


def require_torch(what: str) -> None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("litert_torch") is None:
        raise UsageError(f"{what} needs torch and litert-torch, which this install lacks: {INSTALL}")


def is_module(source: Any) -> bool:
    """Whether `source` is a torch.nn.Module, without importing torch when it is not loaded."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(source, torch.nn.Module)


def save_program(module: Any, sample_inputs: Any, path: Path) -> Path:
    """`module` exported with torch.export on `sample_inputs` (a tensor or a tuple of tensors)."""
    import torch

    if sample_inputs is None:
        raise UsageError("a PyTorch nn.Module needs sample_inputs=(tensor, ...) in the shapes it takes (batch 1)")
    args = tuple(sample_inputs) if isinstance(sample_inputs, (tuple, list)) else (sample_inputs,)
    torch.export.save(torch.export.export(module.eval(), args), str(path))
    return path


def _program(path: Path, trusted: bool) -> tuple[Any, tuple]:
    """The program's module and its example inputs (torch.export.save keeps them); the archive
    is checked before torch.export.load sees it, unless the user trusts it (edgeq.frameworks.trust)."""
    import io

    import torch

    data = checked_pt2(path, trusted)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:
        raise ModelError(
            f"{path}: not a torch.export program ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "save one with torch.export.save(torch.export.export(model, args), 'model.pt2')"
        ) from None
    if not program.example_inputs:
        raise ModelError(f"{path}: the program holds no example inputs; export it with torch.export.export(model, args)")
    module = program.module()
    for part in module.modules():  # an exported module refuses .eval(); its graph was traced as exported
        part.training = False
    return module, tuple(program.example_inputs[0])


def _images(args: tuple) -> list[int]:
    return [i for i, a in enumerate(args) if getattr(a, "dim", lambda: 0)() == 4]


def to_float_tflite(path: Path, channels_last: bool, trusted: bool = False) -> bytes:
    """The .pt2 as a float .tflite from litert-torch; `channels_last`: its 4-D inputs as NHWC
    (litert-torch's to_channel_last_io), so image folders and NHWC app code feed it."""
    import litert_torch

    module, args = _program(path, trusted)
    if channels_last:
        images = _images(args)
        module = litert_torch.to_channel_last_io(module, args=images)
        args = tuple(a.permute(0, 2, 3, 1) if i in images else a for i, a in enumerate(args))
    with tempfile.TemporaryDirectory(prefix="edgeq-torch-") as scratch:
        out = Path(scratch) / "float.tflite"
        litert_torch.convert(module, args).export(str(out))
        return out.read_bytes()


def run_program(
    path: Path, samples: list[list[np.ndarray]], channels_last: bool, trusted: bool = False
) -> list[list[np.ndarray]]:
    """PyTorch's own outputs for `samples` (each a list of float arrays in the .tflite's layout)."""
    import torch

    module, args = _program(path, trusted)
    images = _images(args) if channels_last else []
    outputs = []
    with torch.no_grad():
        for sample in samples:
            feeds = [
                torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2) if i in images else a))
                for i, a in enumerate(sample)
            ]
            got = module(*feeds)
            got = got if isinstance(got, (tuple, list)) else (got,)
            outputs.append([g.detach().numpy().astype(np.float32) for g in got])
    return outputs


def versions() -> str:
    from importlib.metadata import version

    return f"torch {version('torch')}, litert-torch {version('litert-torch')}"
