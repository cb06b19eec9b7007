"""Train the demo model: a Conv/DepthwiseConv/Dense CNN on the bundled 8x8 digits, read at 32x32.

    python demo/train_digits.py OUT.keras [--epochs N]

Seeded, CPU-only, a few seconds. Images are read with edgeq's own loader so training sees
exactly the preprocessing `edgeq convert` uses for calibration (pixels scaled to 0..1, the 8x8
images stretched to the model's 32x32 input). At 32x32 the convolutions carry enough work for INT8
to show its speed on XNNPACK (at 8x8 one run took 3 microseconds either way: nothing to measure).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from edgeq.data.samples import InputSpec, open_samples

DATA = Path(__file__).resolve().parent.parent / "representative_data" / "digits"
SIDE = 32  # the model's input: the 8x8 digits stretched


def load_split(split: str, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    source = open_samples(DATA / split, [InputSpec("image", (1, side, side, 1))])
    x = np.concatenate([sample[0] for sample in source])
    return x, np.asarray(source.labels)


def build_model(side: int = SIDE):
    import keras

    inputs = keras.Input((side, side, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    if side >= 16:  # the demo: a strided stage first, and one more convolution after the pooling
        x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dwconv")(x)
    x = keras.layers.Conv2D(64 if side >= 16 else 32, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    if side >= 16:
        x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
        x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train(output: Path, epochs: int = 15, side: int = SIDE) -> float:
    """`side` 8: the images as they are (the tests' quick model)."""
    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = load_split("calib", side)
    x_val, y_val = load_split("val", side)
    model = build_model(side)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=0)
    accuracy = float(model.evaluate(x_val, y_val, verbose=0)[1])
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    from edgeq.host.native import captured_native_stderr

    with captured_native_stderr():  # TensorFlow's own startup lines stay off the terminal
        accuracy = train(args.output, args.epochs)
    print(f"trained {args.output}: float top-1 on {DATA / 'val'} = {accuracy:.4f}")


if __name__ == "__main__":
    main()
