"""Calibration time per --calibration method on MobileNetV2 224 (weights=None), 200 samples,
--jobs 2, as a ratio to minmax, measured in one run (methods interleaved in every repeat).

    python benchmarks/calibration_methods.py [--repeats N]     (part of make bench)

Writes benchmarks/calibration_methods.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from run import EDGEQ, ROOT, WORK, cpu_name, make_images, make_model

METHODS = ("minmax", "percentile", "mse", "entropy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    model, images = make_model("MobileNetV2", 224), make_images(WORK / "rgb224", args.samples, 224)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:
            out = WORK / f"methods_{method}.tflite"
            start = time.monotonic()
            subprocess.run(
                [
                    *EDGEQ,
                    "convert",
                    str(model),
                    "--data",
                    str(images),
                    "--samples",
                    str(args.samples),
                    "--range",
                    "-1,1",
                    "--jobs",
                    "2",
                    "--calibration",
                    method,
                    "-o",
                    str(out),
                    "--force",
                    "-q",
                    "--no-cache",
                ],
                check=True,
            )
            times[method].append(time.monotonic() - start)
    medians = {m: statistics.median(t) for m, t in times.items()}
    result = {
        "cpu": cpu_name(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": "MobileNetV2 224, weights=None",
        "samples": args.samples,
        "jobs": 2,
        "repeats": args.repeats,
        "seconds": medians,
        "ratio_to_minmax": {m: round(medians[m] / medians["minmax"], 3) for m in METHODS},
    }
    (ROOT / "benchmarks" / "calibration_methods.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
