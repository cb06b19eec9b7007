"""facenet-pytorch's ONet (MTCNN's output network, its shipped weights) from the wild, both ways
PyTorch users hand it over: exported with torch.onnx.export and with torch.export (.pt2); each
converted by `edgeq convert` and validated against its source (ONNX Runtime, PyTorch).
facenet-pytorch imports torchvision, whose PyPI build does not load beside torch's CPU build: a
stand-in for the two functions it imports is put in place first (ONet uses neither).

    .venv/bin/python benchmarks/trials/facenet_onet.py      (pip install --no-deps facenet-pytorch==2.6.0 first)
"""

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
W = ROOT / "benchmarks" / "work" / "trials" / "facenet"
W.mkdir(parents=True, exist_ok=True)
EDGEQ = str(Path(sys.executable).with_name("edgeq"))

try:
    import torchvision  # noqa: F401
except Exception:
    for name in [n for n in sys.modules if n.startswith("torchvision")]:
        del sys.modules[name]
    stand_in = {
        n: types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms")
    }
    stand_in["torchvision.ops.boxes"].batched_nms = None
    stand_in["torchvision.transforms"].functional = None
    sys.modules.update(stand_in)
    sys.modules["torchvision.transforms.functional"] = types.ModuleType("torchvision.transforms.functional")
from facenet_pytorch.models.mtcnn import ONet  # noqa: E402


def edgeq(*args) -> subprocess.CompletedProcess:
    return subprocess.run([EDGEQ, *map(str, args)], capture_output=True, text=True)


def main() -> None:
    onet = ONet(pretrained=True).eval()
    sample = torch.rand(1, 3, 48, 48)
    torch.onnx.export(
        onet, (sample,), str(W / "onet.onnx"), input_names=["image"], output_names=["box", "landmarks", "face"], dynamo=False
    )
    torch.export.save(torch.export.export(onet, (sample,)), str(W / "onet.pt2"))
    rng = np.random.default_rng(0)  # face-crop-like inputs in MTCNN's range, (pixel - 127.5) / 128
    crops = lambda n: ((rng.uniform(0, 255, (n, 1, 3, 48, 48)) - 127.5) / 128).astype(np.float32)  # noqa: E731
    np.save(W / "calib.npy", crops(64))
    np.save(W / "val.npy", crops(32))
    rows = []
    for source in ("onet.onnx", "onet.pt2"):
        out = W / f"{source.replace('.', '_')}_int8.tflite"
        convert = edgeq("convert", W / source, "--data", W / "calib.npy", "-o", out, "--force")
        row = {
            "source": source,
            "convert_exit": convert.returncode,
            "convert": next(
                (l for l in convert.stdout.splitlines() if "ops on int8 kernels" in l), convert.stderr.strip()[-300:]
            ),
        }
        if convert.returncode == 0:
            report = W / f"{source}.json"
            validate = edgeq("validate", out, "-r", W / source, "-d", W / "val.npy", "--runs", "5", "--json", report, "--force")
            result = json.loads(report.read_text())
            row.update(
                validate_exit=validate.returncode,
                source_check=result["source_check"]["reference"],
                source_check_db=result["source_check"]["worst_sqnr_db"],
                outputs={o["name"]: o["sqnr_db"] for o in result["outputs"]},
            )
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
