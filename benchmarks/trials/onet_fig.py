"""MTCNN's ONet (mtcnn 1.0.0, shipped weights) as a functional Keras model: converted and validated, roles and agreement.

.venv/bin/python benchmarks/trials/onet_fig.py      (figures in the closing notes of issues 26-28)
"""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from pathlib import Path

import keras
from keras import layers as L
from mtcnn.utils.tensorflow import load_weights
from test_verdict import _images

W = Path(__file__).resolve().parents[1] / "work" / "trials"
W.mkdir(parents=True, exist_ok=True)
image = keras.Input((48, 48, 3), name="image")
x = image
for filters, kernel, pool, stride, padding in ((32, 3, 3, 2, "same"), (64, 3, 3, 2, "valid"), (64, 3, 2, 2, "same")):
    x = L.MaxPooling2D(pool, stride, padding=padding)(L.PReLU(shared_axes=[1, 2])(L.Conv2D(filters, kernel)(x)))
x = L.PReLU(shared_axes=[1, 2])(L.Conv2D(128, 2)(x))
x = L.PReLU()(L.Dense(256)(L.Flatten()(L.Permute((2, 1, 3))(x))))
m = keras.Model(image, [L.Dense(4)(x), L.Dense(10)(x), L.Dense(2, activation="softmax")(x)])
m.set_weights(load_weights("onet.lz4"))
m.save(W / "onet.keras")
c, v = _images(W / "o_c", 48, 48, 0), _images(W / "o_v", 32, 48, 1)
E = str(Path(sys.executable).with_name("edgeq"))
subprocess.run(
    [
        E,
        "convert",
        W / "onet.keras",
        "--data",
        c,
        "--mean",
        "127.5",
        "--std",
        "128",
        "-o",
        W / "onet.tflite",
        "--force",
        "--samples",
        "48",
    ],
    capture_output=True,
)
p = subprocess.run(
    [E, "validate", W / "onet.tflite", "--reference", W / "onet.keras", "--data", v, "--runs", "50"],
    capture_output=True,
    text=True,
)
print(p.returncode)
print("\n".join(l for l in p.stdout.splitlines() if not l.startswith(("size", "delegate", "preproc"))))
