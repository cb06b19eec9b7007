"""edgeq benchmarks: figures measured in one run on this machine, written to benchmarks/results.json
and benchmarks/results.md.

    python benchmarks/run.py [--quick] [--repeats N]

Every conversion runs in its own process; its wall time and the peak memory of its whole process
tree (workers included, sampled from /proc) are its own. Models are Keras applications with
weights=None (nothing is downloaded); images are the bundled digits, upscaled to RGB, so every
figure is reproducible offline. Ratios compare figures of the same run; each is a median over
repeats, with the methods interleaved inside every repeat so machine noise hits them alike.
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


def make_model(name: str, size: int, alpha: float | None = 1.0) -> Path:
    path = WORK / f"{name}_{size}_{alpha}.keras"
    if not path.exists():
        extra = f", alpha={alpha}" if alpha is not None else ""
        code = (
            "import keras, sys; keras.utils.set_random_seed(0); "
            f"keras.applications.{name}(weights=None, input_shape=({size}, {size}, 3){extra}).save(sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return path


def _tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measured(cmd: list[str]) -> dict:
    """Run `cmd`: wall seconds and the peak RSS of its process tree (sampled every 20 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss_kib(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed: {proc.stderr.read().strip()[-500:]}")
    return {"seconds": round(seconds, 3), "peak_rss_mib": round(peak / 1024, 1)}


def edgeq_convert(model: Path, data: Path, out: Path, samples: int, *extra: str) -> list[str]:
    return [
        *EDGEQ,
        "-q",
        "convert",
        str(model),
        "--data",
        str(data),
        "-o",
        str(out),
        "--samples",
        str(samples),
        "--force",
        "--no-cache",
        *extra,
    ]  # cold conversions: the cache has its own figures (benchmarks/speed.py)


def run_convert(model: Path, data: Path, out: Path, samples: int) -> dict:
    return measured(edgeq_convert(model, data, out, samples))


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


def calibration_folders(counts: list[int], size: int) -> dict[int, Path]:
    """One folder per sample count holding exactly that many images (hard links), so the plain
    script and edgeq calibrate on the same files."""
    images = sorted(make_images(WORK / f"rgb{size}", max(counts), size).glob("*.png"))
    folders = {}
    for n in counts:
        folder = WORK / f"calib{size}_{n}"
        if not folder.is_dir() or len(list(folder.glob("*.png"))) != n:
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.png"):
                old.unlink()
            for image in images[:n]:
                os.link(image, folder / image.name)
        folders[n] = folder
    return folders


def same_quantization(a: Path, b: Path) -> bool:
    """The same ops, zero-points and (within relative 1e-5) scales: edgeq's ranges come from XNNPACK."""
    from edgeq.tflite.model import read_tflite
    from edgeq.tflite.model import same_quantization as same

    return same(read_tflite(a), read_tflite(b))


def bench_convert_times(model: Path, folders: dict[int, Path], size: int, repeats: int, tag: str) -> dict:
    """Plain converter script vs edgeq --jobs 1 vs edgeq --jobs 2 on the same images, per sample count."""
    plain = [sys.executable, str(ROOT / "benchmarks" / "plain_convert.py")]
    rows = {}
    for n, folder in folders.items():
        outs = {m: WORK / f"{tag}_{n}_{m}.tflite" for m in ("plain", "jobs1", "jobs2")}
        commands = {
            "plain": [*plain, str(model), str(folder), str(outs["plain"]), str(size)],
            "jobs1": edgeq_convert(model, folder, outs["jobs1"], n, "--range", "-1,1", "--jobs", "1"),
            "jobs2": edgeq_convert(model, folder, outs["jobs2"], n, "--range", "-1,1", "--jobs", "2"),
        }
        runs = {m: [] for m in commands}
        for _ in range(repeats):
            for method, cmd in commands.items():
                runs[method].append(measured(cmd))
        med = {m: {k: float(np.median([r[k] for r in rs])) for k in ("seconds", "peak_rss_mib")} for m, rs in runs.items()}
        rows[str(n)] = {
            "runs": runs,
            "median_seconds": {m: round(v["seconds"], 2) for m, v in med.items()},
            "median_peak_rss_mib": {m: round(v["peak_rss_mib"]) for m, v in med.items()},
            "jobs1_over_plain": round(med["jobs1"]["seconds"] / med["plain"]["seconds"], 3),
            "plain_over_jobs2": round(med["plain"]["seconds"] / med["jobs2"]["seconds"], 3),
            "same_quantization_as_plain": {m: same_quantization(outs["plain"], outs[m]) for m in ("jobs1", "jobs2")},
            "jobs1_jobs2_byte_identical": outs["jobs1"].read_bytes() == outs["jobs2"].read_bytes(),
        }
    return rows


def bench_sizes(model: Path, int8: Path, tag: str) -> dict:
    manifest = json.loads(int8.with_name(int8.name.removesuffix(".tflite") + ".edgeq.json").read_text())
    sizes = {"float": manifest["sizes"]["float_bytes"], "int8": int8.stat().st_size}
    for mode in ("dynamic", "float16"):
        out = WORK / f"{tag}_{mode}.tflite"
        subprocess.run(
            [*EDGEQ, "-q", "convert", str(model), "--mode", mode, "-o", str(out), "--force", "--no-cache"],
            check=True,
            capture_output=True,
        )
        sizes[mode] = out.stat().st_size
    return {"bytes": sizes, "over_float": {k: round(v / sizes["float"], 3) for k, v in sizes.items()}}


def bench_speed(int8: Path, reference: Path, data: Path, repeats: int, runs: int) -> dict:
    """INT8 vs float p50 on XNNPACK as `edgeq validate` measures it, at 1 and 2 threads."""
    result = {}
    for threads in (1, 2):
        rows = []
        for _ in range(repeats):
            out = WORK / "latency.json"
            cmd = [
                *EDGEQ,
                "-q",
                "validate",
                str(int8),
                "-r",
                str(reference),
                "-d",
                str(data),
                "--limit",
                "5",
                "--runs",
                str(runs),
                "--warmup",
                "5",
                "--threads",
                str(threads),
                "--json",
                str(out),
                "--force",
            ]
            subprocess.run(cmd, check=True, capture_output=True)
            lat = json.loads(out.read_text())["latency"]
            rows.append({"int8_p50": lat["int8_ms"]["p50"], "float_p50": lat["float_ms"]["p50"]})
        med = {k: float(np.median([r[k] for r in rows])) for k in ("int8_p50", "float_p50")}
        result[str(threads)] = {
            "rows": rows,
            "median_int8_p50_ms": round(med["int8_p50"], 3),
            "median_float_p50_ms": round(med["float_p50"], 3),
            "int8_over_float": round(med["int8_p50"] / med["float_p50"], 3),
        }
    return result


MODELS = {  # name: (keras.applications constructor, alpha, most repeats: ResNet-50 calibrates ~10x longer)
    "MobileNetV2": ("MobileNetV2", 1.0, None),
    "MobileNetV1": ("MobileNet", 1.0, None),
    "ResNet50": ("ResNet50", None, 1),
}


def bench_models(names: list[str], counts: list[int], repeats: int, runs: int) -> dict:
    folders = calibration_folders(counts, 224)
    suite = {}
    for name in names:
        app, alpha, most = MODELS[name]
        model, tag = make_model(app, 224, alpha), name.lower()
        reps = min(repeats, most or repeats)
        times = bench_convert_times(model, folders, 224, reps, tag)
        int8 = WORK / f"{tag}_{200 if 200 in counts else counts[-1]}_jobs2.tflite"
        suite[name] = {
            "model": f"{name} 224x224, weights=None",
            "repeats": reps,
            "convert": times,
            "sizes": bench_sizes(model, int8, tag),
            "latency_xnnpack": bench_speed(int8, model, folders[counts[0]], reps, runs),
        }
    return suite


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
        cmd = [
            *EDGEQ,
            "-q",
            "validate",
            str(int8),
            "-r",
            str(reference),
            "-d",
            str(data),
            "--limit",
            "10",
            "--runs",
            str(runs),
            "--warmup",
            "10",
            "--threads",
            "1",
            "--json",
            str(out),
            "--force",
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        lat = json.loads(out.read_text())["latency"]
        bare = json.loads(
            subprocess.run(
                [sys.executable, "-c", BARE_LOOP, str(int8), "10", str(runs)], capture_output=True, text=True, check=True
            ).stdout
        )
        rows.append(
            {
                "int8_p50": lat["int8_ms"]["p50"],
                "float_p50": lat["float_ms"]["p50"],
                "bare_int8_p50": bare["p50"],
                "delegated_nodes": lat["delegated_nodes"],
                "total_nodes": lat["total_nodes"],
            }
        )
    med = {k: float(np.median([r[k] for r in rows])) for k in ("int8_p50", "float_p50", "bare_int8_p50")}
    return {
        "model": "MobileNetV2 224x224, weights=None",
        "delegate": "xnnpack",
        "threads": 1,
        "repeats": repeats,
        "runs": runs,
        "rows": rows,
        **{f"median_{k}_ms": round(v, 3) for k, v in med.items()},
        "int8_over_float": round(med["int8_p50"] / med["float_p50"], 3),
        "edgeq_over_bare_loop": round(med["int8_p50"] / med["bare_int8_p50"], 3),
    }


def markdown(results: dict) -> str:
    mem = results["memory_vs_samples"]
    lines = [
        f"Measured on {results['cpu']} ({results['cores']} cores), {results['date']}. Times are wall seconds of the "
        "whole process (Python, TensorFlow import, model load, conversion, calibration); peak RSS is the process tree's.",
        "",
    ]
    for rerun in results.get("partial_reruns", []):
        lines += [
            f"Re-measured on {rerun['date']} in a quiet run: {', '.join(rerun['models'])} (the first run overlapped other work).",
            "",
        ]
    for r in results["models"].values():
        lines += [
            f"**{r['model']}** (medians of {r['repeats']})",
            "",
            "| calibration samples | plain script | edgeq --jobs 1 | edgeq --jobs 2 | jobs 1 / plain | plain / jobs 2 "
            "| same scales & zero-points | peak RSS plain / jobs 1 / jobs 2 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n, c in r["convert"].items():
            t, m = c["median_seconds"], c["median_peak_rss_mib"]
            same = "yes" if all(c["same_quantization_as_plain"].values()) else "NO"
            lines.append(
                f"| {n} | {t['plain']:.1f} s | {t['jobs1']:.1f} s | {t['jobs2']:.1f} s | {c['jobs1_over_plain']:.2f}× "
                f"| {c['plain_over_jobs2']:.2f}× | {same} | {m['plain']} / {m['jobs1']} / {m['jobs2']} MiB |"
            )
        b, f = r["sizes"]["bytes"], r["sizes"]["over_float"]
        lat = r["latency_xnnpack"]
        lines += [
            "",
            "| size float / INT8 / dynamic-range / float16 | INT8 / float p50, XNNPACK, 1 thread | 2 threads |",
            "|---|---|---|",
            f"| {b['float'] / 2**20:.1f} / {b['int8'] / 2**20:.1f} / {b['dynamic'] / 2**20:.1f} / {b['float16'] / 2**20:.1f} MiB "
            f"(INT8 {f['int8']:.3f}×) "
            + "".join(
                f"| {lat[t]['median_int8_p50_ms']:.2f} / {lat[t]['median_float_p50_ms']:.2f} ms = "
                f"{lat[t]['int8_over_float']:.3f} "
                for t in ("1", "2")
            )
            + "|",
            "",
        ]
    lines += ["| other figures | value |", "|---|---|"]
    for n, r in mem["runs"].items():
        lines.append(f"| peak RSS, convert with {n} samples ({mem['model']}) | {r['peak_rss_mib']:.0f} MiB |")
    lines.append(f"| peak RSS ratio {mem['compared'][1]} / {mem['compared'][0]} samples | {mem['peak_rss_ratio']:.3f}× |")
    lat = results.get("mobilenet_v2_latency")
    if lat:
        lines.append(
            f"| edgeq validate INT8 p50 / bare interpreter loop p50 (MobileNetV2, 1 thread) | {lat['edgeq_over_bare_loop']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="MobileNetV2 only, few samples, one repeat: a smoke run (benchmarks/work/results-quick.json)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        help="re-measure only these models and keep the rest of benchmarks/results.json",
    )
    parser.add_argument(
        "--update-readme", action="store_true", help="only copy benchmarks/results.md into README.md's table (no measuring)"
    )
    args = parser.parse_args()
    if args.update_readme:
        _update_readme(ROOT / "benchmarks" / "results.md")
        return
    started = time.monotonic()
    print("make bench: about 20-30 minutes on 2 cores (--quick: a few minutes); results go to benchmarks/", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    repeats = 1 if args.quick else args.repeats
    counts = [10, 20] if args.quick else [50, 200, 500]
    if args.models:  # a partial re-run: the other figures stay those of the earlier run
        results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
        results["models"].update(bench_models(args.models, counts, repeats, 50))
        results.setdefault("partial_reruns", []).append({"date": time.strftime("%Y-%m-%d %H:%M"), "models": args.models})
        _write(results, started)
        return
    results = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "repeats": repeats,
        "memory_vs_samples": bench_memory([20, 200] if args.quick else [200, 2000]),
        "models": bench_models(["MobileNetV2"] if args.quick else list(MODELS), counts, repeats, 20 if args.quick else 50),
    }
    results["mobilenet_v2_latency"] = bench_latency(
        WORK / f"mobilenetv2_{counts[-1] if args.quick else 200}_jobs2.tflite",
        make_model("MobileNetV2", 224),
        WORK / "rgb224",
        repeats,
        30 if args.quick else 100,
    )
    if args.quick:  # a smoke run never replaces the published figures
        (WORK / "results-quick.json").write_text(json.dumps(results, indent=2) + "\n")
        print(markdown(results))
        print(f"wrote benchmarks/work/results-quick.json in {time.monotonic() - started:.0f} s")
        return
    _write(results, started)


def _write(results: dict, started: float) -> None:
    """benchmarks/results.json and results.md; the README table changes only with --update-readme."""
    (ROOT / "benchmarks" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (ROOT / "benchmarks" / "results.md").write_text(table)
    print(table)
    print(
        f"wrote benchmarks/results.json and benchmarks/results.md in {time.monotonic() - started:.0f} s; "
        "`python benchmarks/run.py --update-readme` copies the table into docs/performance.md"
    )


def _update_readme(table_file) -> None:
    readme = ROOT / "docs" / "performance.md"
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = readme.read_text()
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + table_file.read_text() + end + rest.split(end, 1)[1])
    print(f"docs/performance.md's benchmark table now shows {table_file}")


if __name__ == "__main__":
    main()
