"""What calibration is measured against: plain float invokes of the same graph.

    python benchmarks/plain_invokes.py MODEL.keras IMAGE_FOLDER SIZE

Converts the Keras model to float TFLite (the graph edgeq calibrates, before any range is set),
decodes every image in the folder into memory, then times one invoke per image with LiteRT's
Interpreter at its defaults (XNNPACK), as a user's script would run it. Prints JSON.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
from PIL import Image


def main() -> None:
    import keras

    model_path, folder, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    model = keras.models.load_model(model_path)
    function = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32)])
    flat = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()]).convert()
    samples = [
        np.asarray(Image.open(p).convert("RGB"), np.float32)[None] * np.float32(2 / 255) - 1 for p in sorted(folder.glob("*.png"))
    ]
    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    started = time.perf_counter()
    for sample in samples:
        interpreter.set_tensor(index, sample)
        interpreter.invoke()
    print(json.dumps({"invokes": len(samples), "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    main()
