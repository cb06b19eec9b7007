"""The compatibility matrix: how the models people ship convert and run, measured in one run.

    python benchmarks/compat.py [--models NAME ...]      (make compat)

Writes benchmarks/compat.json and docs/compat.md. Every model has weights=None (nothing is
downloaded) and a small input; calibration (32) and held-out (16) samples are structured synthetic
data (smooth patterns plus noise), so SQNR measures quantization, not noise. Heads output logits
(classifier_activation=None), so the worst-output SQNR means something. Latency: XNNPACK, 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "compat"
APPS = (
    "MobileNetV2",
    "MobileNetV3Small",
    "EfficientNetB0",
    "EfficientNetV2B0",
    "DenseNet121",
    "NASNetMobile",
    "ResNet50V2",
    "InceptionV3",
    "Xception",
    "ConvNeXtTiny",
)
RAW_PIXELS = ("MobileNetV3Small", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny")  # rescale inside the model
SMALL = ("LSTM keyword spotter", "GRU keyword spotter", "transformer block", "Conv1D audio")


def build(name: str):
    import keras

    keras.utils.set_random_seed(0)
    path = WORK / (name.replace(" ", "_") + ".keras")
    if name in APPS:
        shape = (96, 96, 3)
        kwargs = {"weights": None, "input_shape": shape, "classes": 10, "classifier_activation": None}
        model = getattr(keras.applications, name)(**kwargs)
    elif name.endswith("keyword spotter"):
        shape = (49, 40)
        inp = keras.Input(shape, name="mfcc")
        x = getattr(keras.layers, name.split()[0])(64)(inp)
        model = keras.Model(inp, keras.layers.Dense(12)(x))
    elif name == "transformer block":
        shape = (16, 32)
        inp = keras.Input(shape, name="tokens")
        x = keras.layers.LayerNormalization()(inp)
        x = keras.layers.Add()([inp, keras.layers.MultiHeadAttention(4, 8)(x, x)])
        y = keras.layers.Dense(64, activation="gelu")(keras.layers.LayerNormalization()(x))
        x = keras.layers.Add()([x, keras.layers.Dense(32)(y)])
        model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling1D()(x)))
    else:  # Conv1D audio: 1 s of 16 kHz audio as 98 frames of 40 features
        shape = (98, 40)
        inp = keras.Input(shape, name="features")
        x = inp
        for filters in (32, 64, 64):
            x = keras.layers.MaxPooling1D(2)(keras.layers.Conv1D(filters, 3, padding="same", activation="relu")(x))
        model = keras.Model(inp, keras.layers.Dense(12)(keras.layers.GlobalAveragePooling1D()(x)))
    return model, path, (1, *shape)


def settle_batch_norm(model, samples: np.ndarray) -> None:
    """With weights=None a deep network's BatchNorm layers keep their initial statistics and the
    activations vanish (MobileNetV3Small's logits come out near 1e-10), which makes any SQNR
    meaningless. One training-mode pass with momentum 0 sets every moving mean and variance to
    the statistics of the calibration batch: normalized, realistic activations, no training."""
    layers = [l for l in model._flatten_layers() if type(l).__name__ == "BatchNormalization"]
    saved = [l.momentum for l in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(samples, training=True)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum


def data(shape: tuple[int, ...], n: int, seed: int, path: Path, scale: tuple[float, float] | None = None) -> Path:
    """Smooth sinusoidal patterns plus noise, scaled like the model's inputs: images to `scale`
    (0..255 for models that rescale inside, else -1..1), features ~N(0, 1)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, d) for d in shape[1:]], indexing="ij")
    samples = []
    for _ in range(n):
        phase = sum(rng.uniform(1, 4) * g for g in grids)
        x = np.sin(2 * np.pi * phase) + 0.3 * rng.normal(size=shape[1:])
        if scale is not None:
            lo, hi = scale
            x = lo + (hi - lo) * np.clip((x + 1.3) / 2.6, 0, 1)
        samples.append(x)
    np.save(path, np.clip(np.asarray(samples, np.float32), -5, 255))
    return path


def measure(name: str) -> dict:
    from edgeq.conversion.converter import convert
    from edgeq.core.errors import EdgeqError
    from edgeq.targets import check_target
    from edgeq.tflite.model import read_tflite
    from edgeq.validation.compare import validate

    model, source, shape = build(name)
    scale = (0.0, 255.0) if name in RAW_PIXELS else (-1.0, 1.0) if name in APPS else None
    calib = data(shape, 32, 0, WORK / f"{source.stem}_calib.npy", scale)
    val = data(shape, 16, 1, WORK / f"{source.stem}_val.npy", scale)
    settle_batch_norm(model, np.load(calib))
    model.save(source)
    row: dict = {"model": name, "input": list(shape)}
    started = time.monotonic()
    try:
        result = convert(source, WORK / f"{source.stem}_int8.tflite", calib, samples=32, force=True)
        row.update(strict_int8=True, blocking=None)
    except EdgeqError as exc:
        row.update(strict_int8=False, blocking=str(exc)[:200])
        try:
            result = convert(source, WORK / f"{source.stem}_fallback.tflite", calib, samples=32, force=True, mode="int8-fallback")
        except EdgeqError as again:
            row.update(error=str(again)[:300])
            return row
    row["convert_s"] = round(time.monotonic() - started, 1)
    m = result.manifest
    row.update(
        mode=m.recipe.mode.value,
        rewrites=list(m.source.rewrites),
        float_ops=sorted({op.type for op in m.float_ops}),
        size_ratio=m.sizes.ratio,
    )
    scores = validate(result.output, source, val, runs=50, warmup=5)
    lat = scores.latency
    row.update(
        worst_sqnr_db=scores.worst_sqnr_db,
        xnnpack_nodes=f"{lat.delegated_nodes}/{lat.total_nodes}",
        xnnpack_off=lat.cpu_fallback_ops,
        partitions=lat.partitions,
        int8_over_float=round(1 / lat.speedup, 3) if lat.speedup else None,
        within_noise=lat.within_noise,
        slower_warning=next((w for w in scores.warnings if "(slower)" in w), None),
    )
    optimized = convert(
        source,
        WORK / f"{source.stem}_latency.tflite",
        calib,
        samples=32,
        force=True,
        mode=m.recipe.mode.value,
        optimize="latency",
    )
    fast = validate(optimized.output, source, val, runs=50, warmup=5)
    row.update(
        latency_choice=optimized.manifest.latency.chosen,
        latency_worst_sqnr_db=fast.worst_sqnr_db,
        latency_int8_over_float=round(1 / fast.latency.speedup, 3) if fast.latency.speedup else None,
        latency_within_noise=fast.latency.within_noise,
    )
    model = read_tflite(result.output)
    for target in ("edgetpu", "nnapi"):
        report = check_target(model, target)
        row[target] = {
            "verdict": report.verdict,
            "target_ops": report.target_ops,
            "cpu_ops": report.cpu_ops,
            **({"min_api": report.extra.get("min_android_api")} if target == "nnapi" else {}),
        }
    return row


def _short_rewrite(note: str) -> str:
    if note.startswith("unrolled"):
        return "unrolled RNN (" + note.split(" over ")[1].split(" (")[0] + ")"
    if note.startswith("LayerNormalization"):
        return f"LayerNorm without NEG ({note.split(' computed as')[0].count(',') + 1} layers)"
    return note.split(" (")[0]


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Compatibility matrix",
        "",
        f"Measured by `make compat` (`benchmarks/compat.py`) on {meta['cpu']}, {meta['date']}, TensorFlow "
        f"{meta['tensorflow']}, LiteRT {meta['litert']}. Keras applications at 96x96 with weights=None, "
        "BatchNorm statistics set from the calibration batch (so activations do not vanish) and logits heads; 32 calibration and "
        "16 held-out samples of structured synthetic data; XNNPACK, 1 thread. "
        "Read it before you start: will my architecture convert, run in int8 on the target, and be faster than float?",
        "",
        "| model | strict int8 | rewrites | ops left in float | size vs float | worst SQNR (dB) | XNNPACK nodes "
        "(partitions) | off XNNPACK | INT8 / float latency | INT8 / float with `--optimize latency` (kept in float; SQNR) | Edge "
        "TPU | NNAPI |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | no | | | | | | | | | error: {r['error']} |")
            continue
        blocking = sorted(set(re.findall(r"\b([A-Z][A-Z0-9_]{2,}) \(", r["blocking"] or "")))
        strict = "yes" if r["strict_int8"] else f"no: {', '.join(blocking) or r['blocking'][:60]}"
        latency = (
            f"{r['int8_over_float']:.2f}"
            + (" (noise)" if r["within_noise"] else "")
            + (" slower" if r["int8_over_float"] and r["int8_over_float"] > 1 and not r["within_noise"] else "")
        )
        rewrites = "; ".join(_short_rewrite(x) for x in r["rewrites"]) or "none"
        edgetpu = f"{r['edgetpu']['target_ops']}/{r['edgetpu']['target_ops'] + r['edgetpu']['cpu_ops']} ops"
        nnapi = f"{r['nnapi']['target_ops']}/{r['nnapi']['target_ops'] + r['nnapi']['cpu_ops']} ops" + (
            f", API {r['nnapi']['min_api']}+" if r["nnapi"].get("min_api") else ""
        )
        off = ", ".join(f"{k} x{v}" for k, v in r["xnnpack_off"].items()) or "none"
        kept = (
            r["latency_choice"].removeprefix("keep ").removesuffix(" in float")
            if r["latency_choice"] != "as converted"
            else "nothing"
        )
        optimized = (
            f"{r['latency_int8_over_float']:.2f}"
            + (" (noise)" if r["latency_within_noise"] else "")
            + f" ({kept}; {r['latency_worst_sqnr_db']:.1f} dB)"
        )
        lines.append(
            f"| {r['model']} | {strict} | {rewrites} | {', '.join(r['float_ops']) or 'none'} | {r['size_ratio']:.3f} | "
            f"{r['worst_sqnr_db']:.1f} | {r['xnnpack_nodes']} ({r['partitions']}) | {off} | {latency} | {optimized} | "
            f"{edgetpu} | "
            f"{nnapi} |"
        )
    lines += [
        "",
        'INT8 / float latency is p50 over p50 (below 1: INT8 is faster); "noise" marks a difference within '
        "the run-to-run spread. Edge TPU and NNAPI columns are edgeq's static predictions (ops the target takes / "
        "all ops), not runs on hardware. When INT8 is slower, `edgeq validate` says which ops fell off XNNPACK and "
        "what may help, and `edgeq convert` ends with the command that adds `--optimize latency`; that column is the "
        "model `--optimize latency` chose, validated the same way. The raw figures and warnings are in "
        "`benchmarks/compat.json`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    from importlib.metadata import version

    from run import cpu_name  # benchmarks/run.py, beside this script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=[*APPS, *SMALL])
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = []
    for name in args.models or [*APPS, *SMALL]:
        print(f"compat: {name} ...", flush=True)
        rows.append(measure(name))
        print(json.dumps(rows[-1])[:300], flush=True)
    meta = {
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
        "tensorflow": version("tensorflow-cpu"),
        "litert": version("ai-edge-litert"),
        "seconds": round(time.monotonic() - started),
    }
    published = ROOT / "benchmarks" / "compat.json"
    if args.models and published.is_file():  # a partial re-run keeps the other rows, in their order
        fresh = {r["model"]: r for r in rows}
        earlier = json.loads(published.read_text())["models"]
        rows = [fresh.pop(r["model"], r) for r in earlier] + list(fresh.values())
        meta["partial_rerun"] = args.models
    (ROOT / "benchmarks" / "compat.json").write_text(json.dumps({**meta, "models": rows}, indent=2) + "\n")
    doc = ROOT / "docs" / "compat.md"
    earlier = doc.read_text() if doc.is_file() else ""
    kept = earlier[earlier.index("\n## ") :] if "\n## " in earlier else ""  # the sections other benchmarks write
    doc.write_text(markdown(rows, meta) + kept.lstrip("\n").join(["\n", ""]) if kept else markdown(rows, meta))
    print(f"wrote benchmarks/compat.json and docs/compat.md in {meta['seconds']} s")


if __name__ == "__main__":
    main()
