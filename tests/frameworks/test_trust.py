"""Nothing in a model file runs unless the user passes --trust-model: real malicious torch.export
archives (a pickle in the sample inputs, a `use_pickle` weight, a payload that returns the real
inputs so the conversion looks normal, a shape expression that sympy would eval) are refused
through convert and validate --reference before torch.export.load sees them; the marker file their
payload would create never appears. With --trust-model the same archives do run it (so the test
proves the archives are real attacks), and a benign archive converts without the flag."""

from __future__ import annotations

import importlib.util
import io
import json
import operator
import zipfile
from pathlib import Path

import pytest
from prerequisites import require

pytestmark = [pytest.mark.tf, pytest.mark.torch]


class _Touch:
    """Unpickling it opens (creates) the marker file: any code could run there."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _Stealth:
    """Unpickling it creates the marker, then returns `real`: the load looks normal."""

    def __init__(self, marker: Path, real) -> None:
        self.marker, self.real = marker, real

    def __reduce__(self):
        return (operator.getitem, ((_Touch(self.marker), self.real), 1))


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    require(
        importlib.util.find_spec("torch") is not None and importlib.util.find_spec("litert_torch") is not None,
        "needs torch and litert-torch (make test installs them)",
    )
    import torch
    from helpers import images
    from torch import nn

    folder = tmp_path_factory.mktemp("trust")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    sample = torch.rand(1, 3, 8, 8)
    benign = folder / "benign.pt2"
    torch.export.save(torch.export.export(net, (sample,)), str(benign))
    members = _members(benign)
    root = next(iter(members)).split("/", 1)[0]
    marker = folder / "PAYLOAD_RAN"

    def pickled(obj) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    made = {"benign": benign}
    inputs = f"{root}/data/sample_inputs/model.pt"
    made["sample_inputs"] = _write(folder / "sample_inputs.pt2", {**members, inputs: pickled(_Touch(marker))})
    real_inputs = torch.load(io.BytesIO(members[inputs]), weights_only=True)
    made["stealth"] = _write(folder / "stealth.pt2", {**members, inputs: pickled(_Stealth(marker, real_inputs))})
    config_name = f"{root}/data/weights/model_weights_config.json"
    config = json.loads(members[config_name])
    fqn, entry = next(iter(config["config"].items()))
    entry["use_pickle"] = True
    weight = f"{root}/data/weights/{entry['path_name']}"
    made["use_pickle"] = _write(
        folder / "use_pickle.pt2",
        {**members, config_name: json.dumps(config).encode(), weight: pickled(_Stealth(marker, net.state_dict()[fqn]))},
    )
    program = f"{root}/models/model.json"
    text = members[program].decode()
    assert '"as_int": 8' in text  # the input's height, as a fixed size
    sneaky = text.replace(
        '"as_int": 8', f'"as_expr": {{"expr_str": "open({str(marker)!r}, \'w\') and 8", "hint": {{"as_int": 8}}}}', 1
    )
    made["sympify"] = _write(folder / "sympify.pt2", {**members, program: sneaky.encode()})

    calib, val = images(folder / "calib", 16, 8, 0), images(folder / "val", 8, 8, 1)
    return made, marker, calib, val


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


MALICIOUS = ("sample_inputs", "stealth", "use_pickle", "sympify")


@pytest.mark.parametrize("kind", MALICIOUS)
def test_a_malicious_pt2_is_refused_by_convert_before_it_runs(archives, kind, tmp_path, cli):
    made, marker, calib, _ = archives
    marker.unlink(missing_ok=True)
    code, _, err = cli("convert", made[kind], "--data", calib, "-o", tmp_path / "out.tflite", "--samples", "8", "--no-cache")
    assert code == 2, err
    assert "--trust-model" in err and err.count("\n") == 1
    assert not marker.exists(), f"the {kind} payload ran"
    assert not (tmp_path / "out.tflite").exists()


@pytest.mark.parametrize("kind", MALICIOUS)
def test_a_malicious_pt2_is_refused_as_a_validate_reference(archives, kind, tmp_path, cli):
    made, marker, calib, val = archives
    int8 = tmp_path / "benign_int8.tflite"
    code, _, err = cli("convert", made["benign"], "--data", calib, "-o", int8, "--samples", "8")
    assert code == 0, err
    marker.unlink(missing_ok=True)
    code, _, err = cli("validate", int8, "--reference", made[kind], "--data", val, "--runs", "2", "--warmup", "1", "--no-cache")
    assert code == 2, err
    assert "--trust-model" in err
    assert not marker.exists(), f"the {kind} payload ran"


def test_the_archives_are_real_attacks_that_run_when_trusted(archives, tmp_path, cli):
    """--trust-model is the user's word: torch.export.load then runs the payload, as it would without edgeq."""
    made, marker, calib, _ = archives
    marker.unlink(missing_ok=True)
    code, _, err = cli(
        "convert",
        made["stealth"],
        "--data",
        calib,
        "-o",
        tmp_path / "out.tflite",
        "--samples",
        "8",
        "--no-cache",
        "--trust-model",
    )
    assert code == 0, err
    assert marker.exists()


def test_a_benign_archive_converts_without_the_flag(archives, tmp_path, cli):
    made, _, calib, _ = archives
    code, _, err = cli("convert", made["benign"], "--data", calib, "-o", tmp_path / "out.tflite", "--samples", "8", "--no-cache")
    assert code == 0, err


def test_aotinductor_and_custom_objects_are_refused_by_name(archives, tmp_path):
    from edgeq.core.errors import ModelError
    from edgeq.frameworks.trust import check_pt2

    made, *_ = archives
    members = _members(made["benign"])
    root = next(iter(members)).split("/", 1)[0]
    for extra, words in (
        (f"{root}/data/aotinductor/model/model.so", "compiled code"),
        (f"{root}/data/constants/custom_obj_0", None),
    ):
        changed = dict(members)
        changed[extra] = b"\x7fELF"
        if words is None:
            name = f"{root}/data/constants/model_constants_config.json"
            changed[name] = json.dumps(
                {"config": {"obj": {"path_name": "custom_obj_0", "is_param": False, "use_pickle": True}}}
            ).encode()
            words = "custom object"
        path = _write(tmp_path / "x.pt2", changed)
        with pytest.raises(ModelError, match=words):
            check_pt2(path.read_bytes(), path)


def test_a_saved_model_with_file_ops_is_refused(tmp_path, cli, digits_calib):
    """A SavedModel whose serving function reads a file: ReadFile is refused before TensorFlow loads it."""
    import tensorflow as tf

    secret = tmp_path / "secret.txt"
    secret.write_text("1")

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 1], tf.float32)])
        def serve(self, x):
            return {"y": x * tf.strings.to_number(tf.io.read_file(str(secret)))}

    module = Reader()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    code, _, err = cli("convert", tmp_path / "sm", "--data", digits_calib, "-o", tmp_path / "out.tflite", "--samples", "8")
    assert code == 2 and "ReadFile" in err and "--trust-model" in err, err
