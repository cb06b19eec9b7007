"""Reports rendered from real validation results, and the per-layer quantization error ranking."""

from __future__ import annotations

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from helpers import convert, validate

from edgeq.report.documents import html_page, markdown
from edgeq.validation.results import ValidationResult
from tests.conftest import digits_images


@pytest.fixture(scope="module")
def results(trained, digits_calib):
    """A real validation of the trained demo CNN, with per-layer errors and one failing gate."""
    keras_path, int8, _ = trained
    return validate(
        int8,
        keras_path,
        digits_calib.parent / "val",
        runs=30,
        warmup=2,
        per_layer=True,
        per_layer_samples=16,
        gates={"max_drop": 5.0, "min_speedup": 1000.0},
    )


def _pct(x):
    return f"{100 * x:.2f}%"


def _figures(results) -> list[str]:
    """Figures of the JSON as a reader sees them, formatted here independently of the reporter."""
    results = results.to_json()
    acc, size, lat = results["accuracy"], results["size"], results["latency"]
    layer = results["per_layer"]["layers"][0]
    return [
        _pct(acc["float_top1"]),
        _pct(acc["int8_top1"]),
        _pct(acc["agreement"]),
        f"{acc['top1_drop_pts']:.2f} pts",
        f"{size['float_bytes'] / 1024:,.1f} KiB",
        f"{size['int8_bytes'] / 1024:,.1f} KiB",
        f"{size['ratio']:.3f}×",
        f"{1 / size['ratio']:.2f}× smaller",
        f"{lat['int8_ms']['p50']:.3f} ms",
        f"{lat['float_ms']['p50']:.3f} ms",
        f"{lat['speedup']:.2f}×",
        f"{results['outputs'][0]['sqnr_db']:.2f}",
        f"{layer['sqnr_db']:.2f}",
        f"{layer['rmse_lsb']:.3f}",
        layer["op_type"],
    ]


def test_markdown_report_figures_equal_the_json(results):
    from edgeq.core.escape import md as escaped

    md = markdown(results)
    for figure in _figures(results):
        assert escaped(figure) in md, figure
    assert md.startswith("## edgeq validation: ❌ FAILED")
    assert re.search(r"\| speedup \(float p50 / INT8 p50\) \| ≥ 1000.00x \| [\d.]+x \| ❌ FAIL \|", md)
    assert re.search(r"\| top-1 drop \(pts\) \| ≤ 5.00 pts \| -?[\d.]+ pts \| ✅ pass \|", md)
    table_rows = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert len(table_rows) == 1  # the per-layer table's first row is rank 1


def test_html_report_is_self_contained_with_both_plots(results):
    page = html_page(results)
    for figure in _figures(results):
        assert figure in page, figure
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in images] == ["latency distribution", "per-layer error chart"]
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from elsewhere
    assert '<tr class="failed">' in page and "FAILED" in page


def test_results_without_labels_show_agreement_but_no_accuracy(cnn_int8, cnn_keras, tmp_path):
    np.savez(tmp_path / "x.npz", x=digits_images(24))
    unlabelled = validate(
        cnn_int8.output, cnn_keras, tmp_path / "x.npz", runs=5, warmup=1, output_roles={"output_0": "classes"}
    )  # logits, no labels: the user says what it is
    assert unlabelled.outputs[0].role_from == "--output-role"
    md, page = markdown(unlabelled), html_page(unlabelled)
    assert unlabelled.accuracy.float_top1 is None
    for report in (md, page):
        assert "top-1 accuracy" not in report
        assert _pct(unlabelled.accuracy.agreement) in report
        assert "n/a (no labels)" in report
    assert "NO GATES GIVEN" in md and "PASSED" not in md and "per-layer" not in md.lower()  # no gates: no PASS


def test_report_command_writes_both_formats(results, tmp_path, cli):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results.to_json()))
    code, out, _ = cli("report", str(path))
    assert code == 0 and out == markdown(results)
    code, _, _ = cli("report", str(path), "--format", "html")
    assert code == 0 and (tmp_path / "results.html").read_text() == html_page(results)
    code, _, err = cli("report", str(path), "--format", "html")
    assert code == 2 and "exists" in err  # no silent overwrite


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such results file"),
        ("{not json", "not valid JSON"),
        ('{"model": "m.tflite"}', "not an edgeq validate results file"),
    ],
)
def test_missing_or_corrupt_results_file(tmp_path, cli, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    code, _, err = cli("report", str(path), "-f", "html", "-o", str(tmp_path / "r.html"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_validate_writes_report_dir_and_per_layer_csv(trained, digits_calib, tmp_path, cli):
    keras_path, int8, _ = trained
    code, _, err = cli(
        "validate",
        str(int8),
        "-r",
        str(keras_path),
        "-d",
        str(digits_calib.parent / "val"),
        "--runs",
        "5",
        "--per-layer-samples",
        "8",
        "--per-layer-csv",
        str(tmp_path / "layers.csv"),
        "--json",
        str(tmp_path / "r.json"),
        "--report",
        str(tmp_path / "report"),
    )
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())
    typed = ValidationResult.from_json(results)
    assert (tmp_path / "report" / "report.md").read_text() == markdown(typed)
    assert (tmp_path / "report" / "report.html").read_text() == html_page(typed)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "layers.csv").read_text())))
    layers = results["per_layer"]["layers"]
    assert [r["tensor_name"] for r in rows] == [layer["tensor_name"] for layer in layers]
    assert [float(r["sqnr_db"]) for r in rows] == [layer["sqnr_db"] for layer in layers]
    assert [layer["sqnr_db"] for layer in layers] == sorted(layer["sqnr_db"] for layer in layers)


def test_per_layer_with_a_float_tflite_reference_equals_the_keras_one(trained, digits_calib):
    """The float .tflite is recalibrated by TensorFlow's flatbuffer calibrator: the same ranges, so
    the same per-layer errors as with the Keras reference."""
    keras_path, int8, float_path = trained
    val = digits_calib.parent / "val"
    from_tflite = validate(int8, float_path, val, runs=2, warmup=0, per_layer=True, per_layer_samples=16).per_layer
    from_keras = validate(int8, keras_path, val, runs=2, warmup=0, per_layer=True, per_layer_samples=16).per_layer
    assert sorted(l.sqnr_db or 0 for l in from_tflite.layers) == pytest.approx(
        sorted(l.sqnr_db or 0 for l in from_keras.layers), abs=0.05
    )
    assert "QuantizationDebugger" in from_tflite.method


def test_per_layer_ranking_puts_the_outlier_layer_first(outlier_keras, digits_calib, tmp_path):
    model = convert(outlier_keras, tmp_path / "outlier.tflite", digits_calib, samples=64).output
    result = validate(model, outlier_keras, digits_calib.parent / "val", runs=5, warmup=1, per_layer=True)
    layers = result.per_layer.layers
    assert "fourth_power" in layers[0].tensor_name and layers[0].op_type == "MUL"
    assert {"conv", "dense", "square", "StatefulPartitionedCall"} <= {
        c for l in layers for c in re.split(r"[/;_:]", l.tensor_name)
    }
    assert "recalibrated as the model was: 64 samples" in result.per_layer.calibration


def test_layer_names_are_never_cut_and_alike_names_are_told_apart():
    """An export that names every layer after the model (torchcrepe's) and a long module path: the
    search's chosen layers are shown whole, with their op type and place in the graph."""
    from edgeq.records.manifest import ChosenLayer
    from edgeq.report.text import layer_label, short_name

    long = "model.Wrapper/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_Conv_0"
    assert short_name(long + ";model.Wrapper/relu") == long
    alike = [layer_label(ChosenLayer("torchcrepe.model.Crepe", "CONV_2D", p)) for p in (3, 17)]
    assert alike == ["torchcrepe.model.Crepe (CONV_2D #3)", "torchcrepe.model.Crepe (CONV_2D #17)"]
