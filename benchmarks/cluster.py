"""What a Ray cluster costs and buys for `edgeq validate --cluster`, measured here, and the time of a
50,000-sample validation on 1, 4 and 16 nodes of 2 cores projected from those measurements.

    .venv/bin/python benchmarks/cluster.py      (writes benchmarks/cluster.json)

Model: the demo's digits CNN (demo/train_digits.py), converted by edgeq; data: 2,000 samples, the
bundled digits (calibration and held-out folders) as arrays, repeated with a small jitter. Each
validate is a fresh `edgeq validate` process; `--cluster local` starts a Ray runtime of 2 CPUs for
the run. The projection:

    T(n) = start + N * d + N * w / (2 n) + ceil(N / SHARD) * t / (2 n)

with `start` Ray's start, `d` the driver's per-sample cost (reading, quantizing, scoring: serial),
`w` the workers' per-sample cost (one INT8 and one float invoke), `t` Ray's per-task cost, SHARD
the samples per task; 2 n workers on n nodes of 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "cluster"
EDGEQ = str(Path(sys.executable).with_name("edgeq"))
N = 2000
PROJECTED = 50_000
sys.path.insert(0, str(ROOT))


def timed(argv: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, **kw)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:3])}: {done.stderr[-500:]}")
    return time.perf_counter() - start, done


def model_and_data() -> tuple[Path, Path, Path]:
    from edgeq.data.samples import InputSpec, open_samples

    WORK.mkdir(parents=True, exist_ok=True)
    keras, int8, data = WORK / "digits.keras", WORK / "digits_int8.tflite", WORK / "digits_2000.npy"
    if not keras.exists():
        subprocess.run([sys.executable, str(ROOT / "demo" / "train_digits.py"), str(keras)], check=True, capture_output=True)
    if not int8.exists():
        timed(
            [
                EDGEQ,
                "convert",
                str(keras),
                "--data",
                str(ROOT / "representative_data" / "digits" / "calib"),
                "-o",
                str(int8),
                "--force",
            ]
        )
    images = np.concatenate(
        [
            np.concatenate(
                [s[0] for s in open_samples(ROOT / "representative_data" / "digits" / part, [InputSpec("image", (1, 8, 8, 1))])]
            )
            for part in ("calib", "val")
        ]
    )
    rng = np.random.default_rng(0)
    rows = images[rng.integers(0, len(images), N)]
    np.save(data, np.clip(rows + rng.normal(0, 0.02, rows.shape).astype(np.float32), 0, 1))
    return keras, int8, data


def ray_costs() -> dict[str, float]:
    """Ray's start (a local runtime of 2 CPUs, in a fresh process) and its per-task cost."""
    code = (
        "import time, ray\nt = time.perf_counter()\nray.init(num_cpus=2, include_dashboard=False, logging_level='ERROR')\n"
        "start = time.perf_counter() - t\n@ray.remote\ndef noop(x):\n    return x\nray.get([noop.remote(i) for i in range(20)])\n"
        "t = time.perf_counter()\nray.get([noop.remote(i) for i in range(500)])\nprint(start, (time.perf_counter() - t) / 500)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"start_s": round(float(out[0]), 3), "task_ms": round(float(out[1]) * 1000, 3)}


def per_sample(int8: Path, float_path: Path, data: Path) -> dict[str, float]:
    """The workers' cost `w` (INT8 and float invokes) and the driver's `d` (reading, quantizing,
    scoring), per sample, measured in this process on the same samples."""
    from edgeq.data.samples import InputSpec, open_samples
    from edgeq.run.litert import LiteRTRunner
    from edgeq.scoring.metrics import Scorer

    q, f = LiteRTRunner(int8), LiteRTRunner(float_path)
    samples = list(open_samples(data, [InputSpec(q.input_ports[0].label, q.input_ports[0].shape)]))
    start = time.perf_counter()
    runs = [(q.quantize_inputs(s), f.run(s)) for s in samples]
    raws = [q.run_raw(m) for m, _ in runs]
    w = (time.perf_counter() - start) / len(samples)
    scorer = Scorer([p.label for p in q.output_ports], ["classes"])
    start = time.perf_counter()
    for s, (_, want), raw in zip(open_samples(data, [InputSpec(q.input_ports[0].label, q.input_ports[0].shape)]), runs, raws):
        q.quantize_inputs(s)
        scorer.add(want, q.dequantize_outputs(raw), None)
    d = (time.perf_counter() - start) / len(samples)
    return {"w_ms": round(w * 1000, 4), "d_ms": round(d * 1000, 4)}


def main() -> None:
    from edgeq.validation.cluster import SHARD

    keras, int8, data = model_and_data()
    float_path = WORK / "digits_float.tflite"
    base = [EDGEQ, "validate", str(int8), "--reference", str(keras), "--data", str(data), "--runs", "20", "--force", "--json"]
    local_s, _ = timed([*base, str(WORK / "local.json")])  # also fills the reference cache
    local_s, _ = timed([*base, str(WORK / "local.json")])
    cluster_s, done = timed([*base, str(WORK / "cluster.json"), "--cluster", "local"])
    a, b = (json.loads((WORK / f"{n}.json").read_text()) for n in ("local", "cluster"))
    same = all(a[k] == b[k] for k in ("accuracy", "outputs", "worst_sqnr_db", "data"))
    from edgeq.frameworks.sources import load_source

    float_path.write_bytes(load_source(keras).make_converter().convert())
    costs, sample = ray_costs(), per_sample(int8, float_path, data)
    start, task = costs["start_s"], costs["task_ms"] / 1000
    d, w = sample["d_ms"] / 1000, sample["w_ms"] / 1000
    projected = {
        f"{n} node(s)": round(start + PROJECTED * d + PROJECTED * w / (2 * n) + math.ceil(PROJECTED / SHARD) * task / (2 * n), 1)
        for n in (1, 4, 16)
    }
    figures = {
        "machine": os.uname().machine,
        "samples": N,
        "shard": SHARD,
        "validate_local_s": round(local_s, 2),
        "validate_cluster_local_s": round(cluster_s, 2),
        "cluster_over_local": round(cluster_s / local_s, 2),
        "same_figures": same,
        "ray": costs,
        "per_sample": sample,
        "projection": {
            "samples": PROJECTED,
            "formula": "start + N*d + N*w/(2n) + ceil(N/SHARD)*t/(2n)",
            "seconds": projected,
            "note": "the sample loop only: the reference's conversion, latency timing and devices are not in it",
        },
    }
    (ROOT / "benchmarks" / "cluster.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
