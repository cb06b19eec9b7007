"""ONNX in: a MobileNet-style PyTorch net exported with torch.onnx.export, converted through
onnx2torch and litert-torch to strict int8 with the ONNX names as its signature keys, and validated
against the ONNX file itself in ONNX Runtime."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from prerequisites import require

pytestmark = [pytest.mark.tf, pytest.mark.torch]


@pytest.fixture(scope="module")
def onnx_net(tmp_path_factory):
    """Conv-BN-ReLU6, depthwise, pointwise, pooled, reshaped, a linear head and SOFTMAX, exported
    by PyTorch's TorchScript exporter at its default opset (19: onnx2torch 1.5.15 lacks some of its
    op versions, so edgeq converts the graph to opset 17 first)."""
    require(
        all(importlib.util.find_spec(m) is not None for m in ("torch", "litert_torch", "onnx", "onnx2torch", "onnxruntime")),
        "needs torch, litert-torch, onnx, onnx2torch and onnxruntime: pip install 'edgeq[onnx]' (make test does)",
    )
    import torch
    from torch import nn

    class Flat(nn.Module):  # exported as Reshape with a constant shape, which onnx2torch reads at run time
        def forward(self, x):
            return x.reshape(1, -1)

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU6(),
        nn.Conv2d(8, 16, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        Flat(),
        nn.Linear(16, 5),
        nn.Softmax(dim=1),
    ).eval()
    folder = tmp_path_factory.mktemp("onnx")
    path = folder / "net.onnx"
    torch.onnx.export(
        net,
        (torch.rand(1, 3, 24, 24),),
        str(path),
        input_names=["image"],
        output_names=["probs"],
        dynamo=False,
        dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}},
    )
    rng = np.random.default_rng(0)
    np.save(folder / "calib.npy", rng.uniform(0, 1, (48, 1, 3, 24, 24)).astype(np.float32))
    np.save(folder / "val.npy", rng.uniform(0, 1, (24, 1, 3, 24, 24)).astype(np.float32))
    return path


def test_an_onnx_file_converts_to_strict_int8_and_validates_against_onnx_runtime(onnx_net, tmp_path, cli):
    from ai_edge_litert.interpreter import Interpreter

    folder = onnx_net.parent
    out = tmp_path / "net_int8.tflite"
    code, _, err = cli("convert", onnx_net, "--data", folder / "calib.npy", "-o", out)
    assert code == 0, err
    manifest = json.loads(out.with_name("net_int8.edgeq.json").read_text())
    assert manifest["source"]["kind"] == "onnx" and not manifest["float_ops"]
    assert any("onnx2torch" in note for note in manifest["source"]["rewrites"])
    assert Interpreter(str(out)).get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["probs"]}}
    code, _, err = cli("validate", out, "-r", onnx_net, "-d", folder / "val.npy", "--runs", "3", "--json", tmp_path / "v.json")
    assert code == 0, err
    result = json.loads((tmp_path / "v.json").read_text())
    check = result["source_check"]
    assert check["reference"] == "ONNX Runtime (net.onnx)" and check["samples"] == 24
    assert check["worst_sqnr_db"] > 60  # the float .tflite is the ONNX model to float rounding
    assert 20 < result["worst_sqnr_db"] < check["worst_sqnr_db"]  # the quantization's error, reported apart


def test_a_symbolic_dimension_is_fixed_by_input_shape_and_is_one_line_without_it(onnx_net, tmp_path, cli):
    import onnx

    model = onnx.load(str(onnx_net))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(model, str(dynamic))
    args = ["convert", dynamic, "--data", onnx_net.parent / "calib.npy", "-o", tmp_path / "m.tflite"]
    code, _, err = cli(*args)
    assert code == 2 and "--input-shape image=1,3,N," in err and "height" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.tflite").exists()
    code, _, err = cli(*args, "--input-shape", ",".join(str(d or 1) for d in shape))
    assert code == 0 and (tmp_path / "m.tflite").exists(), err


def _crnn(path, recurrent: str) -> None:
    """A CNN + bidirectional LSTM (or GRU) text recognizer as PyTorch exports it to ONNX (the
    TorchScript exporter, dynamo=False), its width symbolic: [1, 1, 16, width] in, [T, 1, C] out."""
    import torch

    torch.manual_seed(0)

    class Crnn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cnn = torch.nn.Sequential(
                torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.MaxPool2d((4, 1))
            )
            self.rnn = getattr(torch.nn, recurrent)(16, 12, bidirectional=True)
            self.fc = torch.nn.Linear(24, 7)

        def forward(self, x):
            features = self.cnn(x).flatten(1, 2).permute(2, 0, 1)  # [T, 1, 16]
            return torch.softmax(self.fc(self.rnn(features)[0]), -1)

    torch.onnx.export(
        Crnn().eval(),
        (torch.rand(1, 1, 16, 24),),
        str(path),
        input_names=["image"],
        output_names=["probs"],
        dynamic_axes={"image": {3: "width"}},
        dynamo=False,
        opset_version=17,
    )


@pytest.mark.parametrize("recurrent", ["LSTM", "GRU"])
def test_an_onnx_cnn_with_a_bidirectional_recurrent_layer_converts_and_keeps_its_steps(recurrent, tmp_path, cli):
    """onnx2torch has no LSTM or GRU converter: edgeq's unrolls them. The width is fixed with
    --input-shape; the INT8 model validates against ONNX Runtime with per-step agreement, its
    time-major [T, 1, C] output a sequence without --output-role."""
    import onnx

    model = tmp_path / "crnn.onnx"
    _crnn(model, recurrent)
    assert recurrent in {n.op_type for n in onnx.load(str(model)).graph.node}
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.random((24, 1, 16, 24), dtype=np.float32))
    np.save(tmp_path / "val.npy", rng.random((16, 1, 16, 24), dtype=np.float32))
    out = tmp_path / "crnn_int8.tflite"
    code, text, err = cli("convert", model, "-d", tmp_path / "calib.npy", "-o", out, "--input-shape", "1,1,16,24")
    assert code == 0 and "ops on int8 kernels; mode int8," in text, err
    code, text, err = cli("validate", out, "-r", model, "-d", tmp_path / "val.npy", "--runs", "2", "--json", "-")
    assert code == 0, err
    results = json.loads(text)
    (probs,) = results["outputs"]
    assert probs["role"] == "sequence" and "12 steps of 7 classes" in probs["role_from"]
    assert results["source_check"]["outputs"][0]["sqnr_db"] > 80  # the unrolled layer computes what ONNX Runtime does
    assert probs["sqnr_db"] > 20 and results["accuracy"]["agreement"] == probs["agreement"]  # judged per step
    assert probs["sequence_match"] is not None  # (an untrained net's near-uniform steps: the figures, not a bound)


def _converted_and_validated(cli, model: Path, calib: Path, *convert_args: str) -> tuple[Path, dict]:
    """`edgeq convert MODEL` on `calib`, then `edgeq validate` against the ONNX file on the same
    samples: the INT8 file and validate's results."""
    out = model.with_name(f"{model.stem}_int8.tflite")
    code, _, err = cli("convert", model, "-d", calib, "-o", out, *convert_args)
    assert code == 0, err
    code, text, err = cli("validate", out, "-r", model, "-d", calib, "--runs", "2", "--json", "-")
    assert code == 0, err
    return out, json.loads(text)


def _matches_onnx_runtime(results: dict, int8_db: float = 25) -> None:
    """The float .tflite is ONNX Runtime's function (exact or > 80 dB), the INT8 one near it."""
    (source,) = results["source_check"]["outputs"]
    assert (source["exact"] or source["sqnr_db"] > 80) and results["outputs"][0]["sqnr_db"] > int8_db


def test_a_slice_with_constant_bounds_exports(tmp_path, cli):
    """onnx2torch's Slice reads its bounds from tensors at run time (".numpy() is not supported for
    tensor subclasses" under torch.export: PaddleOCR's PP-OCRv4 recognizer); bounds that are weights
    become fixed slices, indexed by tuples."""
    import torch

    class Cropped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x))[:, 1:3, 2:-2, ::2]

    torch.onnx.export(Cropped().eval(), (torch.rand(1, 3, 16, 16),), str(tmp_path / "crop.onnx"), dynamo=False, opset_version=17)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "calib.npy", rng.random((16, 3, 16, 16), dtype=np.float32))
    _, results = _converted_and_validated(cli, tmp_path / "crop.onnx", tmp_path / "calib.npy")
    _matches_onnx_runtime(results)


def test_pads_axes_and_an_index_that_are_weights_export(tmp_path, cli):
    """silero-vad's graphs (silero-vad 6.2.3): a reflect Pad of a [1, N] input, Squeeze and Unsqueeze
    whose axes and a Gather whose one index are weights. onnx2torch reads them at run time (its Pad
    refuses reflect padding below 3-D; a 0-d index is .item() to litert-torch); fixed, they export."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(np.array([0, 4, 0, 4], np.int64), "pads"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array(0, np.int64), "first"),
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 1, 5)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["padded"], mode="reflect"),
        helper.make_node("Unsqueeze", ["padded", "axis1"], ["channel"]),
        helper.make_node("Conv", ["channel", "w"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Gather", ["relu", "first"], ["picked"], axis=0),
        helper.make_node("Unsqueeze", ["picked", "axis0"], ["batched"]),
        helper.make_node("Squeeze", ["batched", "axis0"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "padded",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 68])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "pad.onnx"))
    np.save(tmp_path / "calib.npy", rng.normal(0, 1, (16, 64)).astype(np.float32))
    _, results = _converted_and_validated(cli, tmp_path / "pad.onnx", tmp_path / "calib.npy")
    _matches_onnx_runtime(results)


def test_padded_average_pools_and_lrn_convert_to_builtins(tmp_path, cli):
    """The onnx package's zoo graphs (GoogLeNet, AlexNet, ShuffleNet): an AveragePool whose padding is
    not counted and an LRN became STABLEHLO_REDUCE_WINDOW (refused), a pool padded more at one end
    was refused by onnx2torch; now PAD, AVERAGE_POOL_2D and MUL, and a banded 1x1 convolution."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("LRN", ["relu"], ["lrn"], size=5, alpha=1e-2, beta=0.75, bias=1.0),
        helper.make_node("AveragePool", ["lrn"], ["pooled"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["pooled"], ["y"], kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "pools",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 7, 7])],
        [numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "pools.onnx"))
    np.save(tmp_path / "calib.npy", rng.random((16, 3, 16, 16), dtype=np.float32))
    out, results = _converted_and_validated(cli, tmp_path / "pools.onnx", tmp_path / "calib.npy")
    from edgeq.tflite.model import read_tflite

    ops = {op.type for op in read_tflite(out).operators}
    assert "AVERAGE_POOL_2D" in ops and not any(op.startswith("STABLEHLO") for op in ops), ops
    _matches_onnx_runtime(results)


def test_graph_outputs_from_a_node_with_several_outputs_keep_their_names(tmp_path, cli):
    """silero-vad's sequence graph returns its LSTM's Y_h and Y_c as 'hn' and 'cn': onnx2torch gave
    the LSTM's whole tuple for 'hn' and dropped 'cn' (outputs hn_0, hn_1, hn_2; hn_1 at 6.4 dB against
    ONNX Runtime). Each output by its name, matching ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    hidden, size = 5, 3
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * hidden, size)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, (1, 4 * hidden, hidden)).astype(np.float32), "R"),
    ]
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y", "hn", "cn"], hidden_size=hidden)
    graph = helper.make_graph(
        [node, helper.make_node("Relu", ["y"], ["steps"])],
        "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1, size])],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
            for n, s in (("steps", [4, 1, 1, hidden]), ("hn", [1, 1, hidden]), ("cn", [1, 1, hidden]))
        ],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(tmp_path / "lstm.onnx"))
    np.save(tmp_path / "calib.npy", rng.normal(0, 1, (16, 4, 1, size)).astype(np.float32))
    # (TensorFlow's quantizer leaves this tiny graph's last RESHAPE in float)
    _, results = _converted_and_validated(cli, tmp_path / "lstm.onnx", tmp_path / "calib.npy", "--mode", "int8-fallback")
    source = results["source_check"]["outputs"]
    assert sorted(o["name"] for o in source) == ["cn", "hn", "steps"]
    assert all(o["exact"] or o["sqnr_db"] > 80 for o in source), source
