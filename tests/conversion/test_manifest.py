"""Manifests written by earlier edgeq versions (tests/fixtures/manifests: schema 1.2 and 1.3, a
plain conversion and an auto-calibrated one with a search) read into today's typed records, and
`inspect` and `validate` work on the models beside them."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import FIXTURES

from edgeq.core.errors import DataError
from edgeq.core.schema import SCHEMA_VERSION
from edgeq.records.manifest import Manifest, StepKind
from edgeq.records.manifest_file import Described, manifest_for, read_manifest
from edgeq.records.recipe import Method, Mode

OLD = FIXTURES / "manifests"
SOURCE = FIXTURES / "onnx2tf" / "small_cnn_float32.tflite"


@pytest.mark.parametrize("version", ["v1_2", "v1_3"])
def test_an_older_manifest_reads_into_todays_records(version):
    plain, auto = Described.of(OLD / version / "small_cnn_int8.tflite"), Described.of(OLD / version / "small_cnn_auto.tflite")
    for described in (plain, auto):
        m = described.manifest
        assert described.mismatch is None and m.schema_version == SCHEMA_VERSION  # upgraded on read
        assert m.recipe.mode is Mode.INT8 and m.recipe.calibration == Method("minmax") and m.recipe.samples == 200
        assert m.recipe.fingerprint == m.calibration.fingerprint and m.calibration.samples == 8
        assert m.sizes.float_bytes > m.sizes.model_bytes and m.source.kind == "tflite"
        assert m.inputs[0].dtype == "int8" and m.signatures[0].inputs[0].key == "image"
    steps = auto.manifest.search.steps
    assert [(s.kind, s.method) for s in steps] == [(StepKind.INT8, "minmax"), (StepKind.INT8, None)]  # was "int8 (minmax)"
    assert auto.manifest.keep_float.ops == ("SOFTMAX",) and auto.manifest.float_ops[0].type == "SOFTMAX"
    assert auto.manifest.options.calibration == "auto"  # as asked; the recipe says what auto settled on
    # 1.4 and earlier kept INT8/float as `ratio`; today's one speed ratio is float/INT8
    stored = json.loads((OLD / version / "small_cnn_int8.edgeq.json").read_text()).get("latency")
    if stored is not None:  # 1.2 had no latency record
        assert plain.manifest.latency.speedup == round(1 / stored["ratio"], 4) > 1


def test_a_manifest_of_schema_1_1_gets_its_recipe_from_options_and_calibration(tmp_path):
    data = json.loads((OLD / "v1_2" / "small_cnn_int8.edgeq.json").read_text())
    del data["recipe"]
    data.update(
        schema_version="1.1",
        options={"mode": "int8", "per_tensor": True, "samples": 10, "seed": 3, "data": "d.npy"},
        calibration={**data["calibration"], "method": "percentile:99.9", "fingerprint": "abc"},
    )
    recipe = Manifest.from_json(data, "m.edgeq.json").recipe
    assert (recipe.per_tensor, recipe.samples, recipe.seed, recipe.calibration, recipe.fingerprint, recipe.data) == (
        True,
        10,
        3,
        Method("percentile", 99.9),
        "abc",
        "d.npy",
    )
    trained = Manifest.from_json({**data, "calibration": {**data["calibration"], "method": "trained ranges (QAT)"}}, "m")
    assert trained.calibration.trained == "trained ranges (QAT)" and trained.recipe.calibration == Method("minmax")


def test_a_malformed_or_newer_manifest_is_one_line_naming_the_key(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(OLD / "v1_3" / "small_cnn_int8.tflite", model)
    data = json.loads((OLD / "v1_3" / "small_cnn_int8.edgeq.json").read_text())
    manifest_for(model).write_text(json.dumps({**data, "recipe": {**data["recipe"], "samples": "many"}}))
    with pytest.raises(DataError, match=r"m.edgeq.json.recipe.samples: expected an integer"):
        read_manifest(model)
    manifest_for(model).write_text(json.dumps({**data, "schema_version": "2.0"}))
    with pytest.raises(DataError, match="written by a newer edgeq"):
        read_manifest(model)
    manifest_for(model).write_text("not json")
    assert read_manifest(model) is None and Described.of(model).manifest is None


def test_a_manifest_of_another_file_is_set_aside(tmp_path):
    model = tmp_path / "small_cnn_int8.tflite"
    shutil.copy(OLD / "v1_3" / "small_cnn_auto.tflite", model)  # another model under the plain one's manifest
    shutil.copy(OLD / "v1_3" / "small_cnn_int8.edgeq.json", manifest_for(model))
    described = Described.of(model)
    assert described.manifest is None and "written for another file" in described.mismatch


@pytest.mark.parametrize("version", ["v1_2", "v1_3"])
def test_inspect_and_validate_work_on_a_model_converted_before(version, cli, tmp_path):
    model = OLD / version / "small_cnn_auto.tflite"
    code, out, err = cli("inspect", str(model), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["recipe"]["keep_float"] == ["SOFTMAX"] and shown["float_bytes_source"].startswith("manifest")
    code, out, err = cli(
        "validate",
        str(model),
        "--reference",
        str(SOURCE),
        "--data",
        str(OLD / "samples.npy"),
        "--runs",
        "2",
        "--warmup",
        "0",
        "--min-sqnr",
        "20",
        "--json",
        str(tmp_path / "r.json"),
        "--report",
        str(tmp_path / "rep"),
    )
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["preprocessing"]["origins"]["value_range"] == "manifest"  # the recipe's preprocessing was used
    assert results["conversion_search"]["steps"][0]["method"] == "minmax"
    assert "minmax ranges" in (tmp_path / "rep" / "report.md").read_text()
