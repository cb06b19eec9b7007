"""Crafted names from a model or a results file cannot inject into reports or the terminal."""

from __future__ import annotations

import re

from edgeq.core.escape import md, terminal
from edgeq.report.documents import html_page, markdown
from edgeq.validation.results import ValidationResult

EVIL = "x\n## ✅ PASSED\n![pixel](https://evil.example/p.png)<script>alert(1)</script>\x1b[2J\x1b]0;owned\x07|"


def _results(cnn_int8_path, digits_val) -> dict:
    from helpers import validate

    return validate(cnn_int8_path, cnn_int8_path, digits_val, runs=2, warmup=0)


def test_markdown_escaper_leaves_nothing_github_renders():
    out = md(EVIL).replace("<!-- -->", "")  # the empty comment that splits autolinks and :shortcodes: is ours
    assert "\n" not in out and "\x1b" not in out and "\x07" not in out
    for ch in "#!<>[]|`*_":
        assert re.search(r"(?<!\\)" + re.escape(ch), out) is None, ch


def test_terminal_shows_control_characters_as_hex():
    out = terminal(EVIL)
    assert "\x1b" not in out and "\x07" not in out and "\n" not in out and "\\x1b[2J" in out


def test_crafted_names_in_reports(cnn_int8, digits_calib):
    results = _results(cnn_int8.output, digits_calib.parent / "val").to_json()
    results["outputs"][0]["name"] = EVIL
    results["warnings"] = [EVIL]
    results["data"] = EVIL
    results["per_layer"] = {
        "ranked_by": "<script>x</script>",
        "calibration": EVIL,
        "debug_samples": 16,
        "layers": [
            {
                "rank": 1,
                "tensor_name": EVIL,
                "op_type": EVIL,
                "sqnr_db": 1.0,
                "rmse_lsb": 1.0,
                "max_abs_error_lsb": 1.0,
                "scale": 0.1,
                "zero_point": 0,
            }
        ],
    }
    results["passed"] = False
    results = ValidationResult.from_json(results)
    text = markdown(results)
    assert not any(line.startswith("## ✅") for line in text.splitlines())
    assert "❌ FAILED" in text.splitlines()[0]
    assert "\x1b" not in text and "\x07" not in text
    for raw in (r"<", r"!\[", r"\]\(", r"^#"):  # no raw HTML, image, link or heading from the crafted text
        assert not any(re.search(r"(?<!\\)" + raw, line) for line in text.splitlines()[1:] if "evil" in line), raw
    page = html_page(results)
    assert "<script>" not in page and "\x1b" not in page
    assert "<script" not in page.lower() and "evil.example/p.png)<" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_crafted_tensor_name_in_inspect_output(cnn_int8, tmp_path, cli):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    root = schema.ModelT.InitFromPackedBuf(bytearray(cnn_int8.output.read_bytes()), 0)
    graph = root.subgraphs[0]
    graph.tensors[graph.inputs[0]].name = EVIL.encode()
    builder = flatbuffers.Builder(4096)
    builder.Finish(root.Pack(builder), file_identifier=b"TFL3")
    crafted = tmp_path / "crafted.tflite"
    crafted.write_bytes(bytes(builder.Output()))
    code, out, err = cli("inspect", crafted)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out
