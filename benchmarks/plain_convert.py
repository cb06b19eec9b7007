"""The baseline edgeq is measured against: the converter script users write by hand.

    python benchmarks/plain_convert.py MODEL.keras IMAGE_FOLDER OUT.tflite SIZE [concrete|keras]

Full-integer TFLiteConverter, int8 I/O, a representative dataset read with Pillow from the folder
(every image, sorted, scaled to [-1, 1]). The graph is traced with a fixed batch of 1, as edgeq
does, so the two conversions can be compared tensor by tensor. `concrete` (the default) converts
the traced function alone, which gives no SignatureDef (the floor); `keras` is the script most users
write, `from_keras_model`, which keeps the SignatureDefs as edgeq does.
"""

import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image


def main() -> None:
    model_path, folder, out, size = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    model = keras.models.load_model(model_path)
    function = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32)])
    files = sorted(folder.glob("*.png"))

    def representative_dataset():
        for path in files:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"), np.float32)
            yield [(pixels * np.float32(2 / 255) + np.float32(-1))[np.newaxis]]

    if (sys.argv[5:] or ["concrete"])[0] == "keras":
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    out.write_bytes(converter.convert())


if __name__ == "__main__":
    main()
