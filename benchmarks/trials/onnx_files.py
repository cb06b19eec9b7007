"""ONNX files packages ship, through `edgeq convert` and `edgeq validate --reference FILE.onnx`:
the `onnx` package's model-zoo graphs (onnx/backend/test/data/light: AlexNet, DenseNet-121,
Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512, with light weights), fed
uniform random NCHW arrays. Prints, per file, the exit codes, the op census line, the source check
against ONNX Runtime and the INT8 output's SQNR.

    .venv/bin/python benchmarks/trials/onnx_files.py      (figures in the closing note of issue 38)
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[2]
W = ROOT / "benchmarks" / "work" / "trials" / "onnx"
W.mkdir(parents=True, exist_ok=True)
EDGEQ = str(Path(sys.executable).with_name("edgeq"))


def shape_of(path: Path) -> tuple[int, ...]:
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    value = next(v for v in graph.input if v.name not in weights)
    return tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)


def main() -> None:
    light = Path(importlib.util.find_spec("onnx").origin).parent / "backend" / "test" / "data" / "light"
    rows = []
    for path in sorted(light.glob("*.onnx")):
        shape = shape_of(path)
        rng = np.random.default_rng(0)
        calib, val = W / f"{path.stem}_calib.npy", W / f"{path.stem}_val.npy"
        np.save(calib, rng.uniform(0, 1, (32, *shape)).astype(np.float32))
        np.save(val, rng.uniform(0, 1, (16, *shape)).astype(np.float32))
        out, report = W / f"{path.stem}_int8.tflite", W / f"{path.stem}.json"
        convert = subprocess.run(
            [EDGEQ, "convert", path, "--data", calib, "-o", out, "--force", "--samples", "32"], capture_output=True, text=True
        )
        row = {
            "file": path.name,
            "input": list(shape),
            "convert_exit": convert.returncode,
            "convert": next(
                (l for l in convert.stdout.splitlines() if "ops on int8 kernels" in l), convert.stderr.strip()[-300:]
            ),
        }
        if convert.returncode == 0:
            validate = subprocess.run(
                [EDGEQ, "validate", out, "-r", path, "-d", val, "--runs", "3", "--json", report, "--force"],
                capture_output=True,
                text=True,
            )
            row["validate_exit"] = validate.returncode
            if report.exists():
                result = json.loads(report.read_text())
                row["source_check_db"] = result["source_check"]["worst_sqnr_db"] if result.get("source_check") else None
                row["int8_worst_sqnr_db"] = result["worst_sqnr_db"]
            else:
                row["validate"] = validate.stderr.strip()[-300:]
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
