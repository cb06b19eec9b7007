"""Every user mistake: exit 2, one line on stderr, no traceback, no output file, no input touched."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def _assert_clean_failure(result, out, *needles):
    code, _, stderr = result
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("edgeq: error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr
    assert not out.exists()
    assert not out.with_name(out.name.removesuffix(".tflite") + ".edgeq.json").exists()
    assert not [p for p in out.parent.glob(".*.tmp")]


def test_missing_model(cli, tmp_path, digits_calib):
    out = tmp_path / "m.tflite"
    _assert_clean_failure(
        cli("convert", tmp_path / "nope.keras", "--data", digits_calib, "-o", out), out, "nope.keras", "no such model"
    )


@pytest.mark.tf  # the conversion child imports TensorFlow before it loads the model
def test_unsupported_model_type(cli, tmp_path, digits_calib):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", model, "--data", digits_calib, "-o", out), out, "model.onnx", "unsupported")


@pytest.mark.tf  # the conversion child imports TensorFlow before it loads the model
def test_corrupt_keras_file(cli, tmp_path, digits_calib):
    model = tmp_path / "broken.keras"
    model.write_bytes(b"PK\x03\x04 this is not a zip")
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", model, "--data", digits_calib, "-o", out), out, "broken.keras", "cannot be loaded")


@pytest.mark.tf  # the conversion child imports TensorFlow before it loads the model
def test_folder_that_is_not_a_savedmodel(cli, tmp_path, digits_calib):
    out = tmp_path / "m.tflite"
    (tmp_path / "empty_model").mkdir()
    _assert_clean_failure(cli("convert", tmp_path / "empty_model", "--data", digits_calib, "-o", out), out, "saved_model.pb")


def test_empty_data_folder(cli, cnn_keras, tmp_path):
    (tmp_path / "data").mkdir()
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", tmp_path / "data", "-o", out), out, "no images found")


def test_data_folder_without_images(cli, cnn_keras, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", tmp_path / "data", "-o", out), out, "no images found")


def test_missing_data(cli, cnn_keras, tmp_path):
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", tmp_path / "nowhere", "-o", out), out, "nowhere")
    _assert_clean_failure(cli("convert", cnn_keras, "-o", out), out, "--data")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n garbage", b"", b"GIF89a not really"])
def test_undecodable_image_is_named(cli, cnn_keras, tmp_path, content):
    data = tmp_path / "data" / "3"
    data.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(data / f"ok{i}.png")
    (data / "broken.png").write_bytes(content)
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", tmp_path / "data", "-o", out), out, "broken.png")


def test_truncated_image_found_while_decoding(cli, cnn_keras, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (64, 64), np.uint8)).save(data / f"ok{i}.png")
    whole = (data / "ok0.png").read_bytes()
    (data / "cut.png").write_bytes(whole[: len(whole) // 2])  # header fine, pixels missing
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", data, "-o", out), out, "cut.png")


def test_sixteen_bit_image_mode(cli, cnn_keras, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.full((8, 8), 3000, np.uint16)).save(data / "deep.png")
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", data, "-o", out), out, "deep.png", "8-bit")


def test_npy_shape_mismatch(cli, cnn_keras, tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((10, 28, 28, 1), np.float32))
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", data, "-o", out), out, "[10, 28, 28, 1]", "[N, 8, 8, 1]")


def test_npy_with_nan(cli, cnn_keras, tmp_path):
    x = np.random.default_rng(0).random((10, 8, 8, 1), dtype=np.float32)
    x[7, 0, 0, 0] = np.nan
    data = tmp_path / "x.npy"
    np.save(data, x)
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", data, "-o", out, "--seed", "0"), out, "NaN")


def test_dynamic_size_needs_input_shape(cli, dynamic_keras, digits_calib, tmp_path):
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", dynamic_keras, "--data", digits_calib, "-o", out), out, "--input-shape", "image=1,N,N,1")


def test_input_shape_that_does_not_fit(cli, cnn_keras, digits_calib, tmp_path):
    out = tmp_path / "m.tflite"
    _assert_clean_failure(
        cli("convert", cnn_keras, "--data", digits_calib, "-o", out, "--input-shape", "1,9,9,1"), out, "does not fit"
    )


def test_wrong_color_for_model(cli, cnn_keras, digits_calib, tmp_path):
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", digits_calib, "-o", out, "--color", "rgb"), out, "--color rgb")


def test_bad_option_values(cli, cnn_keras, digits_calib, tmp_path):
    out = tmp_path / "m.tflite"
    _assert_clean_failure(cli("convert", cnn_keras, "--data", digits_calib, "-o", out, "--mode", "int4"), out, "--mode")
    _assert_clean_failure(cli("convert", cnn_keras, "--data", digits_calib, "-o", out, "--io", "int16"), out, "--io int16")
    _assert_clean_failure(cli("convert", cnn_keras, "--data", digits_calib, "-o", out, "--range", "0,2"), out, "--range")


def test_existing_output_is_not_overwritten(cli, cnn_keras, digits_calib, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"precious")
    code, _, stderr = cli("convert", cnn_keras, "--data", digits_calib, "-o", out)
    assert code == 2 and "--force" in stderr and len(stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"precious"


def test_output_may_not_overwrite_the_model(cli, cnn_keras, digits_calib, tmp_path):
    before = cnn_keras.read_bytes()
    code, _, stderr = cli("convert", cnn_keras, "--data", digits_calib, "-o", cnn_keras, "--force")
    assert code == 2 and cnn_keras.read_bytes() == before


def test_inspect_bad_files(cli, tmp_path, cnn_int8):
    code, _, stderr = cli("inspect", tmp_path / "missing.tflite")
    assert code == 2 and "no such file" in stderr
    text = tmp_path / "notes.tflite"
    text.write_text("hello, this is not a model")
    code, _, stderr = cli("inspect", text)
    assert code == 2 and "not a TFLite flatbuffer" in stderr and len(stderr.strip().splitlines()) == 1
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(cnn_int8.output.read_bytes()[:2000])
    code, _, stderr = cli("inspect", cut)
    assert code == 2 and "corrupt or truncated" in stderr and "Traceback" not in stderr


def test_real_process_prints_one_line_despite_tensorflow_logs(sin_keras, digits_calib, tmp_path):
    """In a real process TensorFlow writes to fd 2 natively; the user still sees one line."""
    import subprocess
    import sys

    out = tmp_path / "sin.tflite"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeq.cli",
            "convert",
            str(sin_keras),
            "--data",
            str(digits_calib),
            "-o",
            str(out),
            "--samples",
            "8",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "SIN" in proc.stderr
    assert not out.exists()


def test_unexpected_exception_is_one_line_and_exit_3(monkeypatch, capsys, tmp_path):
    """Anything that is not an EdgeqError is exit 3 with one line, not a traceback with exit 1."""
    import sys

    import pytest

    from edgeq import cli
    from edgeq.tflite import summary as inspection

    def broken(model):
        raise KeyError("a bug inside edgeq")

    monkeypatch.setattr(inspection, "summarize", broken)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    monkeypatch.setattr(sys, "argv", ["edgeq", "inspect", str(model)])
    monkeypatch.setattr(cli.inspect, "fail", lambda exc: (_ for _ in ()).throw(KeyError("a bug inside edgeq")))
    with pytest.raises(SystemExit) as exit_info:
        cli.run()
    err = capsys.readouterr().err
    assert exit_info.value.code == 3
    assert err.startswith("edgeq: internal error: KeyError") and "rerun with -v" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
