"""A PReLU conv net: the slower-than-float hint without --optimize latency, and the candidates with it.

.venv/bin/python benchmarks/trials/prelu.py      (figures in the closing notes of issues 26-28)
"""

import subprocess
import sys
from pathlib import Path

import keras

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from pathlib import Path

from test_verdict import _images

W = Path(__file__).resolve().parents[1] / "work" / "trials"
W.mkdir(parents=True, exist_ok=True)
keras.utils.set_random_seed(0)
x = inp = keras.Input((64, 64, 3), name="image")
for f in (16, 32, 32, 64):
    x = keras.layers.Conv2D(f, 3, padding="same")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2])(x)
    x = keras.layers.Conv2D(f, 3, strides=2, padding="same")(x)
    x = keras.layers.PReLU(shared_axes=[1, 2])(x)
out = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
m = keras.Model(inp, out)
m.save(W / "prelu.keras")
c = _images(W / "pc", 32, 64, 0)
E = str(Path(sys.executable).with_name("edgeq"))
for extra in ([], ["--optimize", "latency"]):
    p = subprocess.run(
        [E, "convert", W / "prelu.keras", "--data", c, "-o", W / "prelu.tflite", "--force", "--samples", "32", *extra],
        capture_output=True,
        text=True,
    )
    print(p.returncode, p.stderr[-900:])
    print(
        "\n".join(l for l in p.stdout.splitlines() if "optimize" in l or l.startswith("  ") and ("p50" in l or "float" in l))[
            :2000
        ]
    )
