"""Models built to the patterns the accuracy search must handle, and their data (shared by the
tests and benchmarks/search.py). Each builder saves a .keras file and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np

AUDIO_SAMPLES = 2048
BANDS_PER_GROUP = 6
GROUPS = 4  # filterbank groups (one conv1d pair each), octaves apart


def _seed() -> None:
    import keras

    keras.utils.set_random_seed(7)


def dense_head_model(path: Path) -> Path:
    """Two outputs from one trunk: `scores` (well behaved) and `offsets`, a small dense regression
    head whose weights carry an outlier of 80 on a trunk unit that never fires, so its
    per-channel weight scale is coarse and every ordinary weight of the head rounds badly."""
    import keras

    _seed()
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    trunk = keras.layers.Dense(24, activation="relu", name="trunk")
    features = trunk(x)
    scores = keras.layers.Dense(6, name="scores")(features)
    offsets_head = keras.layers.Dense(4, name="offsets")
    offsets = offsets_head(features)
    model = keras.Model(inputs, {"scores": scores, "offsets": offsets})
    w, b = trunk.get_weights()
    w[:, 0], b[0] = 0.0, -5.0  # unit 0 of the trunk never fires
    trunk.set_weights([w, b])
    w, b = offsets_head.get_weights()
    w[0, :] = 80.0  # on the dead unit: exact in float, a coarse weight grid in int8
    offsets_head.set_weights([w, b])
    model.save(path)
    return path


def images(count: int, seed: int, shape=(16, 16, 3)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.uniform(0, 1, (count, 4, 4, shape[-1])).repeat(shape[0] // 4, 1).repeat(shape[1] // 4, 2)
    return np.clip(smooth + rng.normal(0, 0.05, (count, *shape)), 0, 1).astype(np.float32)


def dsp_audio_model(path: Path) -> Path:
    """Raw audio in, a DSP front end, then a CNN with more layers than the front end.

    Front end: per group, a conv1d pair with fixed cosine and sine kernels (a filterbank; the bands
    of the data differ by 60 dB), squared and summed for the power; the groups concatenated, then
    log, then min/max normalization to 0..1. In int8 the quiet bands' filter outputs and powers
    round to zero, so the front end alone in float still feeds LOG an int8 tensor without them,
    and the LOG and normalization alone in float get them already lost: only both together hold."""
    import keras
    from keras import ops

    _seed()
    inputs = keras.Input((AUDIO_SAMPLES, 1), name="audio")
    powers = []
    for group in range(GROUPS):
        length = 64
        t = np.arange(length)
        freqs = (np.arange(BANDS_PER_GROUP) + 1 + group * BANDS_PER_GROUP) / (2.2 * BANDS_PER_GROUP * GROUPS)
        window = np.hanning(length)
        kernels = []
        for fn in (np.cos, np.sin):
            k = np.stack([fn(2 * np.pi * f * t) * window for f in freqs], axis=-1)[:, None, :].astype(np.float32)
            conv = keras.layers.Conv1D(
                BANDS_PER_GROUP, length, strides=32, use_bias=False, trainable=False, name=f"filter{group}_{fn.__name__}"
            )
            kernels.append((conv, k))
        parts = [conv(inputs) for conv, _ in kernels]
        for conv, k in kernels:
            conv.set_weights([k])
        powers.append(ops.add(ops.square(parts[0]), ops.square(parts[1])))
    power = keras.layers.Concatenate(name="power")(powers)
    logp = ops.log(ops.add(power, 1e-6))
    low = ops.min(logp, axis=(1, 2), keepdims=True)
    high = ops.max(logp, axis=(1, 2), keepdims=True)
    x = ops.divide(ops.subtract(logp, low), ops.add(ops.subtract(high, low), 1e-3))
    x = keras.layers.Reshape((-1, BANDS_PER_GROUP * GROUPS, 1), name="as_image")(x)
    for i, filters in enumerate((8, 8, 16, 16, 16, 24, 24, 24, 32, 32, 32, 32)):
        stride = 2 if i in (2, 5, 8) else 1
        x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu", name=f"cnn{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="cnn_pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="cnn_dense")(x)
    outputs = keras.layers.Dense(8, name="embedding")(x)
    keras.Model(inputs, outputs).save(path)
    return path


def audio(count: int, seed: int) -> np.ndarray:
    """Tones in every band with amplitudes 60 dB apart across the bands, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(AUDIO_SAMPLES)
    bands = BANDS_PER_GROUP * GROUPS
    out = np.zeros((count, AUDIO_SAMPLES), np.float64)
    for n in range(count):
        for b in range(bands):
            f = (b + 1 + rng.uniform(-0.3, 0.3)) / (2.2 * bands)
            level = 10 ** (-3 * ((b * 7 + n) % bands) / (bands - 1))  # 0 dB .. -60 dB, shuffled across bands
            out[n] += level * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        out[n] += rng.normal(0, 1e-4, AUDIO_SAMPLES)
    return (out / np.abs(out).max(axis=1, keepdims=True)).astype(np.float32)[..., None]


def two_culprit_model(path: Path) -> Path:
    """A chain of dense layers with two made hard to quantize, far apart (`early` and `late`, an
    outlier weight on a dead unit each), and harmless layers between them: the region that covers
    both meets the budget first; shrinking drops the layers between."""
    import keras

    _seed()
    inputs = keras.Input((32,), name="features")
    x = keras.layers.Dense(32, activation="relu", name="d0")(inputs)
    hard = {}
    for i in range(1, 11):
        name = "early" if i == 2 else "late" if i == 9 else f"d{i}"
        layer = keras.layers.Dense(32, activation="relu", bias_initializer="random_normal", name=name)
        x = layer(x)
        if name in ("early", "late"):
            hard[name] = layer
    outputs = keras.layers.Dense(8, name="out")(x)
    model = keras.Model(inputs, outputs)
    for layer in hard.values():
        w, b = layer.get_weights()
        w[0, :] = 60.0  # on unit 0 of the layer before, which never fires (below)
        layer.set_weights([w, b])
    for name in ("d1", "d8"):  # the layers feeding the hard ones: unit 0 dead
        layer = model.get_layer(name)
        w, b = layer.get_weights()
        w[:, 0], b[0] = 0.0, -5.0
        layer.set_weights([w, b])
    model.save(path)
    return path


def features(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (count, 32)).astype(np.float32)


def save_npz(path: Path, x: np.ndarray) -> Path:
    np.savez(path, x=x)
    return path


def build_all(d: Path) -> Path:
    """Every pattern model of this module with its calibration and eval data: NAME.keras,
    NAME_cal.npz, NAME_eval.npz for head, audio, chain, two, outlier and beyond."""
    dense_head_model(d / "head.keras")
    save_npz(d / "head_cal.npz", images(64, 1))
    save_npz(d / "head_eval.npz", images(32, 2))
    dsp_audio_model(d / "audio.keras")
    save_npz(d / "audio_cal.npz", audio(64, 1))
    save_npz(d / "audio_eval.npz", audio(48, 2))
    two_culprit_model(d / "chain.keras")
    save_npz(d / "chain_cal.npz", features(64, 1))
    save_npz(d / "chain_eval.npz", features(128, 2))
    two_output_ranges_model(d / "two.keras")
    np.savez(d / "two_cal.npz", near=spiky_features(256, 1), far=spiky_features(256, 3))
    np.savez(d / "two_eval.npz", near=spiky_features(128, 2), far=spiky_features(128, 4))
    activation_outlier_model(d / "outlier.keras")
    np.savez(d / "outlier_cal.npz", features=features(128, 1))
    np.savez(d / "outlier_eval.npz", features=features(96, 3))
    beyond_sixteen_bits_model(d / "beyond.keras")
    np.savez(d / "beyond_cal.npz", features=features(128, 1))
    np.savez(d / "beyond_eval.npz", features=features(96, 3))
    return d


def face_like_images(path: Path, n: int, seed: int) -> Path:
    """Smooth colour gratings in -1..1 at 128x128, saved as .npy: inputs for MediaPipe's short-range face detector."""
    rng = np.random.default_rng(seed)
    t, f = np.meshgrid(np.linspace(0, 1, 128), np.linspace(0, 1, 128), indexing="ij")
    x = [
        0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * t + rng.uniform(1, 3) * f))[..., None] * rng.uniform(0.3, 1, 3)
        for _ in range(n)
    ]
    np.save(path, (np.clip(np.asarray(x), 0, 1) * 2 - 1).astype(np.float32))
    return path


def two_output_ranges_model(path: Path) -> Path:
    """Two inputs, two heads, nothing shared. Both inputs have a feature with rare spikes
    (`spiky_features`). `capped` = min(a², 1) gives that feature no weight, so clipping the spikes
    out of its input's range costs nothing and rounds the ordinary features finer; `power` = (b²)²
    weighs it, and its spikes are most of what it outputs. Entropy ranges clip the spikes: they help
    `capped` and wreck `power`; min/max does the opposite."""
    import keras
    from keras import ops

    _seed()
    near, far = keras.Input((16,), name="near"), keras.Input((16,), name="far")
    a_dense, b_dense = keras.layers.Dense(8, name="capped_dense"), keras.layers.Dense(8, name="power_dense")
    a, b = a_dense(near), b_dense(far)
    capped = ops.minimum(ops.multiply(a, a), 1.0)
    b2 = ops.multiply(b, b)
    power = ops.multiply(b2, b2)
    model = keras.Model([near, far], {"capped": capped, "power": power})
    for layer, weight in ((a_dense, 0.0), (b_dense, 1.0)):
        w, bias = layer.get_weights()
        w[15, :] = weight
        layer.set_weights([w, bias])
    model.save(path)
    return path


def spiky_features(count: int, seed: int) -> np.ndarray:
    """Uniform 0..1 features; the last one is 6 in 3% of the samples."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (count, 16))
    x[:, 15] = np.where(rng.uniform(size=count) < 0.03, 6.0, x[:, 15])
    return x.astype(np.float32)


def activation_outlier_model(path: Path) -> Path:
    """trunk -> wide -> two heads: `wide` has one unit biased to 40 (its output's int8 step is ~0.17),
    `small` reads the other units (values under 1), `big` reads only that unit. In int8 `small`
    loses its input; 16-bit activations on `wide` and `small` keep it, as float does."""
    import keras

    keras.utils.set_random_seed(0)
    features = keras.Input((32,), name="features")
    wide, small, big = (
        keras.layers.Dense(64, activation="relu", name="wide"),
        keras.layers.Dense(8, name="small"),
        keras.layers.Dense(1, name="big"),
    )
    hidden = wide(keras.layers.Dense(32, activation="relu", name="trunk")(features))
    model = keras.Model(features, {"small": small(hidden), "big": big(hidden)})
    w, b = wide.get_weights()
    b[0] = 40.0
    wide.set_weights([w, b])
    w, b = small.get_weights()
    w[0, :] = 0.0
    small.set_weights([w, b])
    w, b = big.get_weights()
    w[1:, :] = 0.0
    big.set_weights([w, b])
    model.save(path)
    return path


def beyond_sixteen_bits_model(path: Path, huge_bias: float = 3e4) -> Path:
    """trunk -> `wide` (one unit biased to 40) and `huge` (one unit biased to 30,000); `small`
    reads wide's other units, `fine` huge's, `big` both biased units through a concatenation.
    In int8 every head loses its input; at 16 bits wide's step (~0.001) keeps `small`, but huge's
    (~0.9) still loses `fine`'s values under 1: `huge` and `fine` need float, the rest 16 bits.
    With `huge_bias` 300,000 TensorFlow's INT8 heads get an input scale x weight scale / output
    scale over 256, which XNNPACK cannot create: LiteRT with XNNPACK does not load the model."""
    import keras

    keras.utils.set_random_seed(0)
    features = keras.Input((32,), name="features")
    trunk = keras.layers.Dense(32, activation="relu", name="trunk")(features)
    wide, huge = keras.layers.Dense(64, activation="relu", name="wide"), keras.layers.Dense(64, activation="relu", name="huge")
    small, fine, big = keras.layers.Dense(8, name="small"), keras.layers.Dense(8, name="fine"), keras.layers.Dense(1, name="big")
    w_out, h_out = wide(trunk), huge(trunk)
    both = keras.layers.Concatenate(name="both")([w_out, h_out])
    model = keras.Model(features, {"small": small(w_out), "big": big(both), "fine": fine(h_out)})
    for layer, bias in ((wide, 40.0), (huge, huge_bias)):
        w, b = layer.get_weights()
        b[0] = bias
        layer.set_weights([w, b])
    for layer in (small, fine):
        w, b = layer.get_weights()
        w[0, :] = 0.0
        layer.set_weights([w, b])
    w, b = big.get_weights()
    w[:] = 0.0
    w[0, 0], w[64, 0] = 1.0, 1e-5
    big.set_weights([w, b])
    model.save(path)
    return path
