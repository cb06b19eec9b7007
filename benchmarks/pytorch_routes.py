"""PyTorch to int8 TFLite two ways, on the same model and data, measured in one run:
edgeq (litert-torch float export, then TensorFlow's calibration and quantizer) against
litert-torch's own PT2E route (torchao prepare_pt2e / convert_pt2e, then litert-torch).

    python benchmarks/pytorch_routes.py        (needs the torch extra; facenet-pytorch for ONet)

Models: facenet-pytorch 2.6.0's ONet with the weights it ships (install it with --no-deps: it
pins an old torch; its ONet needs none of its other code), and a small conv net. Writes
benchmarks/pytorch_routes.json. Accuracy is each int8 file against PyTorch itself on held-out
samples: SQNR per output and, for the face probability, agreement of the argmax.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent


def onet():
    """facenet-pytorch's ONet architecture, loading the state dict its wheel ships."""
    import torch
    from torch import nn

    class ONet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1, self.pool1 = nn.Conv2d(3, 32, 3), nn.PReLU(32), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2, self.pool2 = nn.Conv2d(32, 64, 3), nn.PReLU(64), nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3, self.pool3 = nn.Conv2d(64, 64, 3), nn.PReLU(64), nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.softmax6_1 = nn.Linear(256, 2), nn.Softmax(dim=1)
            self.dense6_2, self.dense6_3 = nn.Linear(256, 4), nn.Linear(256, 10)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    spec = importlib.util.find_spec("facenet_pytorch")
    model = ONet()
    model.load_state_dict(torch.load(Path(spec.origin).parent / "data" / "onet.pt"))
    return model.eval(), 48


def small_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
        nn.Softmax(dim=1),
    )
    return model.eval(), 16


def samples(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth colour patterns scaled like MTCNN's input ((pixel - 127.5) / 128), NCHW."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = [
        [np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y) + rng.uniform(0, 6)) * 0.94 for _ in range(3)]
        for _ in range(n)
    ]
    return np.asarray(images, np.float32)


def pt2e(model, calib: np.ndarray) -> bytes:
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    args = (torch.from_numpy(calib[:1]),)
    graph = torch.export.export(model, args).module()
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
    for row in calib:
        graph(torch.from_numpy(row[None]))
    graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "pt2e.tflite"
        litert_torch.convert(graph, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)).export(str(path))
        return path.read_bytes()


def score(model_bytes: bytes, torch_model, val: np.ndarray) -> dict:
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from edgeq.scoring.metrics import Scorer
    from edgeq.tflite.model import parse_tflite
    from edgeq.tflite.summary import summarize

    interpreter = Interpreter(model_content=model_bytes)
    interpreter.allocate_tensors()
    (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()
    with torch.no_grad():
        first = torch_model(torch.from_numpy(val[:1]))
    first = first if isinstance(first, tuple) else (first,)
    roles = ["classes" if r.shape[-1] == 2 or len(first) == 1 else "values" for r in first]
    scorer = Scorer([f"output_{i}" for i in range(len(first))], roles)
    order = None
    for row in val:
        with torch.no_grad():
            want = torch_model(torch.from_numpy(row[None]))
        want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        scale, zero = inp["quantization"]
        feed = row[None] if scale == 0 else np.clip(np.round(row[None] / scale + zero), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], feed)
        interpreter.invoke()
        got = []
        for d in outs:
            raw = interpreter.get_tensor(d["index"])
            s, z = d["quantization"]
            got.append(raw.astype(np.float32) if s == 0 else (raw.astype(np.float32) - z) * s)
        if order is None:  # the file may list outputs in another order: pair by shape, then by position
            order = _pairs(want, got)
        scorer.add(want, [got[j] for j in order], None)
    result = scorer.result()
    summary = summarize(parse_tflite(model_bytes))
    return {
        "sqnr_db": [o["sqnr_db"] for o in result["outputs"]],
        "agreement": result["accuracy"]["agreement"],
        "int8_ops": f"{summary.ops_int8} of {summary.ops_total}",
        "float_ops": sorted({o["type"] for o in summary.float_ops}),
        "bytes": len(model_bytes),
    }


def _pairs(want: list[np.ndarray], got: list[np.ndarray]) -> list[int]:
    free = list(range(len(got)))
    order = []
    for w in want:
        j = next(j for j in free if got[j].shape == w.shape)
        free.remove(j)
        order.append(j)
    return order


def main() -> None:
    import edgeq

    figures = {}
    builders = {"small conv net": small_net}
    if importlib.util.find_spec("facenet_pytorch"):
        builders["facenet-pytorch ONet (shipped weights)"] = onet
    for name, build in builders.items():
        model, size = build()
        calib, val = samples(64, size, 0), samples(32, size, 1)
        start = time.perf_counter()
        ours = edgeq.convert(
            model,
            calib,
            sample_inputs=(__import__("torch").from_numpy(calib[:1]),),
            samples=64,
            mode="int8-fallback",
            io="float32",
        )
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = pt2e(model, calib)
        theirs_s = time.perf_counter() - start
        figures[name] = {
            "edgeq": {**score(ours.model, model, val), "seconds": round(ours_s, 1)},
            "litert-torch PT2E": {**score(theirs, model, val), "seconds": round(theirs_s, 1)},
        }
        print(name, json.dumps(figures[name], indent=1))
    (ROOT / "benchmarks" / "pytorch_routes.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
