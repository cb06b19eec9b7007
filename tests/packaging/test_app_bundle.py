"""What an app build consumes: TFLite Model Metadata inside the model (read back with MediaPipe's
own reader, and run by MediaPipe's ImageClassifier), the bundle, and baseline gates."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.prerequisites import require

LABELS = [f"digit {i}" for i in range(10)]


def _mediapipe_schema():
    require(importlib.util.find_spec("mediapipe") is not None, "mediapipe is not installed (pip install -e '.[dev]')")
    from mediapipe.tasks.metadata import metadata_schema_py_generated as mp

    return mp


def _metadata_buffer(model: bytes) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    (found,) = [
        root.Buffers(root.Metadata(i).Buffer()).DataAsNumpy()
        for i in range(root.MetadataLength())
        if root.Metadata(i).Name() == b"TFLITE_METADATA"
    ]
    return bytes(found)


def _outputs(path: Path, samples: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for s in samples:
        scale, zero = inp["quantization"]
        it.set_tensor(inp["index"], np.clip(np.round(s[None] / scale) + zero, -128, 127).astype(inp["dtype"]))
        it.invoke()
        got.append(it.get_tensor(out["index"]).copy())
    return got


@pytest.fixture(scope="module")
def labelled(trained, digits_calib, tmp_path_factory, cli_module):
    """The demo model converted twice, the same recipe: plain, and with labels and a description."""
    keras_path, _, _ = trained
    folder = tmp_path_factory.mktemp("labelled")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    plain, described = folder / "plain.tflite", folder / "digits.tflite"
    code, _, err = cli_module("convert", keras_path, "--data", digits_calib, "--output", plain)
    assert code == 0, err
    code, _, err = cli_module(
        "convert",
        keras_path,
        "--data",
        digits_calib,
        "--output",
        described,
        "--labels",
        folder / "labels.txt",
        "--name",
        "Digits",
        "--description",
        "8x8 handwritten digits",
        "--model-version",
        "2.1",
        "--author",
        "edgeq tests",
        "--license",
        "Apache-2.0",
    )
    assert code == 0, err
    return plain, described, folder


def test_metadata_reads_back_with_mediapipes_reader(labelled):
    mp = _mediapipe_schema()
    plain, described, _ = labelled
    model = described.read_bytes()
    meta = mp.ModelMetadataT.InitFromObj(mp.ModelMetadata.GetRootAs(_metadata_buffer(model), 0))
    assert (meta.name, meta.description, meta.version, meta.author, meta.license) == (
        b"Digits",
        b"8x8 handwritten digits",
        b"2.1",
        b"edgeq tests",
        b"Apache-2.0",
    )
    (image,) = meta.subgraphMetadata[0].inputTensorMetadata
    props = image.content.contentProperties
    assert props.colorSpace == mp.ColorSpaceType.GRAYSCALE and (props.defaultSize.width, props.defaultSize.height) == (8, 8)
    norm = image.processUnits[0].options
    assert list(norm.mean) == [0.0] and list(norm.std) == [255.0]  # calibrated on 0..1 pixels: pixel / 255
    assert list(image.stats.min) == [0.0] and list(image.stats.max) == [1.0]
    (probs,) = meta.subgraphMetadata[0].outputTensorMetadata
    (labels,) = probs.associatedFiles
    assert labels.name == b"labels.txt" and labels.type == mp.AssociatedFileType.TENSOR_AXIS_LABELS
    assert zipfile.ZipFile(described).read("labels.txt").decode().splitlines() == LABELS

    from edgeq.tflite.model import read_tflite

    # the I/O quantization is the model's own, untouched: the same as the model without metadata
    ours, bare = read_tflite(described), read_tflite(plain)
    for a, b in zip([ours.tensors[i] for i in ours.inputs + ours.outputs], [bare.tensors[i] for i in bare.inputs + bare.outputs]):
        assert (a.dtype, a.quantization) == (b.dtype, b.quantization)


def test_a_model_with_metadata_gives_bit_identical_outputs(labelled):
    from tests.conftest import digits_images

    plain, described, _ = labelled
    samples = digits_images(32)
    for a, b in zip(_outputs(plain, samples), _outputs(described, samples)):
        np.testing.assert_array_equal(a, b)


def test_inspect_shows_the_metadata(labelled, cli):
    _, described, _ = labelled
    code, out, _ = cli("inspect", described)
    assert code == 0 and "metadata  Digits (version 2.1, author edgeq tests, license Apache-2.0)" in out
    assert "10 labels in labels.txt (digit 0, digit 1" in out
    code, out, _ = cli("inspect", described, "--json")
    assert json.loads(out)["metadata"]["labels"] == LABELS


def test_validate_takes_class_folders_by_the_models_labels(labelled, digits_calib, trained, tmp_path, cli):
    """Folders named by label ("digit 7") are class 7 by the metadata, not by sorted order."""
    import shutil

    keras_path, _, _ = trained
    plain, described, _ = labelled
    named = tmp_path / "named"
    for digit in range(10):
        shutil.copytree(digits_calib.parent / "val" / str(digit), named / LABELS[digit])
    code, _, err = cli(
        "validate",
        described,
        "--reference",
        keras_path,
        "--data",
        named,
        "--runs",
        "2",
        "--warmup",
        "0",
        "--json",
        tmp_path / "named.json",
    )
    assert code == 0, err
    code, _, err = cli(
        "validate",
        plain,
        "--reference",
        keras_path,
        "--data",
        digits_calib.parent / "val",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--json",
        tmp_path / "plain.json",
    )
    assert code == 0, err
    named_acc = json.loads((tmp_path / "named.json").read_text())["accuracy"]
    plain_acc = json.loads((tmp_path / "plain.json").read_text())["accuracy"]
    assert named_acc["int8_top1"] == plain_acc["int8_top1"] > 0.85
    (named / "digit 3").rename(named / "three")
    code, _, err = cli("validate", described, "--reference", keras_path, "--data", named, "--runs", "2", "--warmup", "0")
    assert code == 2 and "three" in err and "not among the model's labels" in err


def test_mediapipe_image_classifier_runs_the_model(trained, digits_calib, tmp_path, cli):
    """MediaPipe Tasks (RGB models with uint8 input) classifies the digits with edgeq's metadata."""
    import ctypes.util

    _mediapipe_schema()
    require(
        all(ctypes.util.find_library(lib) for lib in ("EGL", "GLESv2")),
        "MediaPipe's library needs libEGL.so.1 and libGLESv2.so.2 (apt-get install libegl1 libgles2)",
    )
    import keras

    keras_path, _, _ = trained
    digits = keras.models.load_model(keras_path)
    rgb = keras.Input((8, 8, 3), name="image")
    to_gray = keras.layers.Conv2D(1, 1, use_bias=False, name="to_gray")
    model = keras.Model(rgb, digits(to_gray(rgb)))
    to_gray.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    model.save(tmp_path / "rgb.keras")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    out = tmp_path / "rgb_uint8.tflite"
    code, _, err = cli(
        "convert",
        tmp_path / "rgb.keras",
        "--data",
        digits_calib,
        "--color",
        "rgb",
        "--io",
        "uint8",
        "--labels",
        tmp_path / "labels.txt",
        "--output",
        out,
    )
    assert code == 0, err
    images = [sorted((digits_calib.parent / "val" / str(d)).iterdir())[0] for d in range(10)]
    script = (
        "import sys, json, numpy as np, mediapipe as mp\n"
        "from PIL import Image\n"
        "from mediapipe.tasks.python import BaseOptions\n"
        "from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions\n"
        "options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=sys.argv[1]), max_results=1)\n"
        "with ImageClassifier.create_from_options(options) as classifier:\n"
        "    top = [classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, "
        "data=np.asarray(Image.open(p).convert('RGB'))))"
        ".classifications[0].categories[0].category_name for p in sys.argv[2:]]\n"
        "print(json.dumps(top))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(out), *map(str, images)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    top = json.loads(run.stdout.strip().splitlines()[-1])
    assert sum(t == LABELS[d] for d, t in enumerate(top)) >= 9, top


# -- the bundle ------------------------------------------------------------------------------


def test_bundle_verifies_lists_the_ops_and_resolves_the_manifest_keys(labelled, trained, digits_calib, tmp_path, cli):
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    keras_path, _, _ = trained
    _, described, _ = labelled
    results = tmp_path / "results.json"
    code, _, err = cli(
        "validate", described, "--reference", keras_path, "--data", digits_calib.parent / "val", "--runs", "2", "--json", results
    )
    assert code == 0, err
    bundle = tmp_path / "bundle"
    code, _, err = cli("bundle", described, "--output", bundle, "--results", results)
    assert code == 0, err
    assert sorted(p.name for p in bundle.iterdir()) == [
        "SHA256SUMS",
        "labels.txt",
        "model.edgeq.json",
        "model.tflite",
        "ops.txt",
        "report.md",
    ]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 5, check.stdout + check.stderr
    (bundle / "labels.txt").write_text("tampered\n")
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=bundle, capture_output=True).returncode != 0

    model = (bundle / "model.tflite").read_bytes()
    root = schema.Model.GetRootAs(model, 0)
    codes = [root.OperatorCodes(i) for i in range(root.OperatorCodesLength())]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    used: dict[str, set[int]] = {}
    graph = root.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        code_ = codes[graph.Operators(i).OpcodeIndex()]
        used.setdefault(names[max(code_.BuiltinCode(), code_.DeprecatedBuiltinCode())], set()).add(code_.Version())
    listed = [line.split() for line in (bundle / "ops.txt").read_text().splitlines() if not line.startswith("#")]
    assert {name: (int(lo), int(hi)) for name, lo, hi in listed} == {n: (min(v), max(v)) for n, v in used.items()}

    manifest = json.loads((bundle / "model.edgeq.json").read_text())
    it = Interpreter(model_path=str(bundle / "model.tflite"))
    for signature in manifest["signatures"]:
        runner = it.get_signature_runner(signature["key"])
        for side, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
            for entry in signature[side]:
                tensor = details[entry["key"]]
                assert tensor["index"] == entry["index"]
                assert tensor["quantization"] == pytest.approx((entry["scale"], entry["zero_point"]))
    assert "edgeq validation" in (bundle / "report.md").read_text()


def test_bundle_refuses_to_replace_files_without_force(labelled, tmp_path, cli):
    _, described, _ = labelled
    bundle = tmp_path / "b"
    assert cli("bundle", described, "--output", bundle)[0] == 0
    before = (bundle / "SHA256SUMS").read_bytes()
    code, _, err = cli("bundle", described, "--output", bundle)
    assert code == 2 and "exists" in err and (bundle / "SHA256SUMS").read_bytes() == before
    assert cli("bundle", described, "--output", bundle, "--force")[0] == 0


# -- baselines ---------------------------------------------------------------------------------


def _validate(cli, model, reference, val, out, *flags):
    return cli(
        "validate",
        model,
        "--reference",
        reference,
        "--data",
        val,
        "--runs",
        "20",
        "--warmup",
        "2",
        "--json",
        out,
        "--force",
        *flags,
    )


def test_baseline_catches_a_two_point_top1_regression(trained, digits_calib, tmp_path, cli):
    keras_path, int8, _ = trained
    val = digits_calib.parent / "val"
    now = tmp_path / "now.json"
    assert _validate(cli, int8, keras_path, val, now)[0] == 0
    previous = json.loads(now.read_text())  # the last release scored 2 points more on the same data
    previous["accuracy"]["int8_top1"] += 0.02
    (tmp_path / "release.json").write_text(json.dumps(previous))
    code, out, _ = _validate(
        cli,
        int8,
        keras_path,
        val,
        tmp_path / "r.json",
        "--baseline",
        tmp_path / "release.json",
        "--max-regression-pts",
        "1.5",
        "--report",
        tmp_path / "report",
    )
    assert code == 1
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["baseline"]["regression_pts"] == pytest.approx(2.0, abs=1e-6)
    gate = next(g for g in results["gates"] if g["name"] == "max_regression_pts")
    assert gate["status"] == "failed"
    report = (tmp_path / "report" / "report.md").read_text()
    assert "### Against the baseline (release.json)" in report and "| INT8 top-1 |" in report and "-2.00 pts" in report
    assert "| top-1 regression vs baseline (pts) | ≤ 1.50 pts | 2.00 pts | ❌ FAIL |" in report
    code, _, _ = _validate(
        cli, int8, keras_path, val, tmp_path / "ok.json", "--baseline", tmp_path / "release.json", "--max-regression-pts", "2.5"
    )
    assert code == 0


def test_baseline_catches_a_real_size_growth(trained, digits_calib, tmp_path, cli):
    """The same model with its dense layer kept in float is over 20% larger than the released one."""
    keras_path, int8, _ = trained
    val = digits_calib.parent / "val"
    release = tmp_path / "release.json"
    assert _validate(cli, int8, keras_path, val, release)[0] == 0
    grown = tmp_path / "grown.tflite"
    code, _, err = cli(
        "convert",
        keras_path,
        "--data",
        digits_calib,
        "--output",
        grown,
        "--mode",
        "int8-fallback",
        "--keep-float",
        "FULLY_CONNECTED",
    )
    assert code == 0, err
    code, out, _ = _validate(cli, grown, keras_path, val, tmp_path / "r.json", "--baseline", release, "--max-size-growth", "20")
    assert code == 1
    growth = json.loads((tmp_path / "r.json").read_text())["baseline"]["size_growth_pct"]
    assert growth > 20 and f"({growth:+.1f} %)" in out
    assert "FAIL max_size_growth" in out


def test_a_baseline_gate_without_a_baseline_is_a_usage_error(trained, digits_calib, cli):
    keras_path, int8, _ = trained
    code, _, err = cli(
        "validate", int8, "--reference", keras_path, "--data", digits_calib.parent / "val", "--max-size-growth", "5"
    )
    assert code == 2 and "--baseline" in err
