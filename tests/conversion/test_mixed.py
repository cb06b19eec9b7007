"""Accuracy recovery: few layers kept in float that meet an accuracy budget (the search's strategy:
tests/test_search_units.py; its patterns: tests/test_search.py)."""

from __future__ import annotations

import json

import pytest
from helpers import convert

from edgeq.records.budget import Budget
from edgeq.tflite.model import read_tflite


@pytest.fixture(scope="module")
def searched(weight_outlier_keras, digits_calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "mixed.tflite"
    return convert(
        weight_outlier_keras,
        out,
        digits_calib,
        samples=64,
        eval_data=str(digits_calib.parent / "val"),
        budget=Budget(min_agreement=0.99),
        targets=("edgetpu",),
    )


def test_full_int8_misses_and_the_search_keeps_exactly_the_hard_layers(searched):
    search = searched.manifest.to_json()["search"]
    assert searched.budget_met is True and search["met"] is True
    assert search["steps"][0]["k"] == 0 and not search["steps"][0]["meets"]  # full INT8 misses the budget
    chosen = search["chosen"]["float_layers"]
    assert sorted(n.split("/")[1] for n in chosen) == ["hard2_1", "hard_1"]
    assert search["int8_evaluations"] <= search["max_evaluations"]
    assert search["chosen"]["agreement"] >= 0.99 > search["steps"][0]["agreement"]


def test_the_chosen_layers_are_float_in_the_written_model(searched):
    model = read_tflite(searched.output)
    float_ops = {o.outputs[0] for o in searched.manifest.float_ops}
    assert any("hard_1" in n for n in float_ops) and any("hard2_1" in n for n in float_ops)
    assert any(op.type == "FULLY_CONNECTED" and model.op_precision(op) == "int8" for op in model.operators)  # logits stay int8
    assert searched.manifest.keep_float.nodes == searched.manifest.search.chosen.float_layers


def test_float_layers_split_the_edge_tpu_graph_and_the_target_says_so(searched):
    assert any(w.startswith("Edge TPU:") and "will run on the CPU" in w for w in searched.warnings)


def test_full_int8_within_budget_needs_no_search(cnn_keras, digits_calib, tmp_path):
    result = convert(
        cnn_keras,
        tmp_path / "m.tflite",
        digits_calib,
        samples=32,
        eval_data=str(digits_calib.parent / "val"),
        budget=Budget(min_agreement=0.5),
    )
    search = result.manifest.to_json()["search"]
    assert search["met"] and search["evaluations"] == 1 and search["chosen"]["k"] == 0 and search["layers_considered"] == 0


def test_unreachable_budget_exits_1_and_keeps_the_best_model(weight_outlier_keras, digits_calib, tmp_path, cli):
    out = tmp_path / "m.tflite"
    code, _, err = cli(
        "convert",
        str(weight_outlier_keras),
        "-d",
        str(digits_calib),
        "-o",
        str(out),
        "--samples",
        "32",
        "--eval-data",
        str(digits_calib.parent / "val"),
        "--min-sqnr",
        "200",
        "--max-float-layers",
        "1",
    )
    best = tmp_path / "m.best-effort.tflite"
    assert code == 1 and not out.exists() and best.exists()
    assert "no mix within the bounds meets the budget" in err and "SQNR" in err
    manifest = json.loads((tmp_path / "m.best-effort.edgeq.json").read_text())
    search = manifest["search"]
    assert search["met"] is False and search["chosen"]["k"] <= 1
    within = [s for s in search["steps"] if s["k"] <= 1]
    assert search["chosen"]["worst_sqnr_db"] == max(s["worst_sqnr_db"] for s in within)  # the best it found within the bound
    assert any(s["k"] > 1 for s in search["steps"])  # the upper bound was tried, and not chosen


def test_budget_needs_eval_data_and_labels_for_max_drop(cnn_keras, digits_calib, tmp_path, cli):
    code, _, err = cli("convert", str(cnn_keras), "-d", str(digits_calib), "-o", str(tmp_path / "a.tflite"), "--max-drop", "1")
    assert code == 2 and "needs both --eval-data and a budget" in err
    import numpy as np

    from tests.conftest import digits_images

    np.savez(tmp_path / "x.npz", x=digits_images(8))
    code, _, err = cli(
        "convert",
        str(cnn_keras),
        "-d",
        str(digits_calib),
        "-o",
        str(tmp_path / "b.tflite"),
        "--eval-data",
        str(tmp_path / "x.npz"),
        "--max-drop",
        "1",
    )
    assert code == 2 and "--max-drop needs labelled --eval-data" in err


def test_int16x8_is_tried_before_float_layers_and_chosen_when_it_meets(outlier_keras, digits_calib, tmp_path):
    """dense**4 has heavy-tailed activations: 16-bit activations help; weights are not the problem."""
    result = convert(
        outlier_keras,
        tmp_path / "m.tflite",
        digits_calib,
        samples=64,
        io="float32",
        allow_int16x8=True,
        eval_data=str(digits_calib.parent / "val"),
        budget=Budget(min_sqnr=32),
    )
    search = result.manifest.to_json()["search"]
    assert [s["kind"] for s in search["steps"]] == ["int8", "int16x8"]  # no float layer was needed
    assert search["met"] and search["chosen"]["kind"] == "int16x8" and search["layers_considered"] == 0
    assert search["steps"][1]["worst_sqnr_db"] >= 32 > search["steps"][0]["worst_sqnr_db"]
    assert "int16" in {t.dtype for t in read_tflite(result.output).tensors}  # the written model has 16-bit activations
    assert any("not on XNNPACK, the Edge TPU or NNAPI" in w for w in result.warnings)


def test_int16x8_that_misses_leaves_the_float_search_to_do_it(weight_outlier_keras, digits_calib, tmp_path):
    result = convert(
        weight_outlier_keras,
        tmp_path / "m.tflite",
        digits_calib,
        samples=32,
        allow_int16x8=True,
        eval_data=str(digits_calib.parent / "val"),
        budget=Budget(min_agreement=0.99),
    )
    search = result.manifest.to_json()["search"]
    assert search["steps"][1]["kind"] == "int16x8" and not search["steps"][1]["meets"]  # int8 weights stay the problem
    assert search["met"] and search["chosen"]["kind"] == "int8"
    assert sorted(n.split("/")[1] for n in search["chosen"]["float_layers"]) == ["hard2_1", "hard_1"]
    assert search["int8_evaluations"] <= search["max_evaluations"]
    sixteen = [s for s in search["steps"] if s["kind"] == "a16w8"]
    assert sixteen[0]["k"] == 0 and not sixteen[0]["meets"]  # the chosen layers at 16 bits: their int8 weights stay too
    assert not any(s["meets"] for s in sixteen if s["k"] < 2)  # and neither of them alone at 16 bits
    assert search["evaluations"] == len(search["steps"]) == search["int8_evaluations"] + 1 + len(sixteen)  # 16-bit tries count
