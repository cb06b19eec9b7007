"""Unit tests of the shared modules and the search, with no TensorFlow and no model: the JSON
codec of the typed records, the metrics, atomic writes, and the bisection over a fake evaluator."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from helpers import FIXTURES

from edgeq.core.errors import DataError, OutputExistsError, UsageError
from edgeq.core.fileio import check_writable, write_files_atomically
from edgeq.core.schema import from_json, to_json
from edgeq.scoring.metrics import OutputErrors, Scorer
from edgeq.scoring.roles import OutputFacts, decide_roles, parse_roles
from edgeq.scoring.speed import speedup
from edgeq.validation.results import Accuracy, DeviceResult, Latency, Percentiles, ValidationResult

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_from_json_names_the_key_of_a_wrong_type():
    with pytest.raises(DataError, match=r"r\.latency\.int8_ms\.p50: expected an integer or a number, got str"):
        from_json(ValidationResult, {"model": "m", "reference": "r", "passed": True, "latency": {"int8_ms": {"p50": "1"}}}, "r")
    with pytest.raises(DataError, match=r"r\.devices\[0\]: missing key 'transport'"):
        from_json(ValidationResult, {"model": "m", "reference": "r", "passed": True, "devices": [{"name": "pi"}]}, "r")
    with pytest.raises(DataError, match="expected true/false, got int"):
        from_json(ValidationResult, {"model": "m", "reference": "r", "passed": 1}, "r")


def test_records_round_trip_and_optional_fields_take_defaults():
    record = ValidationResult(
        "m",
        "r",
        True,
        accuracy=Accuracy(agreement=0.5),
        latency=Latency(int8_ms=Percentiles(p50=1.0, samples=(1.0, 2.0))),
        devices=(DeviceResult("pi", "ssh"),),
        warnings=("w",),
    )
    data = to_json(record)
    assert data["latency"]["int8_ms"]["samples"] == [1.0, 2.0] and data["warnings"] == ["w"]
    assert from_json(ValidationResult, data, "r") == record
    assert from_json(ValidationResult, {"model": "m", "reference": "r", "passed": False}, "r").accuracy == Accuracy()


def test_a_newer_major_schema_is_refused():
    with pytest.raises(DataError, match="newer edgeq"):
        ValidationResult.from_json({"model": "m", "reference": "r", "passed": True, "schema_version": "2.0"})


def test_a_1_1_results_file_reads_with_gate_status_and_device_capabilities():
    old = {
        "schema_version": "1.1",
        "model": "m",
        "reference": "r",
        "passed": True,
        "gates": [{"name": "min_sqnr", "description": "d", "limit": 1, "value": 3, "passed": True}],
        "devices": [{"name": "phone", "transport": "adb", "runtime": "benchmark_model", "gates": []}],
    }
    result = ValidationResult.from_json(old)
    assert result.gates[0].status == "passed" and not result.devices[0].capabilities.scores_outputs


# -- metrics ---------------------------------------------------------------------------------


def test_sqnr_agreement_and_top1_on_known_arrays():
    scorer = Scorer(["out"], ["classes"], top_k=2)
    reference = np.array([[1.0, 3.0, 2.0]], np.float32)
    scorer.add([reference], [reference + np.array([[0.1, -0.1, 0.0]], np.float32)], label=1)
    scorer.add([reference], [np.array([[3.0, 1.0, 2.0]], np.float32)], label=1)
    result = scorer.result()
    acc = result.accuracy
    assert acc.agreement == 0.5 and acc.float_top1 == 1.0 and acc.int8_top1 == 0.5 and acc.top1_drop_pts == 50.0
    signal, noise = 2 * (1 + 9 + 4), (0.01 + 0.01) + (4 + 4 + 0)
    assert result.worst_sqnr_db == pytest.approx(10 * math.log10(signal / noise), abs=1e-3)
    assert acc.output == "out" and acc.top_k == 2  # 3 classes > k


def test_no_argmax_over_values_and_top_k_only_above_k_classes():
    scorer = Scorer(["boxes", "face"], ["values", "classes"], top_k=5)
    scorer.add([np.array([[1.0, 2.0]]), np.array([[0.2, 0.8]])], [np.array([[2.0, 1.0]]), np.array([[0.3, 0.7]])], label=1)
    result = scorer.result()
    acc = result.accuracy
    assert acc.output == "face" and acc.agreement == 1.0  # the boxes' argmax flipped; it is not counted
    assert acc.top_k is None and acc.float_topk is None  # 2 classes: no top-5
    boxes, face = result.outputs
    assert boxes.agreement is None and face.agreement == 1.0


def test_a_score_output_agrees_by_its_threshold():
    scorer = Scorer(["p"], ["score"], threshold=0.5)
    for want, got in ((0.9, 0.8), (0.2, 0.3), (0.55, 0.45), (0.1, 0.1)):
        scorer.add([np.array([[want]])], [np.array([[got]])], None)
    out = scorer.result().outputs[0]
    assert out.agreement == 0.75 and out.threshold == 0.5 and scorer.result().accuracy.output is None


def test_a_destroyed_slice_is_found_under_a_healthy_whole():
    """Boxes of ~100 and class scores 0..1 in one [1, 6, 50] tensor, one int8 scale: the scores are gone."""
    rng = np.random.default_rng(0)
    error = OutputErrors("det")
    scale = 200 / 255
    for _ in range(8):
        reference = np.concatenate([rng.uniform(50, 200, (1, 4, 50)), rng.uniform(0, 1, (1, 2, 50))], axis=1)
        error.add(reference, np.round(reference / scale) * scale)
    result = error.score("values", None, None)
    worst = result.worst_slice
    assert result.sqnr_db > 25 and worst.axis == 1 and worst.index in (4, 5) and worst.sqnr_db < 10


def test_small_errors_keep_their_digits_and_an_exact_match_says_so():
    tiny = OutputErrors("t")
    tiny.add(np.array([[1e-6, 2e-6]]), np.array([[1.1e-6, 2e-6]]))
    figures = tiny.score("values", None, None)
    assert figures.max_abs_error == pytest.approx(1e-7, rel=1e-3) and figures.mean_abs_error > 0
    same = OutputErrors("s")
    same.add(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]))
    assert same.score("values", None, None).sqnr_db is None and same.score("values", None, None).exact is True


def test_roles_come_from_evidence_and_say_which():
    facts = [
        OutputFacts("boxes", (1, 4)),
        OutputFacts("landmarks", (1, 10)),
        OutputFacts("prob", (1, 2), "SOFTMAX"),
        OutputFacts("presence", (1, 1), "LOGISTIC"),
        OutputFacts("logits", (1, 7)),
    ]
    roles = decide_roles(facts, {"logits": "classes"})
    assert [r.role for r in roles] == ["values", "values", "classes", "score", "classes"]
    assert "SOFTMAX" in roles[2].evidence and roles[4].evidence == "--output-role"
    by_data = decide_roles([OutputFacts("a", (1, 10)), OutputFacts("b", (1, 3))], class_count=3)
    assert [r.role for r in by_data] == ["values", "classes"] and "labelled classes" in by_data[1].evidence
    assert [r.role for r in decide_roles([OutputFacts("a", (1, 3)), OutputFacts("b", (1, 3))], class_count=3)] == ["values"] * 2
    with pytest.raises(UsageError, match="no such output"):
        decide_roles(facts, {"nope": "classes"})
    with pytest.raises(UsageError, match="KEY=classes"):
        parse_roles(["prob=probabilities"])


def test_speedup_is_a_ratio_of_p50s_and_none_without_them():
    assert speedup(3.0, 1.5) == 2.0 and speedup(None, 1.0) is None and speedup(1.0, 0.0) is None


# -- fileio ----------------------------------------------------------------------------------


def test_atomic_write_refuses_an_existing_file_and_leaves_no_temporary(tmp_path):
    taken = tmp_path / "a.tflite"
    taken.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        write_files_atomically({tmp_path / "b.json": b"{}", taken: b"new"}, force=False)
    assert taken.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.tflite"]
    write_files_atomically({tmp_path / "b.json": b"{}", taken: b"new"}, force=True)
    assert taken.read_bytes() == b"new" and (tmp_path / "b.json").read_bytes() == b"{}"


def test_check_writable_protects_inputs_and_needs_the_folder(tmp_path):
    source = tmp_path / "m.keras"
    source.write_bytes(b"x")
    with pytest.raises(UsageError, match="overwrite an input"):
        check_writable(source, True, [source])
    with pytest.raises(UsageError, match="no such folder"):
        check_writable(tmp_path / "missing" / "m.tflite", False)


def test_a_missing_required_option_names_it_without_an_env_var(tmp_path):
    from typer.testing import CliRunner

    from edgeq.cli import app

    for args in (["validate", "m.tflite"], ["convert", "m.keras"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Missing option" in result.output and "env var" not in result.output


def test_strict_int8_names_float_weights_not_a_missing_kernel():
    """The litert-torch fixture is float: its CONV_2D and FULLY_CONNECTED ops are float because their weights are."""
    from edgeq.conversion.describe import check_strict
    from edgeq.conversion.options import ConvertOptions
    from edgeq.core.errors import ConversionError
    from edgeq.records.manifest import KeepFloat
    from edgeq.tflite.model import read_tflite
    from edgeq.tflite.summary import summarize

    model = read_tflite(FIXTURES / "litert_torch" / "small_cnn.tflite")
    with pytest.raises(ConversionError, match=r"the weights of CONV_2D .* stayed float32, so the op did \(it has int8 kernels\)"):
        check_strict(model, summarize(model), ConvertOptions(), KeepFloat())


def test_the_cpu_is_named_with_its_int8_dot_product_support_both_ways():
    """A latency line names the CPU it was measured on; without VNNI (or asimddp) it says the figure
    does not carry over to dot-product devices. Fixed /proc/cpuinfo texts: no test depends on this CPU."""
    from edgeq.host.machine import cpu_of
    from edgeq.scoring.speed import slower_than_float

    avx2 = cpu_of("model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_2 avx2 fma\n", "x86_64")
    vnni = cpu_of("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 avx512f avx512_vnni avx_vnni\n", "x86_64")
    pi = cpu_of("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 asimddp\nCPU part\t: 0xd0b\n", "aarch64")
    assert avx2 == type(avx2)("AMD EPYC 7B12", None)
    assert vnni.int8_dot == "AVX-512 VNNI, AVX-VNNI" and pi.int8_dot == "asimddp" and pi.name == "aarch64"
    assert "without int8 dot-product instructions" in avx2.describe() and "ARM dot-product devices" in avx2.describe()
    assert vnni.describe() == "Intel(R) Xeon(R) Processor, with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI)"
    line = slower_than_float("INT8", 0.4, False, f"XNNPACK on this machine ({avx2.describe()})", {}, 1)
    assert line.startswith("INT8 ran at 0.40x the float model's speed on XNNPACK on this machine (AMD EPYC 7B12, without")
    assert slower_than_float("INT8", 0.4, True, "XNNPACK", {}, 1) is None  # within the run-to-run spread: no claim


def test_a_sequence_output_is_scored_per_step_never_by_a_flattened_argmax():
    """[1, 3, 4]: three steps of four classes. The flattened argmax of both is the same element
    (so a flattened agreement would say 100%), while one step of three disagrees."""
    from edgeq.scoring.roles import OutputFacts, decide_roles

    reference = np.array([[[0.1, 0.7, 0.1, 0.1], [0.2, 0.3, 0.4, 0.1], [0.9, 0.0, 0.05, 0.05]]], np.float32)
    quantized = np.array([[[0.1, 0.7, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.9, 0.0, 0.05, 0.05]]], np.float32)
    assert np.argmax(reference.ravel()) == np.argmax(quantized.ravel())
    role = decide_roles([OutputFacts("logits", (1, 3, 4), "SOFTMAX")])[0]
    assert role.role == "sequence" and "3 steps of 4 classes" in role.evidence
    scorer = Scorer(["logits"], [role.role])
    scorer.add([reference], [quantized], None)
    out = scorer.result().outputs[0]
    assert out.agreement == pytest.approx(2 / 3) and out.sequence_match == 0.0
    assert scorer.result().accuracy.agreement == pytest.approx(2 / 3) and scorer.result().accuracy.output == "logits"
    # a CTC path: [a, a, blank, b] and [a, blank, b, b] decode to the same text
    ctc = decide_roles([OutputFacts("ctc", (1, 4, 3), "LOG_SOFTMAX")], {"ctc": "ctc:0"})[0]
    assert (ctc.role, ctc.blank) == ("sequence", 0)
    one_hot = np.eye(3, dtype=np.float32)
    scorer = Scorer(["ctc"], ["sequence"], blanks={0: 0})
    scorer.add([one_hot[[1, 1, 0, 2]][None]], [one_hot[[1, 0, 2, 2]][None]], None)
    out = scorer.result().outputs[0]
    assert out.sequence_match == 1.0 and out.agreement == pytest.approx(2 / 4)
    # the user's "classes" on a multi-axis output is a sequence too
    assert decide_roles([OutputFacts("y", (1, 5, 7), None)], {"y": "classes"})[0].role == "sequence"


def test_quantization_matches_within_relative_tolerance_and_exact_zero_points():
    from edgeq.tflite.model import Quantization

    base = Quantization((0.5, 0.25), (0, 0), 0)
    assert base.matches(Quantization((0.5 * (1 + 4e-6), 0.25), (0, 0), 0))
    assert not base.matches(Quantization((0.5 * (1 + 2e-5), 0.25), (0, 0), 0))
    assert not base.matches(Quantization((0.5, 0.25), (0, 1), 0))
    assert not base.matches(None)


def test_read_ahead_keeps_the_order_and_raises_where_the_reading_failed():
    import pytest

    from edgeq.data.read_ahead import read_ahead

    assert list(read_ahead(iter(range(50)), item_bytes=1 << 30)) == list(range(50))  # a queue of 2: still all, in order

    def failing():
        yield 1
        yield 2
        raise ValueError("unreadable image 3")

    got = []
    with pytest.raises(ValueError, match="unreadable image 3"):
        for item in read_ahead(failing(), 8):
            got.append(item)
    assert got == [1, 2]


def test_the_latency_check_settles_only_on_a_clear_verdict():
    from edgeq.conversion.search.latency import _settled

    assert _settled([1.0, 1.1, 0.9, 1.0], [2.0, 2.1, 1.9, 2.0])  # p50s 1 ms apart, spreads of 0.05 ms
    assert not _settled([1.0, 1.5, 0.6, 1.2], [1.3, 1.9, 0.9, 1.4])  # apart by less than three spreads: keep timing
