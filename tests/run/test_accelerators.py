"""LiteRT's GPU and NPU accelerators through CompiledModel: what ran is decided from evidence in
the runtime's own log (recorded from real runs in fixtures/litert_logs) and in the file; then the
real runs here: WebGPU on Mesa's lavapipe (a software Vulkan adapter) and Intel's dispatch with
OpenVINO's CPU graph backend. Nothing here ran on a phone GPU or an NPU."""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import pytest
from helpers import FIXTURES
from prerequisites import require

from edgeq.run.compiled_model import Accelerator, CompiledModelRunner, _first_error, gpu_evidence, npu_evidence
from edgeq.run.npu import NpuTarget
from edgeq.tflite.model import read_tflite

LOGS = FIXTURES / "litert_logs"
BUCKETIZE = FIXTURES / "tflite" / "bucketize_float.tflite"
SMALL_INT8 = FIXTURES / "manifests" / "v1_3" / "small_cnn_int8.tflite"


def log(name: str) -> str:
    return (LOGS / name).read_text()


# -- at the boundary: the runtime's recorded words -------------------------------------------------


def test_a_gpu_run_names_its_adapter_and_that_it_is_software():
    use = gpu_evidence(
        log("gpu_int8_full.txt"), True, "fp16", {"CONV_2D": 2, "FULLY_CONNECTED": 1, "MEAN": 1, "PAD": 1, "SOFTMAX": 1}
    )
    assert use.ran_on == "gpu" and use.software and use.adapter.startswith("llvmpipe") and "Vulkan" in use.adapter
    assert use.ops_on_accelerator == 6 and use.ops_on_cpu == 0 and use.accelerated and use.precision == "fp16"


def test_ops_the_gpu_refuses_are_named_with_the_delegates_own_split():
    use = gpu_evidence(
        log("gpu_partial_bucketize.txt"), False, "fp16", {"CONV_2D": 1, "BUCKETIZE": 1, "CAST": 1, "ADD": 1, "MEAN": 1}
    )
    assert (use.ops_on_accelerator, use.ops_on_cpu, use.cpu_op_types) == (3, 2, {"BUCKETIZE": 1})
    assert not use.accelerated and any("remaining 2 operations" in line for line in use.evidence)


def test_an_npu_asked_for_on_an_uncompiled_file_whose_jit_failed_is_a_cpu_run():
    """The trap: LiteRT falls back to the CPU without a word; edgeq reads that no plugin applied."""
    use = npu_evidence(log("npu_intel_jit_failed.txt"), False, "npu:intel:LNL", read_tflite(SMALL_INT8))
    assert use.ran_on == "cpu" and not use.accelerated and use.adapter is None
    assert "libopenvino_intel_npu_compiler_loader.so" in use.note and "not compiled" in use.note


def test_without_a_vulkan_adapter_the_reason_is_the_runtimes_own():
    assert "No adapters found" in _first_error(log("gpu_no_adapter.txt"), None)
    assert "dynamic-sized" in _first_error(log("gpu_dynamic_batch.txt"), None)  # the GPU takes static shapes only
    assert "OpenCL" not in _first_error(log("gpu_no_adapter.txt"), None)  # the OpenCL probe's miss is no reason


@pytest.mark.parametrize(
    "text, error",
    [("gpu:x", "use gpu or npu"), ("npu", "use gpu or npu"), ("npu:arm", "use one of intel"), ("npu:qualcomm", "name the SoC")],
)
def test_a_wrong_accelerator_is_a_usage_error(text, error):
    from edgeq.core.errors import UsageError

    with pytest.raises(UsageError, match=error):
        Accelerator.parse(text)


def test_the_require_accelerated_gate_names_the_ops_left_to_the_cpu():
    from edgeq.validation.accelerators import accelerated_gate
    from edgeq.validation.results import DeviceResult

    partial = gpu_evidence(log("gpu_partial_bucketize.txt"), False, "fp16", {"BUCKETIZE": 1})
    gate = accelerated_gate(DeviceResult("gpu", "local", accelerator=partial))
    assert gate.failed and "BUCKETIZE x1" in gate.note and gate.value == 2
    fell = npu_evidence(log("npu_intel_jit_failed.txt"), False, "npu:intel:LNL", read_tflite(SMALL_INT8))
    assert accelerated_gate(DeviceResult("npu", "local", accelerator=fell)).failed


# -- for real, here --------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def vulkan_adapter() -> bool:
    """Whether LiteRT's GPU accelerator finds a Vulkan adapter on this machine (a real run)."""
    from edgeq.run.litert import LiteRTRunner

    runner = LiteRTRunner(SMALL_INT8)
    try:
        measured = CompiledModelRunner(Accelerator.parse("gpu")).measure(
            SMALL_INT8, [a[None] for a in runner.quantize_inputs([__import__("numpy").zeros((1, 32, 32, 3), "float32")])], 0, 1
        )
    except Exception:
        return False
    return measured.accelerator.ran_on == "gpu"


def need_gpu() -> None:
    require(
        vulkan_adapter(),
        "LiteRT's GPU accelerator finds no Vulkan adapter: apt-get install -t bookworm-backports "
        "mesa-vulkan-drivers (Mesa >= 25; .ci/run does)",
    )


def need_intel() -> None:
    require(
        importlib.util.find_spec("ai_edge_litert_sdk_intel") is not None and importlib.util.find_spec("openvino") is not None,
        "Intel's NPU dispatch needs ai-edge-litert-sdk-intel==2.3.0 and openvino==2026.3.1 (the dev extra installs them)",
    )


def _validate(cli, model, reference, data, tmp_path, *flags) -> tuple[int, str, dict]:
    out = tmp_path / "r.json"
    code, text, err = cli(
        "validate",
        model,
        "--reference",
        reference,
        "--data",
        data,
        "--runs",
        "5",
        "--warmup",
        "1",
        "--json",
        out,
        "--force",
        *flags,
    )
    return code, text + err, json.loads(out.read_text()) if out.exists() else {}


@pytest.mark.tf
def test_an_int8_model_on_the_gpu_is_scored_and_compared_with_the_cpu_run(cnn_int8, cnn_keras, digits_calib, tmp_path, cli):
    need_gpu()
    val = digits_calib.parent / "val"
    code, text, result = _validate(cli, cnn_int8.output, cnn_keras, val, tmp_path, "--accelerator", "gpu")
    assert code == 0, text
    device = result["devices"][0]
    use = device["accelerator"]
    assert use["ran_on"] == "gpu" and use["precision"] == "fp16" and use["software"] is True and "llvmpipe" in use["adapter"]
    assert use["ops_on_cpu"] == 0 and device["worst_sqnr_db"] > 20 and device["capabilities"]["latency"] is False
    assert device["vs_local"]["outputs"][0]["elements"] == result["accuracy"]["samples"] * 10
    assert "runs dequantized" in device["note"]
    code, text, exact = _validate(
        cli, cnn_int8.output, cnn_keras, val, tmp_path, "--accelerator", "gpu", "--gpu-precision", "fp32"
    )
    assert code == 0 and exact["devices"][0]["vs_local"]["bit_exact"] is True, text


@pytest.mark.tf
def test_fp16_overflow_on_the_gpu_is_named_and_fp32_fixes_it(tmp_path, cli):
    """A float model whose middle tensor passes 65504: fp16 gives inf where the CPU gives finite values."""
    import keras
    import numpy as np

    need_gpu()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    big, small = keras.layers.Conv2D(4, 1, use_bias=False), keras.layers.Conv2D(2, 1, use_bias=False)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(small(big(x))))
    big.set_weights([np.full((1, 1, 4, 4), 3.0e4, np.float32)])
    small.set_weights([np.full((1, 1, 4, 2), 1.0e-4, np.float32)])
    model.save(tmp_path / "big.keras")
    from edgeq.frameworks.sources import load_source

    (tmp_path / "big.tflite").write_bytes(load_source(tmp_path / "big.keras").make_converter().convert())
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 3)).astype(np.float32))
    code, text, result = _validate(
        cli, tmp_path / "big.tflite", tmp_path / "big.keras", tmp_path / "x.npy", tmp_path, "--accelerator", "gpu"
    )
    warning = next(w for w in result["warnings"] if "likely broken on the GPU" in w)
    assert code == 0 and "past fp16's largest value 65504" in warning and "--gpu-precision fp32" in warning
    assert result["devices"][0]["vs_local"]["outputs"][0]["sqnr_db"] is None  # not finite
    code, text, fixed = _validate(
        cli,
        tmp_path / "big.tflite",
        tmp_path / "big.keras",
        tmp_path / "x.npy",
        tmp_path,
        "--accelerator",
        "gpu",
        "--gpu-precision",
        "fp32",
    )
    assert (
        not [w for w in fixed["warnings"] if "likely broken" in w]
        and fixed["devices"][0]["vs_local"]["outputs"][0]["sqnr_db"] > 60
    )


@pytest.mark.tf
def test_an_op_the_gpu_computes_wrongly_is_named_not_blamed_on_precision(tmp_path, cli):
    """LiteRT 2.3's GPU accelerator takes ONE_HOT (is_fully_accelerated() says True) and sets the
    wrong positions, at fp32 too: found in a sweep of single-op models (GPU against CPU). In a
    chain of ops, bisection over cut models names that op, says it is no precision issue, and
    offers keeping it off the GPU, not --gpu-precision fp32."""
    import numpy as np
    import tensorflow as tf

    need_gpu()
    weights = tf.constant(np.random.default_rng(0).normal(size=(1, 1, 4, 6)).astype(np.float32))

    def chain(x):
        y = tf.nn.relu(x * 1.5 + 0.25)
        hot = tf.one_hot(tf.cast(tf.floor(tf.minimum(y, 3.99)), tf.int32), 4)
        return tf.nn.relu(tf.nn.conv2d(hot * (y[..., None] + 1.0), weights, 1, "SAME"))

    fn = tf.function(chain, input_signature=[tf.TensorSpec((1, 8, 8), tf.float32, name="x")])
    model = tmp_path / "chain.tflite"
    model.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert())
    np.save(tmp_path / "x.npy", np.random.default_rng(1).uniform(0, 2.5, (8, 8, 8)).astype(np.float32))
    code, text, result = _validate(cli, model, model, tmp_path / "x.npy", tmp_path, "--accelerator", "gpu")
    use = result["devices"][0]["accelerator"]
    assert code == 0 and use["fully_accelerated"] is True and use["ops_on_cpu"] == 0, text
    warning = next(w for w in result["warnings"] if "likely broken on the GPU" in w)
    assert "not a precision issue: at fp32 op " in warning and " ONE_HOT (output " in warning, warning
    assert "keep that ONE_HOT off the GPU" in warning and "--gpu-precision" not in warning and "fp16 rounding" not in warning


def test_an_op_the_gpu_does_not_take_fails_require_accelerated(tmp_path, cli):
    need_gpu()
    code, text, result = _validate(
        cli, BUCKETIZE, BUCKETIZE, _inputs(tmp_path, (16, 16, 3)), tmp_path, "--accelerator", "gpu", "--require-accelerated"
    )
    use = result["devices"][0]["accelerator"]
    assert code == 1 and use["cpu_op_types"] == {"BUCKETIZE": 1} and use["ops_on_cpu"] == 2
    assert "BUCKETIZE x1" in text and "FAIL" in text


def _inputs(tmp_path: Path, shape: tuple[int, ...]) -> Path:
    import numpy as np

    np.save(tmp_path / "in.npy", np.random.default_rng(0).uniform(0, 1, (8, *shape)).astype(np.float32))
    return tmp_path / "in.npy"


@pytest.mark.tf
def test_intel_npu_compile_then_validate_runs_the_dispatch(cnn_int8, cnn_keras, digits_calib, tmp_path, cli):
    need_intel()
    source = tmp_path / "cnn_int8.tflite"
    for path in (cnn_int8.output, cnn_int8.manifest_path):
        (tmp_path / path.name.replace(cnn_int8.output.stem, "cnn_int8")).write_bytes(path.read_bytes())
    code, text, err = cli("compile", source, "--npu", "intel", "-o", tmp_path / "cnn_intel.tflite")
    assert code == 0, err
    compiled = read_tflite(tmp_path / "cnn_intel.tflite")
    assert [op.type for op in compiled.operators] == ["CUSTOM:DISPATCH_OP"]
    record = json.loads((tmp_path / "cnn_intel.edgeq.json").read_text())["npu"]
    assert record["partitions"] == 1 and record["ops_offloaded"] == record["ops_total"] and record["source"] == "cnn_int8.tflite"
    assert "IntelOpenVINO" in record["stamp"] and record["graph_backend"] in ("cpu", "npu")
    code, text, result = _validate(cli, tmp_path / "cnn_intel.tflite", cnn_keras, digits_calib.parent / "val", tmp_path)
    use = result["devices"][0]["accelerator"]
    assert code == 0 and use["ran_on"] == "npu" and "IntelOpenvino" in use["adapter"] and use["partitions"] == 1, text
    assert result["devices"][0]["vs_local"]["outputs"][0]["elements"] > 0 and result["model"].endswith("cnn_intel.tflite")


def test_the_intel_compiler_leaves_an_op_it_does_not_take_to_the_cpu(tmp_path):
    need_intel()
    from edgeq.run.npu import compile_for_npu

    compiled = compile_for_npu(BUCKETIZE.read_bytes(), NpuTarget.parse("intel"))
    assert compiled.dispatch.ops_on_cpu == {"BUCKETIZE": 1} and compiled.dispatch.partitions == 2
    assert (compiled.ops_offloaded, compiled.ops_total) == (4, 5) and "partially compiled" in compiled.report


@pytest.mark.tf
def test_the_trap_an_npu_run_that_fell_back_to_the_cpu_is_a_cpu_run(cnn_int8, cnn_keras, digits_calib, tmp_path, cli):
    need_intel()
    code, text, result = _validate(
        cli,
        cnn_int8.output,
        cnn_keras,
        digits_calib.parent / "val",
        tmp_path,
        "--accelerator",
        "npu:intel",
        "--require-accelerated",
    )
    device = result["devices"][0]
    assert code == 1 and device["accelerator"]["ran_on"] == "cpu" and device["name"].startswith("cpu ")
    assert "every op ran on LiteRT's CPU kernels" in text and "ran on the npu" not in text


def test_a_vendor_without_its_sdk_is_one_line_and_writes_nothing(tmp_path, cli):
    model = tmp_path / "m.tflite"
    model.write_bytes(SMALL_INT8.read_bytes())
    code, out, err = cli("compile", model, "--npu", "qualcomm:SM8650", "-o", tmp_path / "qc.tflite")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "ai-edge-litert-sdk-qualcomm" in err and "libQnnHtp.so" in err and not (tmp_path / "qc.tflite").exists()


@pytest.mark.parametrize(
    "stamped, vendor",
    [("IntelOpenVINO", "intel"), ("Qualcomm", "qualcomm"), ("MediaTek", "mediatek"), ("Google_Tensor", "google-tensor")],
)
def test_a_compiled_files_stamp_names_its_npu(stamped, vendor):
    from edgeq.tflite.dispatch import Dispatch, Stamp
    from edgeq.validation.accelerators import stamp_vendor

    assert stamp_vendor(Dispatch(Stamp(stamped, "X"), 1, {})) == vendor


@pytest.mark.tf
def test_an_input_not_batched_on_its_first_axis_runs_on_the_accelerator(tmp_path):
    """Runners take samples on a new leading axis, (N, *input shape): a [2, 1, 4] state is one
    sample's input, not two rows of a batch (the local runner and the GPU agree with run_raw)."""
    import numpy as np
    import tensorflow as tf

    from edgeq.run.litert import LiteRTRunner

    need_gpu()

    class Step(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 1, 4], tf.float32, name="state")])
        def __call__(self, state):
            return {"out": tf.tanh(state[0] + 2.0 * state[1])}

    step = Step()
    path = tmp_path / "step.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([step.__call__.get_concrete_function()], step).convert())
    local = LiteRTRunner(path)
    samples = np.random.default_rng(0).uniform(-1, 1, (3, 2, 1, 4)).astype(np.float32)
    want = [local.run_raw([s])[0] for s in samples]
    for runner in (local, CompiledModelRunner(Accelerator.parse("gpu", "fp32"))):
        measured = runner.measure(path, [samples], 0, 1)
        assert measured.outputs[0].shape == (3, 1, 4)
        np.testing.assert_allclose(measured.outputs[0], np.stack(want), atol=1e-5)
