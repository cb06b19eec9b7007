"""Untrusted sidecar files (results, manifests, profiles) with wrong types: one line, exit 2 or a
warning; never a traceback, never a lost run."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeq.core.errors import OutputExistsError
from edgeq.core.fileio import write_files_atomically

pytestmark = pytest.mark.tf


@pytest.fixture
def results_file(cnn_int8, digits_calib, tmp_path, cli):
    out = tmp_path / "results.json"
    code, _, err = cli(
        "validate",
        cnn_int8.output,
        "--reference",
        cnn_int8.output,
        "--data",
        digits_calib.parent / "val",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--json",
        out,
    )
    assert code == 0, err
    return out


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda r: r.__setitem__("size", "x"), "results.json.size: expected an object, got str"),
        (
            lambda r: r["gates"].append({"name": "min_sqnr", "description": "d", "limit": "0.5", "value": 1.0, "passed": True}),
            "results.json.gates[0].limit: expected an integer or a number, got str",
        ),
        (lambda r: r.__setitem__("outputs", None), "results.json.outputs: expected a list, got NoneType"),
        (lambda r: r.__setitem__("passed", "false"), "results.json.passed: expected true/false, got str"),
        (lambda r: r.__setitem__("schema_version", "9.0"), "written by a newer edgeq"),
    ],
)
@pytest.mark.hostile_files
def test_wrong_types_in_a_results_file_are_one_line_naming_the_key(edit, key, results_file, cli):
    data = json.loads(results_file.read_text())
    edit(data)
    results_file.write_text(json.dumps(data))
    code, out, err = cli("report", results_file)
    assert code == 2 and key in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.hostile_files
def test_malformed_manifest_search_never_loses_the_run(cnn_int8, digits_calib, tmp_path, cli):
    model = tmp_path / "m.tflite"
    shutil.copy(cnn_int8.output, model)
    manifest = json.loads(cnn_int8.manifest_path.read_text())
    manifest["search"] = {"steps": "oops", "chosen": 3}
    manifest["recipe"]["preprocessing"] = {"mean": "x"}
    (tmp_path / "m.edgeq.json").write_text(json.dumps(manifest))
    out, report = tmp_path / "r.json", tmp_path / "report"
    code, _, err = cli(
        "validate",
        model,
        "--reference",
        cnn_int8.output,
        "--data",
        digits_calib.parent / "val",
        "--runs",
        "2",
        "--json",
        out,
        "--report",
        report,
    )
    assert code == 0, err
    written = json.loads(out.read_text())
    assert written["conversion_search"] is None
    assert any(
        w.startswith("m.edgeq.json.") and "the manifest is ignored" in w for w in written["warnings"]
    )  # one line naming the key
    assert (report / "report.md").is_file() and (report / "report.html").is_file()


def test_report_path_that_is_a_file_is_refused_before_the_run(cnn_int8, digits_calib, tmp_path, cli):
    taken = tmp_path / "report"
    taken.write_text("not a folder")
    code, _, err = cli(
        "validate",
        cnn_int8.output,
        "--reference",
        cnn_int8.output,
        "--data",
        digits_calib.parent / "val",
        "--report",
        taken,
        "--json",
        tmp_path / "r.json",
    )
    assert code == 2 and "is a file" in err and not (tmp_path / "r.json").exists()


def test_manifest_of_another_model_is_noticed(cnn_int8, tmp_path, cli):
    model = tmp_path / "m.tflite"
    data = bytearray(cnn_int8.output.read_bytes())
    model.write_bytes(bytes(data))
    (tmp_path / "m.edgeq.json").write_text(cnn_int8.manifest_path.read_text())
    code, out, _ = cli("inspect", model)
    assert code == 0 and "was written for another file" not in out
    recorded = json.loads(cnn_int8.manifest_path.read_text())["model"]
    assert recorded["bytes"] == len(data)
    model.write_bytes(bytes(data) + b"\0" * 16)  # another file than the one the manifest describes
    code, out, _ = cli("inspect", model)
    assert code == 0 and "was written for another file" in out


def test_no_overwrite_is_checked_again_at_the_rename(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"theirs")  # appeared after the up-front check
    with pytest.raises(OutputExistsError):
        write_files_atomically({target: b"ours", tmp_path / "m.edgeq.json": b"{}"}, force=False)
    assert target.read_bytes() == b"theirs" and not (tmp_path / "m.edgeq.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_profile_with_a_wrong_type_is_exit_2_naming_the_key(tmp_path, cli):
    profile = tmp_path / "pi.toml"
    profile.write_text('name = "pi"\ntransport = "ssh"\nhost = 123\n')
    code, _, err = cli("devices", "check", profile)
    assert code == 2 and "key 'host': expected a string, got int 123" in err


def test_profile_found_by_its_name_key(tmp_path, cli, monkeypatch):
    (tmp_path / "ok.toml").write_text('name = "ok-local"\ntransport = "local"\n')
    monkeypatch.setenv("EDGEQ_DEVICES", str(tmp_path))
    code, out, err = cli("devices")
    assert code == 0 and "ok-local" in out and str(tmp_path / "ok.toml") in out
    code, out, err = cli("devices", "check", "ok-local", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "ok-local"


def test_the_smaller_things_a_new_user_saw(cnn_keras, tmp_path, cli):
    """Issue 38's list: no "asked for 200" without --samples; no image preprocessing claimed for
    .npy arrays; --help names .pt2."""
    import numpy as np

    from tests.conftest import digits_images

    np.save(tmp_path / "x.npy", digits_images(16))
    code, out, err = cli("convert", cnn_keras, "--data", tmp_path / "x.npy", "-o", tmp_path / "m.tflite")
    assert code == 0, err
    assert "asked for" not in out + err and "preprocessing none: .npy/.npz arrays are fed as given" in out
    assert json.loads((tmp_path / "m.edgeq.json").read_text())["preprocessing"]["images"] is False
    code, out, err = cli("convert", cnn_keras, "--data", tmp_path / "x.npy", "-o", tmp_path / "n.tflite", "--samples", "50")
    assert code == 0 and "asked for 50 calibration samples" in out + err
    code, out, _ = cli("convert", "--help")
    assert ".pt2" in " ".join(out.split()[:40])
