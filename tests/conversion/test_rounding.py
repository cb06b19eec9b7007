"""--refine rounding: learned rounding of the int8 weights (GPTQ's closed form) with refitted
biases, and --refine auto on a depthwise-separable model whose BatchNorm folding spreads its
per-channel weights 100x."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def depthwise_model(directory: Path) -> tuple[Path, Path, Path]:
    """A depthwise-separable Keras model whose depthwise BatchNorms scale channel c by 0.01..1
    (a 100x spread of the folded per-channel weights) and whose pointwise convolutions scale that
    input channel back up, so the float function stays well conditioned and only the int8
    activations between them suffer. Returns the .keras file, calibration and held-out .npy."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="stem_bn")(keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)))
    spreads = []
    for block, (channels, out) in enumerate(((16, 32), (32, 32))):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"dw{block}_bn")(x))
        x = keras.layers.Conv2D(out, 1, use_bias=False, name=f"pw{block}")(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"pw{block}_bn")(x))
        spreads.append(np.geomspace(0.01, 1.0, channels)[rng.permutation(channels)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    for block, spread in enumerate(spreads):
        bn = model.get_layer(f"dw{block}_bn")
        gamma, beta, mean, var = bn.get_weights()
        bn.set_weights([gamma * spread, beta * spread + 0.05 * spread, mean, var])
        pw = model.get_layer(f"pw{block}")
        pw.set_weights([pw.get_weights()[0] / spread[None, None, :, None]])
    path = directory / "depthwise.keras"
    model.save(path)
    images = rng.uniform(-1, 1, (112, 1, 32, 32, 3)).astype(np.float32)
    np.save(directory / "depthwise_calib.npy", images[:80])
    np.save(directory / "depthwise_val.npy", images[80:])
    return path, directory / "depthwise_calib.npy", directory / "depthwise_val.npy"
