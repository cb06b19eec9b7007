"""The package's rules, checked on its source: the dependency rule on the import graph of edgeq/
(every import, also the ones inside functions, and `edgeq` itself): lower stages never import
higher ones, nothing imports the CLI, only conversion/ imports TensorFlow, no import cycle, no
private name imported from another module; manifests and results are read as typed records, never
by string key outside the schema module; no function of more than 60 statements. Each check is run once
on a planted violation, so that none of them passes vacuously."""

from __future__ import annotations

import ast
import dataclasses
import shutil
import typing
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "edgeq"
# stage -> rank; core/ (errors, the record codec, files, units), host/ (this machine, the child) and
# scoring/ (figures, roles, gates) are the shared ground floor, rank 0
STAGES = {
    "core": 0,
    "host": 0,
    "scoring": 0,
    "data": 1,
    "tflite": 2,
    "targets": 3,
    "records": 4,
    "run": 5,
    "frameworks": 6,
    "conversion": 7,
    "analysis": 8,
    "validation": 9,
    "report": 10,
    "packaging": 11,
    "api": 12,
    "cli": 13,
}
TENSORFLOW = ("tensorflow", "keras", "tf_keras", "torch", "litert_torch", "torchao")  # the frameworks only these stages load
LOADS_FRAMEWORKS = ("edgeq.frameworks", "edgeq.conversion")
MAX_MODULES = 12  # per folder


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
    return {name: {m for m, _, _ in imports(path, known) if m in known and m != name} for name, path in modules(package).items()}


def upward(package: Path = PACKAGE) -> list[str]:
    return [
        f"{name} ({stage(name)}) imports {other} ({stage(other)})"
        for name, targets in graph(package).items()
        for other in targets
        if name != "edgeq"
        and (stage(other) > stage(name) or (other.startswith("edgeq.cli") and not name.startswith("edgeq.cli")))
    ]


def test_the_stage_packages_exist():
    assert set(STAGES) - {"api", "cli"} <= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}


def test_the_package_face_is_in_the_graph():
    """`edgeq` itself (its __init__, the API face) is a node: a stage that imports it imports upward."""
    edges = graph()
    assert "edgeq" in edges and "edgeq.core.version" in edges["edgeq"]
    assert stage("edgeq") == STAGES["api"]


def test_lower_stages_never_import_higher_ones_and_nothing_imports_the_cli():
    assert not upward()


def test_only_frameworks_and_conversion_import_tensorflow_and_pytorch():
    known = set(modules())
    wrong = [
        f"{name}:{line} imports {m}"
        for name, path in modules().items()
        for m, _, line in imports(path, known)
        if m.split(".")[0] in TENSORFLOW and not name.startswith(LOADS_FRAMEWORKS)
    ]
    assert not wrong


def crowded(package: Path = PACKAGE) -> list[str]:
    """Folders of the package holding more than MAX_MODULES modules (an __init__ counts when it holds code)."""
    found = []
    for folder in [package, *(p for p in package.rglob("*") if p.is_dir() and (p / "__init__.py").exists())]:
        count = sum(1 for f in folder.glob("*.py") if f.name != "__init__.py" or len(f.read_text().splitlines()) > 1)
        if count > MAX_MODULES:
            found.append(f"{folder.relative_to(package.parent)}: {count} modules")
    return found


def test_no_folder_holds_more_than_twelve_modules(tmp_path):
    assert not crowded()
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for i in range(MAX_MODULES + 1):
        (copy / "run" / f"planted_{i}.py").write_text("")
    assert [c for c in crowded(copy) if c.startswith("edgeq/run:")]


def test_no_private_name_is_imported_from_another_module():
    known = set(modules())
    wrong = [
        f"{name}:{line} takes {n} from {m}"
        for name, path in modules().items()
        for m, names, line in imports(path, known)
        if m.startswith("edgeq")
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not wrong


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    # a package's __init__ importing its own members is not a cycle in practice only when the
    # members do not import it back; none is allowed here
    assert not cycles


@pytest.mark.parametrize(
    "importer, imported",
    [
        ("tflite/model.py", "edgeq.conversion.converter"),
        ("run/litert.py", "edgeq.validation.compare"),
        ("report/text.py", "edgeq.cli"),
        ("validation/compare.py", "edgeq"),
    ],
)
def test_the_rule_catches_an_upward_import(importer, imported, tmp_path):
    """The check is not vacuous: the same code finds an upward import planted in a copy of the tree."""
    copy, _ = planted_import(tmp_path, importer, imported, upward)
    assert [v for v in upward(copy) if imported in v]


def planted_import(tmp_path: Path, importer: str, imported: str, check) -> tuple[Path, Path]:
    """A copy of the package that passes `check`, then with `import imported` planted in `importer`."""
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not check(copy)
    target = copy / importer
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    import {imported}  # noqa\n")
    return copy, target


# -- the shared records sit below conversion/ ------------------------------------------------------

# Who may not import conversion/: validation/ (it loads sources from frameworks/, the per-layer
# analysis is analysis/), and the readers of JSON, which read records.
NO_CONVERSION = ("edgeq.validation", "edgeq.report", "edgeq.packaging", "edgeq.cli.inspect", "edgeq.cli.report")


def conversion_imports(package: Path = PACKAGE) -> list[str]:
    """Modules of NO_CONVERSION that import conversion/."""
    return [
        f"{name} imports {other}"
        for name, targets in graph(package).items()
        if name.startswith(NO_CONVERSION)
        for other in sorted(t for t in targets if t.startswith("edgeq.conversion"))
    ]


def test_readers_of_records_import_no_conversion_module():
    assert not conversion_imports()


@pytest.mark.parametrize(
    "importer, imported",
    [
        ("report/text.py", "edgeq.conversion.options"),
        ("packaging/bundle.py", "edgeq.conversion.describe"),
        ("cli/inspect.py", "edgeq.conversion.search.budget"),
        ("cli/report.py", "edgeq.conversion.search.latency"),
        ("validation/results.py", "edgeq.conversion.options"),
        ("validation/compare.py", "edgeq.conversion.quantize"),
        ("validation/devices.py", "edgeq.conversion.calibration.calibrated"),
    ],
)
def test_a_reader_importing_conversion_is_caught(importer, imported, tmp_path):
    copy, target = planted_import(tmp_path, importer, imported, conversion_imports)
    assert conversion_imports(copy) == [f"{module_name(target, copy)} imports {imported}"]


# -- manifests and results are typed records ---------------------------------------------------

# Modules that read another format by its own keys, some of which are also field names of the
# manifest or results records; none of them reads a manifest or a results file.
OTHER_FORMATS = {
    "edgeq/core/schema.py": "the manifest and results upgrades: the one place their JSON is read by key",
    "edgeq/run/litert.py": "LiteRT's tensor-detail dicts (name, index, shape, dtype, quantization)",
    "edgeq/tflite/mediapipe_ops.py": "LiteRT's input-detail dicts (the float check of a rewrite)",
    "edgeq/run/compiled_model.py": "LiteRT CompiledModel's signature and tensor-detail dicts",
    "edgeq/conversion/calibration/methods.py": "LiteRT's tensor-detail dicts",
    "edgeq/conversion/refinement/bias.py": "LiteRT's tensor-detail dicts",
    "edgeq/conversion/refinement/layers.py": "LiteRT's tensor-detail dicts",
    "edgeq/conversion/calibration/observed.py": "LiteRT's tensor-detail dicts",
    "edgeq/run/devices/on_device.py": "the device-side script's JSON protocol",
    "edgeq/run/devices/aihub.py": "qai_hub's profile dicts (execution_summary, execution_detail: name, type, compute_unit)",
    "edgeq/cli/devices.py": "the device check's JSON lines",
    "edgeq/analysis/per_layer.py": "TensorFlow's layer-statistics CSV",
    "edgeq/frameworks/onnx_pools.py": "onnx2torch's node-attribute dicts (ONNX LRN's size)",
    "edgeq/frameworks/onnx_recurrent.py": "an ONNX node's attributes (hidden_size, direction, layout)",
}


def record_keys() -> set[str]:
    """Every field name of the manifest's and the results file's records, all the way down."""
    from edgeq.records.manifest import Manifest
    from edgeq.validation.results import ValidationResult

    found: set[str] = set()
    seen: set[type] = set()

    def walk(hint) -> None:
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if hint in seen:
                return
            seen.add(hint)
            found.update(f.name for f in dataclasses.fields(hint))
            for inner in typing.get_type_hints(hint).values():
                walk(inner)
        for arg in typing.get_args(hint):
            walk(arg)

    walk(Manifest)
    walk(ValidationResult)
    return found


def string_key_reads(package: Path = PACKAGE) -> list[str]:
    """`x["key"]` and `x.get("key")` where the key is a field of the manifest or results records."""
    keys, found = record_keys(), []
    for path in sorted(package.rglob("*.py")):
        if f"edgeq/{path.relative_to(package).as_posix()}" in OTHER_FORMATS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            key = None
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
                key = node.slice.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                key = node.args[0].value
            if isinstance(key, str) and key in keys:
                found.append(f"{path.relative_to(package)}:{node.lineno} reads '{key}'")
    return found


def test_no_module_reads_a_manifest_or_results_key_by_string():
    assert not string_key_reads()


def test_the_records_are_typed_all_the_way_down():
    """No field of the manifest or results records is Any, except the target sections that hold
    edgeq.targets' own report JSON (read back with TargetReport.from_dict)."""
    from edgeq.records.manifest import Manifest
    from edgeq.validation.results import ValidationResult

    untyped: list[str] = []
    seen: set[type] = set()

    def walk(cls) -> None:
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or cls in seen:
            return
        seen.add(cls)
        for name, hint in typing.get_type_hints(cls).items():
            if "Any" in str(hint) and f"{cls.__name__}.{name}" not in ("Manifest.targets", "TargetCheck.prediction"):
                untyped.append(f"{cls.__name__}.{name}: {hint}")
            for inner in (hint, *typing.get_args(hint), *(a for arg in typing.get_args(hint) for a in typing.get_args(arg))):
                walk(inner)

    walk(Manifest)
    walk(ValidationResult)
    assert len(seen) > 30 and not untyped


def test_a_string_key_read_of_a_manifest_is_caught(tmp_path):
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not string_key_reads(copy)
    target = copy / "report" / "text.py"
    target.write_text(target.read_text() + "\n\ndef _planted(m):\n    return m['calibration'].get('fingerprint')\n")
    assert sorted(string_key_reads(copy)) == [
        f"report/text.py:{target.read_text().count(chr(10))} reads 'calibration'",
        f"report/text.py:{target.read_text().count(chr(10))} reads 'fingerprint'",
    ]


# -- run/ returns typed records -------------------------------------------------------------------

# on_device.py runs on the device without edgeq: its JSON is read back typed (device_script.Probe, ScriptRun)
DEVICE_SIDE = {"on_device.py"}


def dict_returns(package: Path = PACKAGE) -> list[str]:
    """Functions in run/ annotated to return a dict, or returning a dict display or comprehension."""
    found = []
    for path in sorted((package / "run").glob("*.py")):
        if path.name in DEVICE_SIDE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            annotated = node.returns is not None and "dict" in ast.unparse(node.returns).lower()
            literal = any(isinstance(r, ast.Return) and isinstance(r.value, (ast.Dict, ast.DictComp)) for r in ast.walk(node))
            if annotated or literal:
                found.append(f"run/{path.name}::{node.name}")
    return found


def test_no_function_in_run_returns_a_dict():
    assert not dict_returns()


@pytest.mark.parametrize(
    "planted",
    ["def planted() -> dict[str, float]:\n    return timings()\n", "def planted(times):\n    return {'p50': times[0]}\n"],
)
def test_a_dict_returned_in_run_is_caught(planted, tmp_path):
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not dict_returns(copy)
    (copy / "run" / "litert.py").write_text((copy / "run" / "litert.py").read_text() + "\n\n" + planted)
    assert dict_returns(copy) == ["run/litert.py::planted"]


# -- short functions -------------------------------------------------------------------------------

MAX_LINES = 60


def long_functions(package: Path = PACKAGE) -> list[str]:
    """Functions of over MAX_LINES statements (logical lines: the formatter's wrapping of one call
    over several lines does not count, nor does the signature, a command's option declarations)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                statements = sum(isinstance(inner, ast.stmt) for part in node.body for inner in ast.walk(part))
                if statements > MAX_LINES:
                    found.append(f"{path.relative_to(package)}::{node.name} {statements} statements")
    return found


def test_no_function_is_over_60_statements():
    assert not long_functions()


def test_a_long_function_is_caught(tmp_path):
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert not long_functions(copy)
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES + 1))
    (copy / "core" / "units.py").write_text((copy / "core" / "units.py").read_text() + f"\n\ndef planted():\n{body}")
    assert long_functions(copy) == [f"core/units.py::planted {MAX_LINES + 1} statements"]


def test_tests_are_laid_out_like_the_package():
    """Unit tests sit beside the stage they test (tests/<stage>/, tests/core/ for the shared modules);
    the root keeps only what crosses every stage."""
    root = {p.name for p in (ROOT / "tests").glob("test_*.py")}
    assert root == {"test_readme.py", "test_layout.py", "test_fuzz.py", "test_workflow.py"}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders <= set(STAGES) | {"core"} and {"run", "conversion", "validation", "core"} <= folders


# -- options typed from flag to pipeline ---------------------------------------------------------

ENTRY_POINTS = (
    "__init__.py",
    "api.py",
    "cli",
    "conversion/converter.py",
    "conversion/options.py",
    "validation/compare.py",
    "validation/options.py",
)


def untyped_keywords(package: Path = PACKAGE) -> list[str]:
    """Functions of the API, the CLI and the pipeline's entry points that take `**name` other than
    `**name: Unpack[SomeTypedDict]` (keywords a type checker checks one by one) or a decorator's
    `**kwargs: P.kwargs` (a ParamSpec: the wrapped function's own parameters)."""
    found = []
    for entry in ENTRY_POINTS:
        for path in sorted([package / entry] if entry.endswith(".py") else (package / entry).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.kwarg is not None:
                    note = node.args.kwarg.annotation
                    typed = (
                        isinstance(note, ast.Subscript)
                        and isinstance(note.value, ast.Name)
                        and note.value.id == "Unpack"
                        or isinstance(note, ast.Attribute)
                        and note.attr == "kwargs"
                    )
                    if not typed:
                        found.append(f"{path.relative_to(package.parent)}::{node.name} takes **{node.args.kwarg.arg}")
    return found


def test_no_entry_point_takes_untyped_keywords(tmp_path):
    assert not untyped_keywords()
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "api.py").write_text((copy / "api.py").read_text() + "\n\ndef planted(**values: Any) -> None:\n    pass\n")
    assert untyped_keywords(copy) == ["edgeq/api.py::planted takes **values"]


def group_fields() -> dict[str, object]:
    """Every setting of the option groups and its default (the groups own them)."""
    from edgeq.conversion.options import ConvertOptions
    from edgeq.data.samples import Preprocessing
    from edgeq.records.recipe import Recipe
    from edgeq.scoring.gates import Gates
    from edgeq.validation.options import ValidateOptions

    found: dict[str, object] = {}
    for group in (Recipe, Preprocessing, Gates, ConvertOptions, ValidateOptions):
        for f in dataclasses.fields(group):
            if f.default is not dataclasses.MISSING:
                found.setdefault(f.name, f.default)
    return found


NOT_GIVEN = (None, False, (), [])


def literal_defaults(package: Path = PACKAGE) -> list[str]:
    """CLI options of a group's setting whose default is written in the CLI (a literal other than
    "not given"), instead of taken from the group."""
    settings, found = group_fields(), []
    for path in sorted((package / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for arg, default in zip(node.args.args[len(node.args.args) - len(node.args.defaults) :], node.args.defaults):
                if not (
                    isinstance(default, ast.Call) and getattr(default.func, "attr", "") in ("Option", "Argument") and default.args
                ):
                    continue
                first = default.args[0]
                if (
                    arg.arg in settings
                    and isinstance(first, (ast.Constant, ast.List, ast.Tuple))
                    and ast.literal_eval(first) not in NOT_GIVEN
                ):
                    found.append(
                        f"{path.name}::{node.name} --{arg.arg.replace('_', '-')} defaults to {ast.literal_eval(first)!r} in the "
                        f"CLI"
                    )
    return found


def test_each_setting_has_its_default_in_one_place(tmp_path):
    """A setting's default is its group's field default; the CLI says "not given" or takes the
    group's, and what it shows as the default is the group's."""
    import typer.main

    from edgeq.cli import app

    assert not literal_defaults()
    settings = group_fields()
    shown = []
    for name in ("convert", "validate"):
        command = typer.main.get_command(app).commands[name]
        for param in command.params:
            default = settings.get(param.name)
            if param.name in settings and param.default not in NOT_GIVEN and str(param.default) != str(default):
                shown.append(f"{name} --{param.name}: {param.default!r} against {settings[param.name]!r}")
    assert not shown
    copy = tmp_path / "edgeq"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    cli = copy / "cli" / "validate.py"
    cli.write_text(cli.read_text().replace("typer.Option(DEFAULTS.runs,", "typer.Option(100,"))
    assert literal_defaults(copy) == ["validate.py::validate --runs defaults to 100 in the CLI"]


def test_the_registries_name_what_the_records_accept():
    """Refiners: the recipe's names are "none", the registry's keys and "auto"; targets: one tuple."""
    from edgeq.conversion.refinement.choice import REFINERS
    from edgeq.records.recipe import REFINEMENTS

    assert REFINEMENTS == ("none", *REFINERS, "auto")
