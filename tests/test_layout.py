"""The package's dependency rule, checked on the import graph of edgeq/ (every import, also the
ones inside functions): lower stages never import higher ones, nothing imports the CLI, only
conversion/ imports TensorFlow, no import cycle, no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeq"
# stage -> rank; top-level modules (errors, schema, metrics, ...) are the shared core, rank 0
STAGES = {"data": 1, "tflite": 2, "targets": 3, "run": 4, "conversion": 5, "validation": 6, "report": 7, "api": 8, "cli": 9}
TENSORFLOW = ("tensorflow", "keras", "tf_keras", "torch", "litert_torch", "torchao")  # the frameworks only conversion/ loads


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.get(parts[1], 0) if len(parts) > 1 else STAGES["api"]


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in package.rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from edgeq.run import litert` imports the module edgeq.run.litert
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
            found += [(m, [], node.lineno) for m in submodules]
            names = [a.name for a in node.names if f"{node.module}.{a.name}" not in known]
            if names:
                found.append((node.module, names, node.lineno))
    return found


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    known = set(modules(package))
    return {name: {m for m, _, _ in imports(path, known) if m in known and m not in ("edgeq", name)}
            for name, path in modules(package).items()}


def upward(package: Path = PACKAGE) -> list[str]:
    return [f"{name} ({stage(name)}) imports {other} ({stage(other)})"
            for name, targets in graph(package).items() for other in targets
            if name != "edgeq" and (stage(other) > stage(name) or (other.startswith("edgeq.cli") and not name.startswith("edgeq.cli")))]


def test_the_stage_packages_exist():
    assert set(STAGES) - {"api", "cli"} <= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_lower_stages_never_import_higher_ones_and_nothing_imports_the_cli():
    assert not upward()


def test_only_convert_imports_tensorflow_and_pytorch():
    known = set(modules())
    wrong = [f"{name}:{line} imports {m}" for name, path in modules().items() for m, _, line in imports(path, known)
             if m.split(".")[0] in TENSORFLOW and not name.startswith("edgeq.conversion")]
    assert not wrong


def test_no_private_name_is_imported_from_another_module():
    known = set(modules())
    wrong = [f"{name}:{line} takes {n} from {m}" for name, path in modules().items() for m, names, line in imports(path, known)
             if m.startswith("edgeq") for n in names if n.startswith("_") and not n.startswith("__")]
    assert not wrong


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    # a package's __init__ importing its own members is not a cycle in practice only when the
    # members do not import it back; none is allowed here
    assert not cycles


@pytest.mark.parametrize("importer, imported", [("tflite/model.py", "edgeq.conversion.converter"),
                                                ("run/litert.py", "edgeq.validation.compare"),
                                                ("report/text.py", "edgeq.cli")])
def test_the_rule_catches_an_upward_import(importer, imported, tmp_path):
    """The check is not vacuous: the same code finds an upward import planted in a copy of the tree."""
    import shutil

    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not upward(copy)
    target = copy / importer
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    import {imported}  # noqa\n")
    assert [v for v in upward(copy) if imported in v]
