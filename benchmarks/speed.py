"""Speed at every step (issue 29): first and repeat conversions, --calibration auto, validation at
scale, and memory of a --device validation against its sample count. Every figure of a ratio is
measured in this one run, side by side (interleaved where repeated); written to
benchmarks/speed.json.

    python benchmarks/speed.py [--repeats N]

Models are Keras applications with weights=None and images made from the bundled digits (see
run.py), so nothing is downloaded. Each command runs in its own process; its wall time and the peak
RSS of its whole process tree are its own. The cache lives in a fresh folder of this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import EDGEQ, ROOT, WORK, cpu_name, make_images, make_model, measured, same_quantization

PLAIN = [sys.executable, str(ROOT / "benchmarks" / "plain_convert.py")]
RANGE = ["--range", "-1,1"]  # what the plain scripts feed: pixels * 2/255 - 1


def edgeq_convert(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
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
        "200",
        "--force",
        *RANGE,
        *extra,
    ]


def manifest(out: Path) -> dict:
    return json.loads(out.with_name(out.name.removesuffix(".tflite") + ".edgeq.json").read_text())


def median_of(runs: list[dict]) -> dict:
    return {
        "seconds": round(statistics.median(r["seconds"] for r in runs), 2),
        "peak_rss_mib": round(statistics.median(r["peak_rss_mib"] for r in runs)),
    }


def signature_defs(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(str(path)).get_signature_list()


EDGEQ_RUNS = {"edgeq_default": (), "edgeq_jobs1": ("--jobs", "1"), "edgeq_jobs2": ("--jobs", "2")}


def bench_first_run(model: Path, images: Path, repeats: int) -> dict:
    """The plain scripts and edgeq at its default --jobs, --jobs 1 and --jobs 2, interleaved, all
    cold (--no-cache); 200 plain float invokes of the same graph beside, to weigh the calibrate phase."""
    outs = {
        "keras_script": WORK / "speed_keras.tflite",
        "concrete_script": WORK / "speed_concrete.tflite",
        **{name: WORK / f"speed_{name}.tflite" for name in EDGEQ_RUNS},
    }
    runs: dict[str, list] = {k: [] for k in outs}
    invokes, calibrate = [], []
    for _ in range(repeats):
        runs["keras_script"].append(measured([*PLAIN, str(model), str(images), str(outs["keras_script"]), "224", "keras"]))
        for name, extra in EDGEQ_RUNS.items():
            runs[name].append(measured(edgeq_convert(model, images, outs[name], *extra, "--no-cache")))
            if name == "edgeq_default":
                calibrate.append(manifest(outs[name])["timings"]["calibrate"])
        runs["concrete_script"].append(
            measured([*PLAIN, str(model), str(images), str(outs["concrete_script"]), "224", "concrete"])
        )
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "plain_invokes.py"), str(model), str(images), "224"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        invokes.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    med = {k: median_of(v) for k, v in runs.items()}
    seconds = {k: v["seconds"] for k, v in med.items()}
    fastest = min(seconds[name] for name in EDGEQ_RUNS)
    default = manifest(outs["edgeq_default"])
    return {
        "model": "MobileNetV2 224x224, weights=None",
        "samples": 200,
        "repeats": repeats,
        "median": med,
        "keras_script_over_edgeq": round(seconds["keras_script"] / seconds["edgeq_default"], 3),
        "concrete_script_over_edgeq": round(seconds["concrete_script"] / seconds["edgeq_default"], 3),
        "same_scales_and_zero_points_as_keras_script": same_quantization(outs["keras_script"], outs["edgeq_default"]),
        "same_signature_defs_as_keras_script": signature_defs(outs["keras_script"]) == signature_defs(outs["edgeq_default"]),
        "jobs": {
            "default_chose": default["calibration"]["jobs"],
            "default_over_fastest": round(seconds["edgeq_default"] / fastest, 3),
            "jobs2_over_jobs1": round(seconds["edgeq_jobs2"] / seconds["edgeq_jobs1"], 3),
            "same_bytes_every_jobs": len({outs[name].read_bytes() for name in EDGEQ_RUNS}) == 1,
        },
        "calibration": {
            "calibrate_phase_s": round(statistics.median(calibrate), 3),
            "plain_float_invokes_s": round(statistics.median(invokes), 3),
            "ratio": round(statistics.median(calibrate) / statistics.median(invokes), 3),
            "note": "edgeq's calibrate phase (reading and decoding the 200 PNGs included) against 200 invokes "
            "of the float graph on LiteRT's default Interpreter (XNNPACK), images decoded beforehand",
        },
        "edgeq_phases_s": default["timings"],
    }


def bench_repeats(model: Path, images: Path) -> dict:
    first, again, other, cold = (WORK / f"speed_{n}.tflite" for n in ("first", "again", "uint8", "uint8_cold"))
    figures = {
        "first": measured(edgeq_convert(model, images, first, "--jobs", "2")),
        "same_command_again": measured(edgeq_convert(model, images, again, "--jobs", "2")),
        "io_uint8": measured(edgeq_convert(model, images, other, "--jobs", "2", "--io", "uint8")),
        "io_uint8_cold": measured(edgeq_convert(model, images, cold, "--jobs", "2", "--io", "uint8", "--no-cache")),
    }
    s = {k: v["seconds"] for k, v in figures.items()}
    return {
        "runs": figures,
        "first_over_again": round(s["first"] / s["same_command_again"], 2),
        "first_over_io_uint8": round(s["first"] / s["io_uint8"], 2),
        "again_byte_identical": first.read_bytes() == again.read_bytes(),
        "io_uint8_byte_identical_to_cold": other.read_bytes() == cold.read_bytes(),
        "cache": {
            k: manifest(p)["cache"]["conversion"] + " / calibration " + manifest(p)["cache"]["calibration"]
            for k, p in (("same_command_again", again), ("io_uint8", other))
        },
        "phases_s": {k: manifest(p)["timings"] for k, p in (("same_command_again", again), ("io_uint8", other))},
    }


def bench_auto(model: Path, images: Path, evaluation: Path) -> dict:
    minmax, auto = WORK / "speed_minmax.tflite", WORK / "speed_auto.tflite"
    figures = {
        "minmax": measured(edgeq_convert(model, images, minmax, "--jobs", "2", "--no-cache")),
        "auto": measured(
            edgeq_convert(
                model, images, auto, "--jobs", "2", "--no-cache", "--calibration", "auto", "--eval-data", str(evaluation)
            )
        ),
    }
    return {
        "runs": figures,
        "eval_samples": len(list(evaluation.glob("*.png"))),
        "auto_over_minmax": round(figures["auto"]["seconds"] / figures["minmax"]["seconds"], 3),
        "auto_chose": manifest(auto)["recipe"]["calibration"],
        "auto_phases_s": manifest(auto)["timings"],
    }


def bench_validate(model: Path, int8: Path, images: Path, limit: int) -> dict:
    plain_json, edgeq_json, warm_json = (WORK / f"speed_validate_{n}.json" for n in ("plain", "edgeq", "warm"))
    command = [
        *EDGEQ,
        "-q",
        "validate",
        str(int8),
        "-r",
        str(model),
        "-d",
        str(images),
        "--limit",
        str(limit),
        "--runs",
        "20",
        "--force",
    ]
    figures = {
        "plain_script": measured(
            [
                sys.executable,
                str(ROOT / "benchmarks" / "plain_validate.py"),
                str(int8),
                str(model),
                str(images),
                str(limit),
                str(plain_json),
            ]
        ),
        "edgeq_cold": measured([*command, "--json", str(edgeq_json), "--no-cache"]),
    }
    measured([*command, "--json", str(warm_json)])  # keeps the float reference in the cache
    figures["edgeq_reference_cached"] = measured([*command, "--json", str(warm_json)])
    plain, ours = json.loads(plain_json.read_text()), json.loads(edgeq_json.read_text())
    return {
        "images": limit,
        "runs": figures,
        "plain_over_edgeq_cold": round(figures["plain_script"]["seconds"] / figures["edgeq_cold"]["seconds"], 3),
        "plain_over_edgeq_reference_cached": round(
            figures["plain_script"]["seconds"] / figures["edgeq_reference_cached"]["seconds"], 3
        ),
        "agreement": {"plain": plain["agreement"], "edgeq": ours["accuracy"]["agreement"]},
        "sqnr_db": {"plain": round(plain["sqnr_db"], 3), "edgeq": round(ours["outputs"][0]["sqnr_db"], 3)},
        "two_core_limit_cached": round(figures["plain_script"]["seconds"] / 2, 2),
        "cached_over_two_core_limit": round(
            figures["edgeq_reference_cached"]["seconds"] / (figures["plain_script"]["seconds"] / 2), 3
        ),
    }


def bench_device_memory(counts: tuple[int, int]) -> dict:
    """Peak RSS of `edgeq validate --device local` (the device runner as a local process: the same
    runner script and files an SSH device gets) on 8x8 inputs, at two sample counts; the float
    reference comes from the cache in both, so neither imports TensorFlow."""
    folder = WORK / "speed_device"
    folder.mkdir(parents=True, exist_ok=True)
    code = (
        "import keras, sys; keras.utils.set_random_seed(0); i = keras.Input((8, 8, 1)); "
        "x = keras.layers.Conv2D(8, 3, activation='relu')(i); x = keras.layers.Flatten()(x); "
        "keras.Model(i, keras.layers.Dense(10)(x)).save(sys.argv[1])"
    )
    model = folder / "digits_cnn.keras"
    if not model.exists():
        subprocess.run([sys.executable, "-c", code, str(model)], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    rng = np.random.default_rng(0)
    data = folder / f"digits_{max(counts)}.npy"
    np.save(data, rng.uniform(0, 1, (max(counts), 8, 8, 1)).astype(np.float32))
    int8 = folder / "digits_int8.tflite"
    subprocess.run(
        [*EDGEQ, "-q", "convert", str(model), "-d", str(data), "-o", str(int8), "--force", "--samples", "200"], check=True
    )
    validate = [*EDGEQ, "-q", "validate", str(int8), "-r", str(model), "-d", str(data), "--runs", "5", "--warmup", "1", "--force"]
    subprocess.run(
        [*validate, "--limit", "10"], check=True, capture_output=True
    )  # the float reference into the cache: no TF below
    rows = {}
    for n in counts:
        rows[n] = measured([*validate, "--limit", str(n), "--device", "local", "--json", str(folder / f"v{n}.json")])
    low, high = (rows[n]["peak_rss_mib"] for n in counts)
    return {"counts": list(counts), "runs": {str(n): rows[n] for n in counts}, "rss_ratio": round(high / low, 3)}


def markdown(r: dict) -> str:
    f, rep, auto, val, mem = r["first_run"], r["repeat_runs"], r["calibration_auto"], r["validate"], r["device_memory"]
    med = f["median"]
    lines = [
        f"Measured on {r['machine']}, int8 dot-product instructions: {r.get('int8_dot_product', 'not recorded')}, {r['date']}, "
        f"by `{r['command']}` in {r['seconds']} s (`benchmarks/speed.json`). "
        "Wall seconds of the whole process; MobileNetV2 224x224 (weights=None), 200 calibration samples.",
        "",
        "| what | figure | target |",
        "|---|---|---|",
        f"| first run: `from_keras_model` script / edgeq, default `--jobs` (median of {f['repeats']}) | "
        f"{med['keras_script']['seconds']} s / "
        f"{med['edgeq_default']['seconds']} s = **{f['keras_script_over_edgeq']}×** | ≥ 1.4× |",
        f"| first run: concrete-function script (no SignatureDef, the floor) / edgeq | {med['concrete_script']['seconds']} s / "
        f"{med['edgeq_default']['seconds']} s = {f['concrete_script_over_edgeq']}× | |",
        f"| calibrate phase / 200 plain float invokes of the same graph (XNNPACK) | {f['calibration']['calibrate_phase_s']} s / "
        f"{f['calibration']['plain_float_invokes_s']} s = **{f['calibration']['ratio']}×** | ≤ 2× |",
        f"| `--jobs 1` / `--jobs 2` / default ({f['jobs']['default_chose']}) | {med['edgeq_jobs1']['seconds']} s / "
        f"{med['edgeq_jobs2']['seconds']} s / {med['edgeq_default']['seconds']} s: default / fastest "
        f"**{f['jobs']['default_over_fastest']}×**, "
        f"jobs 2 / jobs 1 {f['jobs']['jobs2_over_jobs1']}×, same bytes: {_yes(f['jobs']['same_bytes_every_jobs'])} | ≤ 1.05×, ≤ "
        f"1× |",
        f"| same SignatureDefs / same scales and zero-points as the `from_keras_model` script | "
        f"{_yes(f['same_signature_defs_as_keras_script'])} / {_yes(f['same_scales_and_zero_points_as_keras_script'])} | yes "
        f"/ yes "
        f"|",
        f"| same command again (conversion cache hit): first / repeat | {rep['runs']['first']['seconds']} s / "
        f"{rep['runs']['same_command_again']['seconds']} s = **{rep['first_over_again']}×**, same bytes: "
        f"{_yes(rep['again_byte_identical'])} | ≥ 10× |",
        f"| `--io uint8` after it (calibration cache hit): first / this | {rep['runs']['first']['seconds']} s / "
        f"{rep['runs']['io_uint8']['seconds']} s = **{rep['first_over_io_uint8']}×**, bytes of a cold `--io uint8` run: "
        f"{_yes(rep['io_uint8_byte_identical_to_cold'])} | ≥ 2.5× |",
        f"| `--calibration auto` ({auto['eval_samples']} eval images; chose {auto['auto_chose']}) / minmax | "
        f"{auto['runs']['auto']['seconds']} s / {auto['runs']['minmax']['seconds']} s = **{auto['auto_over_minmax']}×** | ≤ 1.5× "
        f"|",
        f"| validate {val['images']} images against the Keras model, cold: plain two-interpreter script / edgeq | "
        f"{val['runs']['plain_script']['seconds']} s / {val['runs']['edgeq_cold']['seconds']} s = "
        f"**{val['plain_over_edgeq_cold']}×** | ≥ 1.5× |",
        f"| the same with the float reference from the cache | {val['runs']['plain_script']['seconds']} s / "
        f"{val['runs']['edgeq_reference_cached']['seconds']} s = **{val['plain_over_edgeq_reference_cached']}×** "
        f"(edgeq's time is {val['cached_over_two_core_limit']}× the plain script's time / 2) | ≥ 2.3× |",
        f"| validate: agreement plain / edgeq; SQNR plain / edgeq | {val['agreement']['plain']:.4f} / "
        f"{val['agreement']['edgeq']:.4f}; "
        f"{val['sqnr_db']['plain']} / {val['sqnr_db']['edgeq']} dB | equal |",
        f"| peak RSS of validate `--device local`, {mem['counts'][0]} / {mem['counts'][1]} samples (8x8 inputs) | "
        f"{mem['runs'][str(mem['counts'][0])]['peak_rss_mib']} / {mem['runs'][str(mem['counts'][1])]['peak_rss_mib']} MiB = "
        f"**{mem['rss_ratio']}×** | within 10% |",
        "",
        "edgeq's first-run phases (its manifest's `timings`, seconds): "
        + ", ".join(f"{k} {v}" for k, v in f["edgeq_phases_s"].items())
        + ".",
    ]
    if r.get("partial_reruns"):
        lines += [
            "",
            "Re-measured alone afterwards with `--only SECTION` (each ratio still from one run of its own): "
            + ", ".join(f"{run['section']} ({run['date']})" for run in r["partial_reruns"])
            + ".",
        ]
    return "\n".join(lines)


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def update_readme(table: str) -> None:
    readme = ROOT / "docs" / "performance.md"
    start, end = "<!-- speed:start -->", "<!-- speed:end -->"
    text = readme.read_text()
    head, rest = text.split(start, 1)
    readme.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--validate-images", type=int, default=2000)
    parser.add_argument(
        "--only", choices=("device_memory", "validate"), help="re-measure one section; the others stay those of speed.json"
    )
    args = parser.parse_args()
    os.environ["EDGEQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeq-bench-cache-")
    started = time.time()
    if args.only:
        results = json.loads((ROOT / "benchmarks" / "speed.json").read_text())
        if args.only == "validate":
            model, validation = make_model("MobileNetV2", 224), make_images(WORK / "images224_2000", 2000, 224)
            results[args.only] = bench_validate(model, WORK / "speed_edgeq_default.tflite", validation, args.validate_images)
        else:
            results[args.only] = bench_device_memory((500, 5000))
        results.setdefault("partial_reruns", []).append({"date": time.strftime("%Y-%m-%d %H:%M"), "section": args.only})
        _write(results)
        return
    model = make_model("MobileNetV2", 224)
    images = make_images(WORK / "images224_200", 200, 224)
    evaluation = make_images(WORK / "images224_eval100", 100, 224)
    validation = make_images(WORK / "images224_2000", 2000, 224)
    from edgeq.host.machine import this_cpu

    results = {
        "machine": f"{cpu_name()} ({os.cpu_count()} cores)",
        "int8_dot_product": this_cpu().int8_dot or "none",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/speed.py",
    }
    results["first_run"] = bench_first_run(model, images, args.repeats)
    results["repeat_runs"] = bench_repeats(model, images)
    results["calibration_auto"] = bench_auto(model, images, evaluation)
    results["validate"] = bench_validate(model, WORK / "speed_edgeq_default.tflite", validation, args.validate_images)
    results["device_memory"] = bench_device_memory((500, 5000))
    results["seconds"] = round(time.time() - started)
    _write(results)


def _write(results: dict) -> None:
    (ROOT / "benchmarks" / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    update_readme(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
