"""The op an accelerator computes wrongly, found by bisection over the graph's execution order, as
LiteRT's culprit finder does: a prefix of the graph is cut into a model of its own whose outputs
are every tensor the prefix hands on, run on the accelerator and on the CPU interpreter on one
sample; the culprit is in the prefix when one of those tensors differs. The shortest such prefix
ends at the culprit. The figures compare dequantized values, the CPU run as the reference."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.run.compiled_model import Accelerator, CompiledModelRunner
from edgeq.run.litert import LiteRTRunner, to_float
from edgeq.scoring.metrics import sqnr_db
from edgeq.tflite.graph import cut_at
from edgeq.tflite.model import TfliteModel, parse_tflite


@dataclass(frozen=True)
class Culprit:
    """The first op whose output on the accelerator is far from the CPU's while its inputs are not."""

    op: int  # index in the subgraph's execution order
    op_type: str
    tensor: str  # its output
    sqnr_db: float | None  # its output, accelerator against CPU (None: not finite)
    inputs_sqnr_db: float | None  # its computed inputs' worst, the same way (None: it reads only graph inputs)
    runs: int  # prefixes run on both

    def describe(self) -> str:
        computed = self.inputs_sqnr_db
        inputs = "it reads the graph's inputs" if computed is None else f"its inputs agree ({_db(computed)})"
        return f"op {self.op} {self.op_type} (output '{self.tensor}') gives {_db(self.sqnr_db)} against the CPU where {inputs}"


def _db(x: float | None) -> str:
    if x is None:
        return "values that are not finite"
    return "an exact match" if np.isinf(x) and x > 0 else f"{x:.1f} dB"


def first_wrong_op(model: Path, sample: list[np.ndarray], accelerator: Accelerator, far_db: float) -> Culprit | None:
    """The culprit in `model` for `accelerator` on `sample` (model-dtype arrays, the subgraph's input
    order, batch of one), or None where no prefix differs by more than `far_db` (the trouble is not one op's)."""
    data = model.read_bytes()
    parsed = parse_tflite(data)
    with tempfile.TemporaryDirectory(prefix="edgeq-culprit-") as folder:
        probe = _Probe(data, parsed, sample, accelerator, far_db, Path(folder))
        last = len(parsed.operators) - 1
        if not probe.differs(last):
            return None
        good, bad = -1, last  # the prefix ending at `good` agrees (none: the inputs), the one at `bad` differs
        while bad - good > 1:
            mid = (good + bad) // 2
            if probe.differs(mid):
                bad = mid
            else:
                good = mid
        return probe.culprit(bad)


def worst_output_db(model: Path, sample: list[np.ndarray], accelerator: Accelerator) -> float | None:
    """The model's worst output on `accelerator` against the CPU on `sample` (None: not finite)."""
    data = model.read_bytes()
    parsed = parse_tflite(data)
    with tempfile.TemporaryDirectory(prefix="edgeq-culprit-") as folder:
        figures = _Probe(data, parsed, sample, accelerator, 0.0, Path(folder)).figures(list(parsed.outputs))
    return None if None in figures.values() else min((x for x in figures.values() if x is not None), default=None)


class _Probe:
    def __init__(self, data: bytes, parsed: TfliteModel, sample: list[np.ndarray], accelerator: Accelerator, far_db, folder):
        self.data, self.parsed, self.sample, self.accelerator = data, parsed, sample, accelerator
        self.far_db, self.folder, self.runs = far_db, folder, 0

    def frontier(self, end: int) -> list[int]:
        """The tensors ops 0..end compute that a later op or the graph's outputs read."""
        ops = self.parsed.operators
        made = [t for op in ops[: end + 1] for t in op.outputs]
        read = {t for op in ops[end + 1 :] for t in op.inputs} | set(self.parsed.outputs)
        return [t for t in made if t in read] or list(ops[end].outputs)

    def figures(self, tensors: list[int]) -> dict[int, float | None]:
        """Each tensor's SQNR, accelerator against CPU, in a model cut to output them."""
        self.runs += 1
        path = self.folder / f"cut{self.runs}.tflite"
        path.write_bytes(cut_at(self.data, tensors))
        cpu = LiteRTRunner(path).run_raw(self.sample)
        measured = CompiledModelRunner(self.accelerator).measure(path, [s[None] for s in self.sample], 0, 1)
        fast = [np.asarray(o[0]) for o in measured.outputs or []]
        return {t: self._sqnr(t, want, got) for t, want, got in zip(tensors, cpu, fast)}

    def _sqnr(self, tensor: int, want: np.ndarray, got: np.ndarray) -> float | None:
        q = self.parsed.tensors[tensor].quantization
        real = (lambda a: to_float(a, q.scales[0], q.zero_points[0])) if q and not q.per_channel else np.asarray
        want, got = np.asarray(real(want), np.float64), np.asarray(real(got), np.float64).reshape(np.shape(want))
        figure = sqnr_db(float(np.sum(want * want)), float(np.sum((got - want) ** 2)))
        if figure is None:  # an all-zero tensor: exact where the accelerator also gives zeros
            return float("inf") if not np.any(got) else float("-inf")
        return None if figure == float("-inf") else figure

    def differs(self, end: int) -> bool:
        return any(x is None or x < self.far_db for x in self.figures(self.frontier(end)).values())

    def culprit(self, index: int) -> Culprit:
        op = self.parsed.operators[index]
        computed = [t for t in op.inputs if t >= 0 and t in self.parsed.producers]
        out = op.outputs[0]
        figures = self.figures([out, *computed])
        inputs = [figures[t] for t in computed]
        worst = min(inputs) if inputs and None not in inputs else None  # type: ignore[type-var]
        return Culprit(index, op.type, self.parsed.tensors[out].name, figures[out], worst, self.runs)
