"""Train the demo model: a small Conv/DepthwiseConv/Dense CNN on the bundled 8x8 digits.

    python demo/train_digits.py OUT.keras [--epochs N]

Seeded, CPU-only, a few seconds. Images are read with edgeq's own loader so training sees
exactly the preprocessing `edgeq convert` uses for calibration (pixels scaled to 0..1).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from edgeq.data.samples import InputSpec, open_samples

DATA = Path(__file__).resolve().parent.parent / "representative_data" / "digits"
SPEC = InputSpec("image", (1, 8, 8, 1))


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    source = open_samples(DATA / split, [SPEC])
    x = np.concatenate([sample[0] for sample in source])
    return x, np.asarray(source.labels)


def build_model():
    import keras

    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dwconv")(x)
    x = keras.layers.Conv2D(32, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train(output: Path, epochs: int = 15) -> float:
    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = load_split("calib")
    x_val, y_val = load_split("val")
    model = build_model()
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
