"""The project file: defaults and gates a CI keeps beside its code, flags on the command line
overriding them.

`edgeq.toml` (tables named for commands), or `[tool.edgeq.<command>]` in `pyproject.toml`; the
nearest folder from here up that has either is the project's. Keys are the command's long flags
without the dashes (`min-agreement = "98%"`, `target = ["xnnpack"]`, `no-cache = true`); a value
goes through the same checks as the flag. The file is data: nothing in it runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

from edgeq.core.errors import UsageError
from edgeq.core.escape import terminal

FILE = "edgeq.toml"


def find(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest project file from `start` up, and its edgeq tables; None when there is none."""
    for folder in (start, *start.parents):
        for path in (folder / FILE, folder / "pyproject.toml"):
            tables = load(path) if path.is_file() else None
            if tables is not None:
                return path, tables
    return None


def load(path: Path) -> dict[str, Any] | None:
    """The edgeq tables of an edgeq.toml, or of a pyproject.toml's [tool.edgeq] (None: it has none)."""
    if not path.is_file():
        raise UsageError(f"--project {terminal(path)}: no such file; name an edgeq.toml or a pyproject.toml")
    data = _read(path)
    if path.name != "pyproject.toml":
        return data
    tool = data.get("tool")
    return tool.get("edgeq") if isinstance(tool, dict) else None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        why = " ".join(str(exc).split())
        raise UsageError(f"{path}: not a readable TOML file ({why}); fix it or pass --no-project") from None


def default_map(path: Path, tables: dict[str, Any], commands: dict[str, click.Command]) -> dict[str, dict[str, Any]]:
    """Click's default map of the project's tables: each key checked against its command's flags."""
    where = "[tool.edgeq" if path.name == "pyproject.toml" else "["
    found: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        command = commands.get(name)
        if command is None or not isinstance(table, dict) or isinstance(command, click.Group):
            known = ", ".join(n for n, c in commands.items() if not isinstance(c, click.Group))
            raise UsageError(f"{path}: {terminal(where + str(name))}] is not a command's table; use one of {known}")
        flags = {opt[2:]: p.name for p in command.params for opt in p.opts if opt.startswith("--") and p.name}
        settings: dict[str, Any] = {}
        for key, value in table.items():
            if key not in flags or key in ("json", "force", "help"):
                raise UsageError(
                    f"{path}: {terminal(where + name)}] has no setting {terminal(repr(key))}; keys are the long flags of "
                    f"edgeq {name} --help without the dashes (--json and --force stay on the command line)"
                )
            settings[flags[key]] = value
        found[name] = settings
    return found


def given(ctx: click.Context) -> list[str]:
    """The settings this run took from the project file."""
    return [
        p.opts[0] for p in ctx.command.params if ctx.get_parameter_source(p.name or "") == click.core.ParameterSource.DEFAULT_MAP
    ]
