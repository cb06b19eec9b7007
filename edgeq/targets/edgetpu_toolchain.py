"""The Edge TPU for real: run `edgetpu_compiler`, read its report, load `libedgetpu.so.1`.

The compiler prints a summary (version, subgraphs, how many operations run on the Edge TPU and
on the CPU) and, with -s or in its .log file, a table of "Operator  Count  Status" rows, as
documented at https://coral.ai/docs/edgetpu/compiler/. edgeq parses both and compares the
compiler's answer with the static prediction of edgeq.targets.edgetpu.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.core.errors import ModelError

COMPILER = "edgetpu_compiler"
LIBRARY = "libedgetpu.so.1"
MAPPED = "Mapped to Edge TPU"
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
_FIELDS = {
    "version": (r"Edge TPU Compiler version (\S+)", str),
    "subgraphs": (r"Number of Edge TPU subgraphs:\s*(\d+)", int),
    "total_ops": (r"Total number of operations:\s*(\d+)", int),
    "ops_on_edgetpu": (r"Number of operations that will run on Edge TPU:\s*(\d+)", int),
    "ops_on_cpu": (r"Number of operations that will run on CPU:\s*(\d+)", int),
}


@dataclass(frozen=True)
class OperatorRow:
    """One row of the compiler's operator table."""

    type: str
    count: int
    status: str


@dataclass(frozen=True)
class Difference:
    type: str
    predicted_cpu: int
    compiler_cpu: int


@dataclass(frozen=True)
class Comparison:
    """The compiler's word against edgeq's prediction."""

    predicted_edgetpu_ops: int
    compiler_edgetpu_ops: int | None
    agrees: bool
    differences: tuple[Difference, ...] = ()


@dataclass
class CompilerReport:
    version: str | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    ops_on_edgetpu: int | None = None
    ops_on_cpu: int | None = None
    operators: list[OperatorRow] = field(default_factory=list)
    others_mapped: bool = False  # "... All other operators were mapped successfully"
    comparison: Comparison | None = None  # set once compared with the prediction

    def not_mapped(self) -> Counter:
        counts: Counter = Counter()
        for row in self.operators:
            if row.status != MAPPED:
                counts[row.type] += row.count
        return counts

    def line(self) -> str:
        """One line: the compiler's version, where the ops run, and whether that agrees with the prediction."""
        c = self.comparison
        verdict = (
            ""
            if c is None
            else "; "
            + (
                "agrees with the prediction"
                if c.agrees
                else "differs: "
                + ", ".join(f"{d.type} on the CPU {d.compiler_cpu} (predicted {d.predicted_cpu})" for d in c.differences)
            )
        )
        return (
            f"edgetpu_compiler {self.version or '(version not printed)'}: {self.ops_on_edgetpu} ops on the Edge TPU, "
            f"{self.ops_on_cpu} on the CPU{verdict}"
        )


def parse_compiler_output(text: str) -> CompilerReport:
    """The compiler's stdout, its .log file, or both concatenated."""
    report = CompilerReport()
    for name, (pattern, kind) in _FIELDS.items():
        found = re.search(pattern, text)
        if found:
            setattr(report, name, kind(found.group(1)))
    rows: dict[tuple[str, str], int] = {}
    in_table = False
    for line in text.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status\s*$", line):
            in_table = True
            continue
        if in_table:
            if "All other operators were mapped successfully" in line:
                report.others_mapped = True
            row = _ROW.match(line)
            if row:  # the same table may appear in stdout and in the log: count each row once
                rows[(row.group(1), row.group(3))] = int(row.group(2))
    report.operators = [OperatorRow(t, c, s) for (t, s), c in rows.items()]
    if report.ops_on_edgetpu is None and report.operators and not report.others_mapped:
        report.ops_on_edgetpu = sum(r.count for r in report.operators if r.status == MAPPED)
        report.ops_on_cpu = sum(r.count for r in report.operators if r.status != MAPPED)
    return report


def compile_model(model: Path, out_dir: Path, timeout: float = 600) -> tuple[CompilerReport, Path]:
    """Run the compiler; its report and the compiled `<model>_edgetpu.tflite`."""
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise ModelError(f"{COMPILER} is not on PATH")
    try:
        proc = subprocess.run([compiler, "-s", "-o", str(out_dir), str(model)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelError(f"{COMPILER} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise ModelError(f"{COMPILER} failed on {model}: {last[-1] if last else f'exit code {proc.returncode}'}")
    log = out_dir / f"{model.stem}_edgetpu.log"
    text = proc.stdout + ("\n" + log.read_text() if log.exists() else "")
    return parse_compiler_output(text), out_dir / f"{model.stem}_edgetpu.tflite"


def compare(predicted, report: CompilerReport) -> Comparison:
    """Predicted per-op-type CPU counts (an edgeq.targets.TargetReport) against the compiler's."""
    want: Counter = Counter(f.type for f in predicted.ops if not f.on_target)
    got = report.not_mapped()
    types = sorted(set(want) | set(got))
    differences = tuple(Difference(t, want[t], got[t]) for t in types if want[t] != got[t])
    return Comparison(
        predicted.target_ops,
        report.ops_on_edgetpu,
        not differences and report.ops_on_edgetpu in (None, predicted.target_ops),
        differences,
    )


def library_loads() -> str | None:
    """None when libedgetpu.so.1 loads, else why not."""
    try:
        ctypes.CDLL(LIBRARY)
    except OSError as exc:
        return str(exc)
    return None
