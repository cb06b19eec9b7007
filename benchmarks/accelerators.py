"""Validate on LiteRT's accelerators against the CPU-only validate, in one run (issue 37).

MobileNetV2 at 224 (weights=None) converted by edgeq, its INT8 file compiled for Intel's NPU;
validate on 200 held-out images: CPU only, with --accelerator gpu (WebGPU on Mesa's lavapipe, a
software adapter), and the compiled file through Intel's dispatch (OpenVINO's CPU graph backend).
The reference's float .tflite comes from the cache in every run (converted once first), so the
ratios are the accelerator runs' own cost. Writes benchmarks/accelerators.json.

    .venv/bin/python benchmarks/accelerators.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import EDGEQ, ROOT, WORK, cpu_name, make_images, make_model, measured


def main(repeats: int = 2) -> dict:
    model = make_model("MobileNetV2", 224)
    calib, held_out = make_images(WORK / "images224", 200, 224), make_images(WORK / "held224", 200, 224)
    int8, compiled = WORK / "mnv2_int8.tflite", WORK / "mnv2_intel.tflite"
    subprocess.run([*EDGEQ, "convert", str(model), "--data", str(calib), "-o", str(int8), "--force", "-q"], check=True)
    subprocess.run([*EDGEQ, "compile", str(int8), "--npu", "intel", "-o", str(compiled), "--force", "-q"], check=True)
    base = ["--reference", str(model), "--data", str(held_out), "--runs", "20", "--warmup", "3", "-q"]
    runs = {
        "cpu": [*EDGEQ, "validate", str(int8), *base],
        "gpu": [*EDGEQ, "validate", str(int8), *base, "--accelerator", "gpu"],
        "npu:intel (compiled)": [*EDGEQ, "validate", str(compiled), *base],
    }
    subprocess.run(runs["cpu"], check=True, capture_output=True)  # the reference's float .tflite into the cache
    seconds = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved: a load spike hits every variant alike
        for name, command in runs.items():
            seconds[name].append(measured(command)["seconds"])
    median = {name: statistics.median(s) for name, s in seconds.items()}
    figures = {
        "cpu": cpu_name(),
        "model": "MobileNetV2 224 (weights=None), INT8 by edgeq",
        "samples": 200,
        "repeats": repeats,
        "seconds": median,
        "ratio_to_cpu_only": {name: round(s / median["cpu"], 2) for name, s in median.items()},
        "note": "the GPU is Mesa's lavapipe and the NPU OpenVINO's CPU device: software stand-ins, so these ratios are the "
        "cost of the check here, not of a phone's GPU or an NPU",
    }
    (ROOT / "benchmarks" / "accelerators.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
