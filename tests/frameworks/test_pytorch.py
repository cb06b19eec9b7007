"""PyTorch in, validated against PyTorch: an nn.Module (Python API) and a torch.export program
(.pt2, the command line) through litert-torch, then edgeq's calibration, strict int8, manifest."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from prerequisites import require

pytestmark = [pytest.mark.tf, pytest.mark.torch]


@pytest.fixture(scope="module")
def torch_net():
    """A small conv net with a linear head, as a PyTorch user writes one (NCHW, softmax out)."""
    require(
        importlib.util.find_spec("torch") is not None and importlib.util.find_spec("litert_torch") is not None,
        "needs torch and litert-torch: pip install torch==2.13.0 litert-torch==0.10.0 (make test does)",
    )
    import torch
    from torch import nn

    torch.manual_seed(0)

    class SmallNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 16, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            return torch.softmax(self.head(torch.flatten(self.features(x), 1)), dim=1)

    return SmallNet().eval(), torch.rand(1, 3, 16, 16)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    from helpers import images as _images

    folder = tmp_path_factory.mktemp("torch_images")
    return _images(folder / "calib", 32, 16, 0), _images(folder / "val", 16, 16, 1)


def _weights(path: Path) -> list[str]:
    from edgeq.tflite.model import read_tflite

    model = read_tflite(path)
    return [model.tensors[op.inputs[1]].dtype for op in model.operators if op.type in ("CONV_2D", "FULLY_CONNECTED")]


def test_an_nn_module_converts_to_strict_int8_and_validates_against_itself(torch_net, images, tmp_path):
    import edgeq

    module, sample = torch_net
    calib, val = images
    converted = edgeq.convert(module, calib, tmp_path / "net_int8.tflite", sample_inputs=(sample,), samples=32)
    assert _weights(converted.output) == ["int8"] * 3 and not converted.manifest.float_ops
    assert converted.manifest.source.kind == "pytorch"
    assert any("litert-torch" in note for note in converted.manifest.source.rewrites)
    report = edgeq.validate(converted.output, module, val, sample_inputs=(sample,), runs=3, warmup=1)
    check = report.results.source_check
    assert check is not None and check.reference.startswith("PyTorch") and check.samples == 16
    assert check.worst_sqnr_db > 40  # float .tflite vs PyTorch: the conversion is near exact
    assert 15 < report.worst_sqnr_db < check.worst_sqnr_db  # INT8 vs float: the quantization's error, reported apart
    assert report.results.accuracy.output == "output_0"  # SOFTMAX: a classes output
    assert "fed as NCHW" in report.results.data  # the image folder in PyTorch's layout


def test_a_pt2_file_converts_from_the_command_line_with_channels_last_io(torch_net, images, tmp_path, cli, capfd):
    import torch

    module, sample = torch_net
    calib, val = images
    torch.export.save(torch.export.export(module, (sample,)), str(tmp_path / "net.pt2"))
    out = tmp_path / "net_int8.tflite"
    code, text, err = cli(
        "convert", str(tmp_path / "net.pt2"), "--data", str(calib), "--output", str(out), "--samples", "32", "--channels-last"
    )
    assert code == 0, err
    assert "LiteRT-Torch Convert" not in capfd.readouterr().out  # litert-torch's own progress stays off the terminal
    manifest = json.loads((tmp_path / "net_int8.edgeq.json").read_text())
    assert manifest["recipe"]["channels_last"] and manifest["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert _weights(out) == ["int8"] * 3
    code, text, err = cli(
        "validate",
        str(out),
        "--reference",
        str(tmp_path / "net.pt2"),
        "--data",
        str(val),
        "--runs",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["source_check"]["worst_sqnr_db"] > 40 and results["worst_sqnr_db"] > 15
    assert "the float .tflite against PyTorch (net.pt2)" in text


def test_channels_last_is_for_pytorch_sources_only(cnn_keras, digits_calib, tmp_path, cli):
    code, _, err = cli(
        "convert", str(cnn_keras), "--data", str(digits_calib), "--output", str(tmp_path / "m.tflite"), "--channels-last"
    )
    assert code == 2 and "--channels-last" in err
