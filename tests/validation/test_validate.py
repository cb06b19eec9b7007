"""edgeq validate with the real LiteRT interpreter, on a CNN trained for seconds on the bundled digits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import validate

from edgeq.run.litert import LiteRTRunner, to_float, to_model_dtype

REQUIRED = [
    "model",
    "reference",
    "size.float_bytes",
    "size.int8_bytes",
    "size.ratio",
    "accuracy.float_top1",
    "accuracy.int8_top1",
    "accuracy.top1_drop_pts",
    "accuracy.agreement",
    "latency.delegate",
    "latency.threads",
    "latency.int8_ms.p50",
    "latency.int8_ms.p90",
    "latency.int8_ms.mean",
    "latency.float_ms.p50",
    "latency.float_ms.p90",
    "latency.float_ms.mean",
    "latency.speedup",
    "latency.delegated_nodes",
    "latency.total_nodes",
    "gates",
    "passed",
]


def _get(data, key):
    for part in key.split("."):
        assert part in data, key
        data = data[part]
    return data


def test_quantize_dequantize_round_trip():
    real = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    q = to_model_dtype(real, np.int8, 0.01, -5)
    assert q.tolist() == [-105, -5, 45, 127]  # 2.0 saturates
    np.testing.assert_allclose(to_float(q, 0.01, -5)[:3], real[:3], atol=0.005)
    assert to_model_dtype(real, np.float32, 0.0, 0).dtype == np.float32


def test_demo_model_accuracy_and_json_contract(trained, digits_calib, tmp_path):
    keras_path, int8, float_path = trained
    result = validate(int8, keras_path, digits_calib.parent / "val", runs=20, warmup=2).to_json()  # the JSON contract
    for key in REQUIRED:
        _get(result, key)
    acc = result["accuracy"]
    assert acc["labelled"] == 359 and acc["float_top1"] > 0.85
    assert acc["top1_drop_pts"] <= 0.5 and acc["agreement"] >= 0.98
    assert acc["top1_drop_pts"] == pytest.approx(100 * (acc["float_top1"] - acc["int8_top1"]))
    (out,) = result["outputs"]
    assert out["sqnr_db"] > 20 and out["cosine"] > 0.99
    assert result["size"]["int8_bytes"] == int8.stat().st_size and result["size"]["ratio"] < 0.5
    assert result["passed"] is True and result["gates"] == []


def test_float_tflite_reference_gives_same_comparison(trained, digits_calib):
    keras_path, int8, float_path = trained
    a = validate(int8, keras_path, digits_calib.parent / "val", limit=60, runs=5, warmup=1)
    b = validate(int8, float_path, digits_calib.parent / "val", limit=60, runs=5, warmup=1)
    assert a.accuracy.int8_top1 == b.accuracy.int8_top1
    assert a.outputs[0].sqnr_db == pytest.approx(b.outputs[0].sqnr_db, abs=0.01)


def test_delegate_none_takes_no_nodes_and_xnnpack_takes_some(trained):
    _, int8, _ = trained
    xnnpack = LiteRTRunner(int8, "xnnpack")
    plain = LiteRTRunner(int8, "none")
    reference = LiteRTRunner(int8, "ref")
    assert xnnpack.delegated_nodes > 0 and xnnpack.delegated_nodes <= xnnpack.total_nodes
    assert plain.delegated_nodes == 0 and reference.delegated_nodes == 0
    assert sum(plain.kept_ops.values()) == plain.total_nodes
    x = [np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)]
    # Same int8 model, different kernels: outputs agree to a couple of quantization steps.
    scale = xnnpack.outputs[0]["quantization"][0]
    assert np.max(np.abs(xnnpack.run(x)[0] - reference.run(x)[0])) <= 2 * scale + 1e-9


def test_strict_gate_exits_1_and_json_marks_it(trained, digits_calib, tmp_path, cli):
    keras_path, int8, float_path = trained
    out = tmp_path / "results.json"
    code, stdout, _ = cli(
        "validate",
        int8,
        "-r",
        float_path,
        "-d",
        digits_calib.parent / "val",
        "--limit",
        "50",
        "--runs",
        "5",
        "--min-sqnr",
        "200",
        "--min-agreement",
        "0.5",
        "--json",
        out,
    )
    assert code == 1 and "FAIL min_sqnr" in stdout and "PASS min_agreement" in stdout
    data = json.loads(out.read_text())
    gates = {g["name"]: g for g in data["gates"]}
    assert gates["min_sqnr"]["passed"] is False and gates["min_sqnr"]["limit"] == 200
    assert gates["min_sqnr"]["value"] == data["worst_sqnr_db"]
    assert gates["min_agreement"]["passed"] is True and data["passed"] is False


def test_no_labels_gives_nulls_and_agreement(trained, tmp_path):
    keras_path, int8, float_path = trained
    x = np.random.default_rng(0).random((30, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = validate(int8, float_path, tmp_path / "x.npy", runs=3, warmup=0, gates={"max_drop": 1.0})
    assert result.accuracy.float_top1 is None and result.accuracy.top1_drop_pts is None
    assert result.accuracy.agreement is not None
    assert result.gates[0].value is None and result.gates[0].status == "failed"


def test_npz_labels(trained, digits_calib, tmp_path):
    keras_path, int8, float_path = trained
    from edgeq.data.samples import InputSpec, open_samples

    source = open_samples(digits_calib.parent / "val", [InputSpec("image", (1, 8, 8, 1))], limit=40)
    x = np.concatenate([s[0] for s in source])
    np.savez(tmp_path / "val.npz", x=x, y=np.asarray(source.labels))
    from_npz = validate(int8, float_path, tmp_path / "val.npz", runs=2, warmup=0)
    assert from_npz.accuracy.labelled == 40 and from_npz.accuracy.float_top1 > 0.8


def test_bad_inputs_exit_2(trained, digits_calib, tmp_path, cli):
    keras_path, int8, float_path = trained
    bad = tmp_path / "x.npy"
    np.save(bad, np.zeros((4, 28, 28, 1), np.float32))
    code, _, stderr = cli("validate", int8, "-r", float_path, "-d", bad)
    assert code == 2 and "[N, 8, 8, 1]" in stderr and len(stderr.strip().splitlines()) == 1
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(int8.read_bytes()[: int8.stat().st_size // 3])
    code, _, stderr = cli("validate", cut, "-r", float_path, "-d", digits_calib)
    assert code == 2 and "cut.tflite" in stderr and len(stderr.strip().splitlines()) == 1
    code, _, stderr = cli("validate", int8, "-r", float_path, "-d", digits_calib, "--delegate-library", "libedgetpu.so.1")
    assert code == 2 and "libedgetpu.so.1" in stderr


def test_tflite_vs_tflite_does_not_import_tensorflow(trained, digits_calib):
    _, int8, float_path = trained
    code = (
        "import sys\nfrom edgeq.cli import app\ntry:\n"
        f"    app(['validate', '{int8}', '-r', '{float_path}', '-d', '{digits_calib.parent / 'val'}', '--limit', '20', '--runs', "
        f"'3'])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "agreement" in out and out.strip().splitlines()[-1] == "[]"


def test_missing_delegate_library_real_process_one_line(trained, digits_calib):
    _, int8, float_path = trained
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeq.cli",
            "validate",
            str(int8),
            "-r",
            str(float_path),
            "-d",
            str(digits_calib),
            "--delegate-library",
            "libedgetpu.so.1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "libedgetpu.so.1" in proc.stderr


def test_two_interpreter_pairs_give_the_figures_of_one(trained, digits_calib):
    keras_path, int8, _ = trained
    one = validate(int8, keras_path, digits_calib.parent / "val", runs=3, warmup=1, jobs=1)
    two = validate(int8, keras_path, digits_calib.parent / "val", runs=3, warmup=1, jobs=2)
    assert one.accuracy == two.accuracy and one.outputs == two.outputs and one.accuracy.samples > 100
    assert one.worst_sqnr_db == two.worst_sqnr_db and one.worst_slice_sqnr_db == two.worst_slice_sqnr_db


def test_a_keras_reference_is_converted_once_then_taken_from_the_cache(trained, digits_calib, tmp_path, monkeypatch):
    """Cold, the INT8 model runs on every sample while the reference converts in its own process;
    from the cache both run side by side. The figures are the same either way, with any --jobs."""
    monkeypatch.setenv("EDGEQ_CACHE_DIR", str(tmp_path / "cache"))
    keras_path, int8, _ = trained
    first = validate(int8, keras_path, digits_calib.parent / "val", runs=3, warmup=1, limit=64)
    again = validate(int8, keras_path, digits_calib.parent / "val", runs=3, warmup=1, limit=64)
    cold = validate(int8, keras_path, digits_calib.parent / "val", runs=3, warmup=1, limit=64, cache=False, jobs=2)
    assert "cache" not in first.reference_tflite and "kept in the conversion cache" in again.reference_tflite
    assert "cache" not in cold.reference_tflite
    assert first.outputs == again.outputs == cold.outputs and first.size == again.size
    assert first.accuracy == again.accuracy == cold.accuracy and first.worst_slice_sqnr_db == cold.worst_slice_sqnr_db


@pytest.mark.tf
def test_streaming_a_stateful_model_feeds_each_model_its_own_state(tmp_path, cli):
    """A recurrent step with a [2, 1, 16] state: per window, both models get the float model's
    recorded state from the data; with --feedback each feeds its own back, as the app does, and the
    INT8 model's error compounds: the streamed figures differ from the per-window ones."""
    import json

    import tensorflow as tf
    from helpers import convert

    rng = np.random.default_rng(0)

    class Step(tf.Module):
        def __init__(self):
            self.w = tf.Variable(rng.normal(0, 0.4, (10, 16)).astype(np.float32))
            self.u = tf.Variable((np.eye(16) * 0.9 + rng.normal(0, 0.05, (16, 16))).astype(np.float32))

        @tf.function(
            input_signature=[tf.TensorSpec([1, 10], tf.float32, name="x"), tf.TensorSpec([2, 1, 16], tf.float32, name="state")]
        )
        def __call__(self, x, state):
            top = tf.tanh(tf.matmul(x, self.w) * 0.3 + tf.matmul(state[1], self.u))
            bottom = tf.tanh(tf.matmul(x, self.w) + tf.matmul(state[0], self.u))
            return {"speech": tf.sigmoid(tf.reduce_sum(top, axis=1, keepdims=True)), "state_out": tf.stack([bottom, top])}

    step = Step()
    tf.saved_model.save(step, str(tmp_path / "step"), signatures=step.__call__.get_concrete_function())
    xs = rng.normal(size=(60, 10)).astype(np.float32)
    states, state = [], np.zeros((2, 1, 16), np.float32)
    for x in xs:  # the float model's own trajectory: what the per-window run is given
        states.append(state)
        state = step(tf.constant(x[None]), tf.constant(state))["state_out"].numpy()
    starts = np.zeros(60, np.int8)
    starts[[0, 30]] = 1
    np.savez(tmp_path / "d.npz", x=xs, state=np.stack(states), starts=starts)
    convert(tmp_path / "step", tmp_path / "step.tflite", tmp_path / "d.npz", samples=60)
    code, text, err = cli(
        "validate",
        tmp_path / "step.tflite",
        "--reference",
        tmp_path / "step",
        "--data",
        tmp_path / "d.npz",
        "--feedback",
        "state_out=state",
        "--json",
        tmp_path / "r.json",
        "--runs",
        "3",
        "--warmup",
        "1",
    )
    assert code == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    streamed = {o["name"]: o for o in result["streaming"]["outputs"]}
    window = {o["name"]: o["sqnr_db"] for o in result["outputs"]}
    assert result["streaming"]["sequences"] == 2 and result["streaming"]["steps"] == 60
    assert streamed["state_out"]["first_step_sqnr_db"] is None or streamed["state_out"]["first_step_sqnr_db"] > 0
    assert streamed["speech"]["sqnr_db"] < window["speech"] - 1  # what the app sees: the INT8 state drifts (34.3 vs 40.3 dB here)
    assert [p["index"] for p in streamed["speech"]["drift"]][0] == 0 and streamed["speech"]["drift"][-1]["index"] == 29
    assert "streamed  2 sequence(s), 60 steps, state_out -> state" in text

    # the same in convert's budget: the search judges what the app sees
    budget = ("convert", tmp_path / "step", "--data", tmp_path / "d.npz", "--eval-data", tmp_path / "d.npz", "--min-sqnr", "20")
    code, _, err = cli(*budget, "-o", tmp_path / "window.tflite")
    code_streamed, _, err_streamed = cli(*budget, "--feedback", "state_out=state", "-o", tmp_path / "streamed.tflite")
    assert code == 0 and code_streamed == 0, err + err_streamed
    read = lambda name: json.loads(next(tmp_path.glob(f"{name}*.edgeq.json")).read_text())  # noqa: E731
    window, streamed_budget = read("window"), read("streamed")
    assert streamed_budget["options"]["feedback"] == {"state_out": "state"}
    first = {o["name"]: o["sqnr_db"] for o in window["search"]["steps"][0]["outputs"]}
    first_streamed = {o["name"]: o["sqnr_db"] for o in streamed_budget["search"]["steps"][0]["outputs"]}
    assert first_streamed["speech"] < first["speech"] - 1  # full INT8, streamed: the drift the app would see


@pytest.mark.parametrize(
    "cpuinfo, said",
    [
        ("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 avx512f avx512_vnni\n", "with int8 dot-product instructions"),
        ("model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx2 fma\n", "without int8 dot-product instructions: INT8's speed"),
    ],
)
def test_the_latency_line_names_the_cpu_and_its_int8_dot_products(cpuinfo, said, trained, digits_calib, cli, monkeypatch):
    """What the demo's latency says on a CPU with VNNI and on one without: read from a /proc/cpuinfo
    text, so the test holds on either kind of machine."""
    from edgeq.host.machine import cpu_of

    monkeypatch.setattr("edgeq.validation.sweep.this_cpu", lambda: cpu_of(cpuinfo, "x86_64"))
    keras_path, int8, float_path = trained
    code, out, err = cli("validate", int8, "--reference", float_path, "-d", digits_calib.parent / "val", "--runs", "5")
    assert code == 0, err
    latency = out.splitlines()[next(i for i, line in enumerate(out.splitlines()) if line.startswith("latency")) + 1]
    assert latency.strip().startswith("on ") and said in latency


def _segmentation(tmp_path, digits_calib, cli) -> Path:
    """A small Keras net whose output is a mask (LOGISTIC of the input's size), val.npy of 40 digits
    beside it, and its INT8 file."""
    import keras

    from edgeq.data.samples import InputSpec, open_samples

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="mask")(x)
    keras.Model(inputs, outputs).save(tmp_path / "seg.keras")
    source = open_samples(digits_calib.parent / "val", [InputSpec("image", (1, 8, 8, 1))], limit=40)
    np.save(tmp_path / "val.npy", np.concatenate([s[0] for s in source]))
    int8 = tmp_path / "seg_int8.tflite"
    assert cli("convert", tmp_path / "seg.keras", "-d", digits_calib, "-o", int8)[0] == 0
    return int8


@pytest.mark.tf
def test_min_iou_gates_a_mask_in_validate_and_budgets_the_search(digits_calib, tmp_path, cli):
    """Issue 49: a mask is judged by its IoU, not by SQNR alone: --min-iou is a validate gate and a
    convert budget (the search keeps layers in float until the mask's IoU with float's holds)."""
    int8 = _segmentation(tmp_path, digits_calib, cli)
    args = ("validate", int8, "-r", tmp_path / "seg.keras", "-d", tmp_path / "val.npy", "--runs", "2", "--json", "-")
    code, out, err = cli(*args)
    (mask,) = json.loads(out)["outputs"]
    assert code == 0 and mask["iou"] < 1, err
    code, out, _ = cli(*args, "--min-iou", f"{mask['iou'] - 1e-4:.6f}")
    gate = next(g for g in json.loads(out)["gates"] if g["name"] == "min_iou")
    assert code == 0 and gate["status"] == "passed" and gate["value"] == mask["iou"]
    assert cli(*args, "--min-iou", f"{(1 + mask['iou']) / 2:.6f}")[0] == 1
    code, _, err = cli(*args, "--min-iou", "0.9", "--output-role", "output_0=values")
    assert code == 2 and "--min-iou judges a mask output" in err
    out = tmp_path / "seg_iou.tflite"
    code, _, err = cli(
        "convert", tmp_path / "seg.keras", "-d", digits_calib, "-o", out, "--io", "float32",
        "--eval-data", tmp_path / "val.npy", "--min-iou", "0.999", "--json", tmp_path / "m.json",
    )  # fmt: skip
    search = json.loads((tmp_path / "m.json").read_text())["search"]
    assert search["steps"][0]["meets"] is False and "IoU" in search["steps"][0]["missed"][0]
    assert code == 0 and search["met"] and search["chosen"]["k"] >= 1, err
    code, _, err = cli("convert", tmp_path / "seg.keras", "-d", digits_calib, "-o", out, "--force", "--eval-data",
                       tmp_path / "val.npy", "--min-iou", "95%", "--output-role", "output_0=values")  # fmt: skip
    assert code == 2 and "--min-iou judges a mask output" in err


@pytest.mark.tf
def test_a_segmentation_mask_is_judged_by_iou_and_boundary(digits_calib, tmp_path, cli):
    """A per-pixel LOGISTIC of the input's size is a mask without --output-role: validate gives its
    per-pixel agreement, IoU (the pixels exactly at 0.5 said apart) and boundary F-score."""

    int8 = _segmentation(tmp_path, digits_calib, cli)
    code, out, err = cli("validate", int8, "-r", tmp_path / "seg.keras", "-d", tmp_path / "val.npy", "--runs", "2", "--json", "-")
    assert code == 0, err
    (mask,) = json.loads(out)["outputs"]
    assert mask["role"] == "mask" and "the input's size" in mask["role_from"]
    summary = cli("validate", int8, "-r", tmp_path / "seg.keras", "-d", tmp_path / "val.npy", "--runs", "2")[1]
    assert "a mask's per-pixel agreement is on its output line" in summary
    assert 0.5 < mask["iou"] <= 1 and 0 <= mask["boundary_f"] <= 1 and mask["ties"] >= 0 and 0.9 < mask["agreement"] <= 1
