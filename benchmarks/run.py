"""edgeq benchmarks: figures measured in one run on this machine, written to benchmarks/results.json
and benchmarks/results.md.

    python benchmarks/run.py [--quick]

Every conversion runs `edgeq convert` in its own process so peak memory (ru_maxrss) is its own.
Models are Keras applications with weights=None (nothing is downloaded); images are the bundled
digits, upscaled to RGB, so every figure is reproducible offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
EDGEQ = [sys.executable, "-m", "edgeq.cli"]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def make_images(folder: Path, count: int, size: int) -> Path:
    """`count` RGB PNGs of `size`x`size`, made from the bundled digits (tinted, shifted, flipped)."""
    if folder.is_dir() and len(list(folder.glob("*.png"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    digits = sorted((ROOT / "representative_data" / "digits").rglob("*.png"))
    rng = np.random.default_rng(0)
    for i in range(count):
        gray = np.asarray(Image.open(digits[i % len(digits)]).resize((size, size), Image.Resampling.BILINEAR), np.float32)
        tint = rng.uniform(0.3, 1.0, 3)
        rgb = np.clip(gray[..., None] * tint + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
        rgb = np.roll(rgb, rng.integers(-size // 8, size // 8, 2), axis=(0, 1))
        Image.fromarray(rgb[:, ::-1] if i % 2 else rgb).save(folder / f"{i:05d}.png")
    return folder


def make_model(name: str, size: int, alpha: float = 1.0) -> Path:
    path = WORK / f"{name}_{size}_{alpha}.keras"
    if not path.exists():
        code = (
            "import keras, sys; keras.utils.set_random_seed(0); "
            f"keras.applications.{name}(weights=None, input_shape=({size}, {size}, 3), alpha={alpha}).save(sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return path


def run_convert(model: Path, data: Path, out: Path, samples: int) -> dict:
    """One `edgeq convert` process: wall time and its own peak RSS."""
    script = (
        "import resource, subprocess, sys, time, json; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:]); "
        "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, "
        "'peak_rss_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
    )
    cmd = [*EDGEQ, "-q", "convert", str(model), "--data", str(data), "-o", str(out), "--samples", str(samples), "--force"]
    proc = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, check=True)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if figures["rc"] != 0:
        raise SystemExit(f"edgeq convert failed: {proc.stderr.strip()}")
    return figures


def bench_memory(sample_counts: list[int]) -> dict:
    model = make_model("MobileNetV2", 96, 0.35)
    data = make_images(WORK / "rgb96", max(sample_counts), 96)
    runs = {n: run_convert(model, data, WORK / f"mem_{n}.tflite", n) for n in sample_counts}
    low, high = min(sample_counts), max(sample_counts)
    return {
        "model": "MobileNetV2 alpha=0.35, 96x96, weights=None",
        "runs": {str(n): r for n, r in runs.items()},
        "peak_rss_ratio": round(runs[high]["peak_rss_mib"] / runs[low]["peak_rss_mib"], 3),
        "compared": [low, high],
    }


def bench_size(samples: int) -> dict:
    model = make_model("MobileNetV2", 224)
    data = make_images(WORK / "rgb96", max(samples, 2000), 96)
    out = WORK / "mobilenet_v2_int8.tflite"
    figures = run_convert(model, data, out, samples)
    manifest = json.loads(out.with_name("mobilenet_v2_int8.edgeq.json").read_text())
    inspected = json.loads(subprocess.run([*EDGEQ, "inspect", "--json", str(out)], capture_output=True, text=True, check=True).stdout)
    return {
        "model": "MobileNetV2 224x224, weights=None",
        "calibration_samples": samples,
        "float_bytes": manifest["sizes"]["float_bytes"],
        "int8_bytes": manifest["sizes"]["model_bytes"],
        "manifest_ratio": manifest["sizes"]["ratio"],
        "inspect_ratio": inspected["size_ratio"],
        "convert_seconds": round(figures["seconds"], 2),
    }


BARE_LOOP = """
import sys, time, json
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
for _ in range(int(sys.argv[2])):
    interpreter.invoke()
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter(); interpreter.invoke(); times.append((time.perf_counter() - start) * 1000)
print(json.dumps({"p50": float(np.median(times))}))
"""


def bench_latency(int8: Path, reference: Path, data: Path, repeats: int, runs: int) -> dict:
    """INT8 vs float on XNNPACK at 1 thread as `edgeq validate` measures it, and a bare loop, per repeat."""
    rows = []
    for _ in range(repeats):
        out = WORK / "latency.json"
        cmd = [*EDGEQ, "-q", "validate", str(int8), "-r", str(reference), "-d", str(data), "--limit", "10",
               "--runs", str(runs), "--warmup", "10", "--threads", "1", "--json", str(out), "--force"]
        subprocess.run(cmd, check=True, capture_output=True)
        lat = json.loads(out.read_text())["latency"]
        bare = json.loads(subprocess.run([sys.executable, "-c", BARE_LOOP, str(int8), "10", str(runs)],
                                         capture_output=True, text=True, check=True).stdout)
        rows.append({"int8_p50": lat["int8_ms"]["p50"], "float_p50": lat["float_ms"]["p50"], "bare_int8_p50": bare["p50"],
                     "delegated_nodes": lat["delegated_nodes"], "total_nodes": lat["total_nodes"]})
    med = {k: float(np.median([r[k] for r in rows])) for k in ("int8_p50", "float_p50", "bare_int8_p50")}
    return {
        "model": "MobileNetV2 224x224, weights=None", "delegate": "xnnpack", "threads": 1, "repeats": repeats,
        "runs": runs, "rows": rows, **{f"median_{k}_ms": round(v, 3) for k, v in med.items()},
        "int8_over_float": round(med["int8_p50"] / med["float_p50"], 3),
        "edgeq_over_bare_loop": round(med["int8_p50"] / med["bare_int8_p50"], 3),
    }


def markdown(results: dict) -> str:
    mem, size = results["memory_vs_samples"], results["mobilenet_v2_size"]
    lines = [
        f"Measured on {results['cpu']} ({results['cores']} cores), {results['date']}.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for n, r in mem["runs"].items():
        lines.append(f"| peak RSS, convert with {n} samples ({mem['model']}) | {r['peak_rss_mib']:.0f} MiB |")
    lines.append(f"| peak RSS ratio {mem['compared'][1]} / {mem['compared'][0]} samples | {mem['peak_rss_ratio']:.3f}x |")
    lines.append(f"| MobileNetV2 float / INT8 .tflite | {size['float_bytes'] / 2**20:.2f} MiB / {size['int8_bytes'] / 2**20:.2f} MiB |")
    lines.append(f"| MobileNetV2 INT8/float size (manifest, inspect) | {size['manifest_ratio']:.3f}, {size['inspect_ratio']:.3f} |")
    lat = results.get("mobilenet_v2_latency")
    if lat:
        lines.append(f"| MobileNetV2 INT8 / float p50, XNNPACK, 1 thread (edgeq validate, median of {lat['repeats']}) | "
                     f"{lat['median_int8_p50_ms']:.2f} ms / {lat['median_float_p50_ms']:.2f} ms = {lat['int8_over_float']:.3f} |")
        lines.append(f"| edgeq validate INT8 p50 / bare interpreter loop p50 | {lat['edgeq_over_bare_loop']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    counts = [20, 200] if args.quick else [200, 2000]
    results = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "memory_vs_samples": bench_memory(counts),
        "mobilenet_v2_size": bench_size(20 if args.quick else 100),
    }
    results["mobilenet_v2_latency"] = bench_latency(
        WORK / "mobilenet_v2_int8.tflite", make_model("MobileNetV2", 224), WORK / "rgb96", 2 if args.quick else 3, 30 if args.quick else 100
    )
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (ROOT / "benchmarks" / "results.md").write_text(table)
    readme = ROOT / "README.md"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = readme.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n" + table + end + rest.split(end, 1)[1])
    print(table)


if __name__ == "__main__":
    main()
