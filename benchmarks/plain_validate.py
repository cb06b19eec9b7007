"""The validation script users write by hand, which `edgeq validate` is measured against.

    python benchmarks/plain_validate.py INT8.tflite MODEL.keras IMAGE_FOLDER LIMIT OUT.json

Converts the Keras model to float TFLite (from_keras_model), then loops both interpreters (XNNPACK,
one thread) one image at a time: images read with Pillow, scaled to [-1, 1], quantized for the
INT8 input. Writes the top-1 agreement and the SQNR of the output over all images.
"""

import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image


def main() -> None:
    int8_path, model_path, folder, limit, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    float_model = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(model_path)).convert()
    int8, ref = Interpreter(int8_path, num_threads=1), Interpreter(model_content=float_model, num_threads=1)
    ref.resize_tensor_input(ref.get_input_details()[0]["index"], int8.get_input_details()[0]["shape"])
    for it in (int8, ref):
        it.allocate_tensors()
    qin, qout = int8.get_input_details()[0], int8.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = qin["quantization"], qout["quantization"]
    agree, signal, noise, count = 0, 0.0, 0.0, 0
    rng = np.random.default_rng(0)
    files = sorted(folder.glob("*.png"))
    for index in rng.permutation(len(files))[:limit]:
        with Image.open(files[index]) as img:
            x = (np.asarray(img.convert("RGB"), np.float32) * np.float32(2 / 255) + np.float32(-1))[np.newaxis]
        ref.set_tensor(ref.get_input_details()[0]["index"], x)
        ref.invoke()
        want = ref.get_tensor(ref.get_output_details()[0]["index"]).astype(np.float64)
        int8.set_tensor(qin["index"], np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8))
        int8.invoke()
        got = (int8.get_tensor(qout["index"]).astype(np.float64) - out_zero) * out_scale
        agree += int(want.argmax() == got.argmax())
        signal, noise, count = signal + float((want**2).sum()), noise + float(((want - got) ** 2).sum()), count + 1
    out.write_text(
        json.dumps(
            {"samples": count, "agreement": agree / count, "sqnr_db": math.inf if noise == 0 else 10 * math.log10(signal / noise)}
        )
    )


if __name__ == "__main__":
    main()
