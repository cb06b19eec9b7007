"""keras.applications.MobileNetV3Small as shipped: its Rescaling layer sets the default input range.

.venv/bin/python benchmarks/trials/keras_apps.py      (figures in the closing notes of issues 26-28)
"""

import json
import pathlib
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import keras
from test_verdict import _images

W = pathlib.Path(__file__).resolve().parents[1] / "work" / "trials"
W.mkdir(parents=True, exist_ok=True)
m = keras.applications.MobileNetV3Small(input_shape=(96, 96, 3), weights=None, classifier_activation="softmax")
print("first layers:", [type(l).__name__ for l in m.layers[:3]])
m.save(W / "mnv3s.keras")
c = _images(W / "apps_c", 32, 96, 0)
p = subprocess.run(
    [
        str(Path(sys.executable).with_name("edgeq")),
        "convert",
        W / "mnv3s.keras",
        "--data",
        c,
        "-o",
        W / "mnv3s.tflite",
        "--force",
        "--samples",
        "32",
    ],
    capture_output=True,
    text=True,
)
print(p.returncode, [l for l in p.stdout.splitlines() if l.startswith("preprocessing")], p.stderr[-300:])
man = json.loads((W / "mnv3s.edgeq.json").read_text())
print(man["preprocessing"], man["calibration"]["observed_range"])
