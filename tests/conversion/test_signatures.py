"""The INT8 model keeps the plain converter's interface, and validate pairs tensors by key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import convert, validate

pytestmark = pytest.mark.tf


def _plain(source: Path) -> bytes:
    import keras
    import tensorflow as tf

    if source.is_dir():
        return tf.lite.TFLiteConverter.from_saved_model(str(source)).convert()
    return tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(source)).convert()


def _interpreter(path_or_bytes):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(path_or_bytes, bytes):
        it = Interpreter(model_content=path_or_bytes)
    else:
        it = Interpreter(model_path=str(path_or_bytes))
    it.allocate_tensors()
    return it


def _edit(data: bytes, reverse_outputs: bool = False, drop_signatures: bool = False, rename: bool = False) -> bytes:
    """A float .tflite as another tool might write it: outputs in another order, no SignatureDef,
    other tensor names."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = root.subgraphs[0]
    if reverse_outputs:
        graph.outputs = list(graph.outputs)[::-1]
        for sig in root.signatureDefs or []:
            sig.outputs = list(sig.outputs)[::-1]
    if drop_signatures:
        root.signatureDefs = []
    if rename:
        for i, t in enumerate(graph.tensors):
            t.name = f"t{i}"
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def multi_output_keras(models_dir) -> Path:
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    heads = [keras.layers.Dense(n, name=f"head_{n}")(x) for n in (10, 3)]
    path = models_dir / "multi_output.keras"
    keras.Model(inputs, heads).save(path)
    return path


@pytest.fixture(scope="session")
def dict_saved_model(models_dir) -> Path:
    """Three dict outputs in non-alphabetical order, two of them of one shape; a second,
    different signature."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    module = tf.Module()
    module.w1 = tf.Variable(rng.normal(size=(64, 6)).astype(np.float32))
    module.w2 = tf.Variable(rng.normal(size=(64, 6)).astype(np.float32))
    module.w3 = tf.Variable(rng.normal(size=(64, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 1), tf.float32, name="image")])
    def serve(image):
        flat = tf.reshape(image, (-1, 64))
        return {"scores": flat @ module.w1, "boxes": tf.nn.relu(flat @ module.w2), "anchors": flat @ module.w3}

    module.serve = serve
    path = models_dir / "dict_saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return path


@pytest.fixture(scope="session")
def two_signature_saved_model(models_dir) -> Path:
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.5)
    spec = [tf.TensorSpec((1, 6), tf.float32, name="x")]
    serve = tf.function(lambda x: {"scores": x * module.v}, input_signature=spec)
    embed = tf.function(lambda x: {"embedding": x + module.v}, input_signature=spec)
    module.serve_fn, module.embed_fn = serve, embed  # attributes named like a key lose it in the converter (TF 2.21)
    path = models_dir / "two_signatures"
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve, "embed": embed})
    return path


@pytest.fixture(scope="session")
def same_shape_inputs_keras(models_dir) -> Path:
    import keras

    keras.utils.set_random_seed(3)
    left, right = keras.Input((6,), name="left"), keras.Input((6,), name="right")
    x = keras.layers.Concatenate()([keras.layers.Dense(5, name="dl")(left), keras.layers.Dense(5, name="dr")(right) * 3.0])
    path = models_dir / "same_shape_inputs.keras"
    keras.Model([left, right], keras.layers.Dense(4, name="out")(x)).save(path)
    return path


def _assert_runner_matches_invoke(path: Path) -> None:
    it = _interpreter(path)
    runner = it.get_signature_runner("serving_default")
    feeds = {}
    for key, detail in runner.get_input_details().items():
        feeds[key] = np.random.default_rng(0).integers(-20, 20, size=detail["shape"]).astype(detail["dtype"])
    got = {k: np.array(v) for k, v in runner(**feeds).items()}
    it = _interpreter(path)  # a fresh interpreter: the runner's outputs alias the first one's buffers
    for key, detail in runner.get_input_details().items():
        it.set_tensor(detail["index"], feeds[key])
    it.invoke()
    for key, detail in runner.get_output_details().items():
        np.testing.assert_array_equal(got[key], it.get_tensor(detail["index"]))
    assert len(got) == len(it.get_output_details())


@pytest.mark.parametrize("fixture", ["cnn_keras", "multi_output_keras", "dict_saved_model"])
def test_int8_model_has_the_plain_converters_signatures(fixture, request, digits_calib, tmp_path):
    source = request.getfixturevalue(fixture)
    result = convert(source, tmp_path / "m.tflite", digits_calib, samples=16)
    plain = _interpreter(_plain(source)).get_signature_list()
    ours = _interpreter(result.output).get_signature_list()
    assert ours == plain and ours["serving_default"]["outputs"]
    _assert_runner_matches_invoke(result.output)
    # the manifest speaks in keys: each key resolves to a tensor of the written model
    it = _interpreter(result.output)
    (manifest_sig,) = result.manifest.to_json()["signatures"]
    for side, details in (("inputs", it.get_input_details()), ("outputs", it.get_output_details())):
        by_index = {d["index"]: d for d in details}
        for port in manifest_sig[side]:
            assert by_index[port["index"]]["name"] == port["name"]
            assert by_index[port["index"]]["quantization"] == (pytest.approx(port["scale"]), port["zero_point"])


def test_saved_model_signature_keys_keep_their_order(dict_saved_model, digits_calib, tmp_path):
    result = convert(dict_saved_model, tmp_path / "m.tflite", digits_calib, samples=16)
    sig = _interpreter(result.output).get_signature_list()["serving_default"]
    assert set(sig["outputs"]) == {"scores", "boxes", "anchors"} and sig["inputs"] == ["image"]


def test_tf1_converter_path_restores_the_signature(dict_saved_model, digits_calib, tmp_path, monkeypatch):
    """A SavedModel that tf.saved_model.load rejects goes through the TF1 converter, which writes
    no SignatureDef: edgeq writes the SavedModel's own back."""
    import tensorflow as tf

    plain = _interpreter(_plain(dict_saved_model)).get_signature_list()

    def refuse(*args, **kwargs):
        raise ValueError("optimizer slot objects cannot be restored")

    monkeypatch.setattr(tf.saved_model, "load", refuse)
    result = convert(
        dict_saved_model, tmp_path / "v1.tflite", digits_calib, samples=16, isolated=False, cache=False
    )  # the patch lives here, where the cache cannot see it
    assert result.manifest.source.kind == "saved_model (TF1 converter)"
    ours = _interpreter(result.output).get_signature_list()
    assert {k: sorted(v) for k, v in ours["serving_default"].items()} == {
        k: sorted(v) for k, v in plain["serving_default"].items()
    }
    _assert_runner_matches_invoke(result.output)


def test_signature_all_converts_every_signature(two_signature_saved_model, tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "both.npz"
    np.savez(data, **{"serving_default/x": rng.random((12, 6), np.float32), "embed/x": rng.random((12, 6), np.float32)})
    result = convert(two_signature_saved_model, tmp_path / "all.tflite", data, samples=12, signatures=("all",))
    it = _interpreter(result.output)
    assert it.get_signature_list() == _interpreter(_plain(two_signature_saved_model)).get_signature_list()
    assert set(it.get_signature_list()) == {"serving_default", "embed"}
    for key, outputs in (("serving_default", {"scores"}), ("embed", {"embedding"})):
        runner = it.get_signature_runner(key)
        ((name, detail),) = runner.get_input_details().items()
        got = runner(**{name: np.zeros(detail["shape"], detail["dtype"])})
        assert set(got) == outputs
    assert {s.key for s in result.manifest.signatures} == {"serving_default", "embed"}


def _outputs(result) -> dict[str, float]:
    return {o.name: o.sqnr_db for o in result.outputs}


def test_validate_pairs_a_reordered_reference_by_key(dict_saved_model, digits_calib, tmp_path, cli):
    int8 = convert(dict_saved_model, tmp_path / "m.tflite", digits_calib, samples=32).output
    plain = _plain(dict_saved_model)
    same, reordered = tmp_path / "same.tflite", tmp_path / "reordered.tflite"
    same.write_bytes(plain)
    reordered.write_bytes(_edit(plain, reverse_outputs=True))
    assert [d["name"] for d in _interpreter(reordered).get_output_details()] != [
        d["name"] for d in _interpreter(same).get_output_details()
    ]
    val = digits_calib.parent / "val"
    baseline = validate(int8, same, val, runs=2, warmup=0)
    swapped = validate(int8, reordered, val, runs=2, warmup=0)
    assert swapped.pairing.outputs == "signature key"
    assert _outputs(swapped) == _outputs(baseline)
    assert all(o.reference_name == o.name for o in swapped.outputs)
    code, _, err = cli("validate", int8, "--reference", reordered, "--data", val, "--runs", "2", "--warmup", "0")
    assert code == 0, err


def test_same_shape_outputs_without_keys_are_not_guessed(dict_saved_model, digits_calib, tmp_path, cli):
    """scores and boxes share a shape: only keys tell them apart."""
    int8 = convert(dict_saved_model, tmp_path / "m.tflite", digits_calib, samples=32).output
    anonymous = tmp_path / "anonymous.tflite"
    anonymous.write_bytes(_edit(_plain(dict_saved_model), reverse_outputs=True, drop_signatures=True, rename=True))
    code, _, err = cli("validate", int8, "--reference", anonymous, "--data", digits_calib.parent / "val", "--runs", "2")
    assert code == 2 and "cannot pair the outputs" in err and "scores [1, 6]" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_two_same_shape_inputs_fed_by_key_in_either_order(same_shape_inputs_keras, tmp_path):
    rng = np.random.default_rng(0)
    left, right = rng.normal(size=(24, 6)).astype(np.float32), 5 * rng.normal(size=(24, 6)).astype(np.float32)
    forward, backward = tmp_path / "lr.npz", tmp_path / "rl.npz"
    np.savez(forward, left=left, right=right)
    np.savez(backward, right=right, left=left)
    a = convert(same_shape_inputs_keras, tmp_path / "a.tflite", forward, samples=24)
    b = convert(same_shape_inputs_keras, tmp_path / "b.tflite", backward, samples=24)
    assert a.output.read_bytes() == b.output.read_bytes()
    ra = validate(a.output, same_shape_inputs_keras, forward, runs=2, warmup=0)
    rb = validate(a.output, same_shape_inputs_keras, backward, runs=2, warmup=0)
    assert _outputs(ra) == _outputs(rb) and ra.worst_sqnr_db > 25
    # swapping the arrays' roles must change the result: the keys, not the order, decide
    swapped = tmp_path / "swapped.npz"
    np.savez(swapped, left=right, right=left)
    assert _outputs(validate(a.output, same_shape_inputs_keras, swapped, runs=2, warmup=0)) != _outputs(ra)


def test_a_non_default_signature_validates_and_runs_per_layer_on_that_signature(two_signature_saved_model, tmp_path, cli):
    """Converted from `embed` (x + v), the model is validated against the SavedModel's `embed`, not
    `serving_default` (x * v): the output pairs by key and its SQNR is that of a close match."""
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).uniform(-1, 1, (24, 6)).astype(np.float32))
    out = tmp_path / "embed.tflite"
    code, _, err = cli("convert", two_signature_saved_model, "--data", data, "--output", out, "--signature", "embed")
    assert code == 0, err
    assert list(_interpreter(out).get_signature_list()) == ["embed"]
    report = tmp_path / "v.json"
    code, _, err = cli(
        "validate",
        out,
        "--reference",
        two_signature_saved_model,
        "--data",
        data,
        "--runs",
        "2",
        "--warmup",
        "0",
        "--per-layer",
        "--json",
        report,
    )
    assert code == 0, err
    results = json.loads(report.read_text())
    assert [o["reference_name"] for o in results["outputs"]] == ["embedding"]
    assert results["worst_sqnr_db"] > 30
    assert results["per_layer"]["layers"] and results["per_layer"]["calibration"].startswith("recalibrated as the model was")
