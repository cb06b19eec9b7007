"""The README's and the docs' runnable examples (their `sh` blocks) work as printed, against the demo model."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

pytestmark = pytest.mark.tf


# the README, then the pages of docs/ in the order a reader takes them (the blocks build on each other)
PAGES = ["README.md"] + [
    f"docs/{p}.md"
    for p in (
        "convert",
        "inspect",
        "validate",
        "app-pipeline",
        "devices",
        "accelerators",
        "security",
        "architecture",
        "performance",
    )
]


def all_text() -> str:
    return "\n".join((ROOT / page).read_text() for page in PAGES)


def sh_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", all_text(), flags=re.S | re.M)


def test_every_docs_page_is_read_and_the_readme_is_short():
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} - set(PAGES) == {"docs/compat.md"}
    assert len((ROOT / "README.md").read_bytes()) < 15_000
    assert not re.search(r"\bissues? \d+", all_text()), "no issue numbers where a user reads"


def test_readme_has_runnable_examples():
    commands = [line for block in sh_blocks() for line in block.splitlines() if line.startswith("edgeq ")]
    assert {c.split()[1] for c in commands} >= {"inspect", "convert", "validate", "report", "devices"}


def test_readme_sh_blocks_run_as_printed(trained, tmp_path):
    """In a folder laid out like the checkout after `make demo`: .venv, representative_data, build/demo."""
    keras_path, int8, _ = trained
    demo = tmp_path / "build" / "demo"
    demo.mkdir(parents=True)
    shutil.copy(keras_path, demo / "digits_cnn.keras")
    shutil.copy(int8, demo / "digits_cnn_int8.tflite")
    shutil.copy(int8.with_name(int8.name.removesuffix(".tflite") + ".edgeq.json"), demo / "digits_cnn_int8.edgeq.json")
    (tmp_path / "representative_data").symlink_to(ROOT / "representative_data")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    assert (tmp_path / ".venv" / "bin" / "activate").is_file() and (tmp_path / ".venv" / "bin" / "edgeq").is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    for block in sh_blocks():
        proc = subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README block failed:\n{block}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr
    assert (demo / "digits_int8.tflite").is_file() and (demo / "results.json").is_file()
    assert (demo / "report.md").read_text().startswith("## edgeq validation: ✅ PASSED")


def test_the_demo_figures_the_readme_quotes_are_what_the_demo_gives(digits_calib, tmp_path):
    """The demo as `make demo` runs it (15 epochs, default conversion, the held-out digits), against
    the figures the README quotes: equal within what training on another CPU moves them."""
    sys.path.insert(0, str(ROOT / "demo"))
    from helpers import convert, validate
    from train_digits import train

    text = " ".join(all_text().split())
    quoted = re.search(
        r"On the demo \(`make demo`.*?float top-1 ([\d.]+), INT8 top-1 ([\d.]+) on the (\d+) held-out digits "
        r"\(drop −?[\d.]+ points\), agreement ([\d.]+)%, SQNR ([\d.]+) dB, INT8 ([\d.]+)×",
        text,
    )
    assert quoted, "the README's demo sentence moved: keep it and this test together"
    float_top1, int8_top1, samples, agreement, sqnr, ratio = (float(g) for g in quoted.groups())
    train(tmp_path / "digits_cnn.keras")
    out = convert(tmp_path / "digits_cnn.keras", tmp_path / "digits_cnn_int8.tflite", digits_calib).output
    result = validate(out, tmp_path / "digits_cnn.keras", digits_calib.parent / "val", runs=3, warmup=1)
    assert result.accuracy.samples == samples
    assert abs(result.accuracy.float_top1 - float_top1) < 0.02 and abs(result.accuracy.int8_top1 - int8_top1) < 0.02
    assert abs(100 * result.accuracy.agreement - agreement) < 1.5 and abs(result.worst_sqnr_db - sqnr) < 6
    assert abs(result.size.ratio - ratio) < 0.005
