"""What every command shares: the Typer app, -v/-q, human output, one-line errors, progress bars."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TextIO, TypeVar

import click
import typer
from typer.core import TyperCommand, TyperGroup

from edgeq.core.errors import EdgeqError
from edgeq.core.escape import terminal
from edgeq.core.version import __version__

STDOUT = "-"
T = TypeVar("T")


def json_args(args: list[str]) -> list[str]:
    """`--json [PATH]`: a `--json` not followed by a PATH ending in .json (or by -) prints on stdout.
    Click has no option with an optional value, so the missing value is filled in here."""
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--":
            return out + args[i + 1 :]
        following = args[i + 1] if i + 1 < len(args) else None
        if arg == "--json" and (following is None or (following != STDOUT and not following.lower().endswith(".json"))):
            out.append(STDOUT)
    return out


def parsed(parse: Callable[[Any, list[str]], T], ctx: Any, args: list[str]) -> T:
    """Click's parse with `--json [PATH]` filled in, and a usage error as one line and exit 2 (not
    Typer's boxed usage text): what was wrong and where the help is."""
    try:
        return parse(ctx, json_args(args))
    except click.UsageError as exc:
        text = " ".join(exc.format_message().replace(" (env var: 'None')", "").split())
        param = getattr(exc, "param", None)
        if param is not None and param.name in (ctx.default_map or {}) and not set(param.opts) & set(args):
            text += f" (set in {state['project']})"
        typer.echo(f"edgeq: error: {terminal(text)} (see {ctx.command_path} --help)", err=True)
        raise typer.Exit(2) from None


class Command(TyperCommand):
    """A command whose `--json` takes an optional PATH; usage errors in one line."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return parsed(super().parse_args, ctx, args)


class Group(TyperGroup):
    """A command group, likewise (edgeq, edgeq devices)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return parsed(super().parse_args, ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        return parsed(lambda c, a: super(Group, self).resolve_command(c, a), ctx, args)


app = typer.Typer(
    cls=Group,
    add_completion=True,  # edgeq --install-completion
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn a trained TensorFlow/Keras model into a production INT8 TFLite model and prove it fits the edge.",
)
log = logging.getLogger("edgeq")
state: dict[str, Any] = {"verbose": False, "quiet": False}


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"edgeq {__version__}")
        raise typer.Exit()


VERBOSE = typer.Option(False, "-v", "--verbose", metavar="", help="Log details; show tracebacks and TensorFlow's own log.")
QUIET = typer.Option(False, "-q", "--quiet", metavar="", help="Print errors only.")


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = VERBOSE,
    quiet: bool = QUIET,
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, metavar="", help="Print the version."),
    project: Path | None = typer.Option(
        None,
        "--project",
        show_default="edgeq.toml or pyproject.toml's [tool.edgeq], nearest from here up",
        help="Defaults and gates for each command; flags override them.",
    ),
    no_project: bool = typer.Option(False, "--no-project", metavar="", help="Read no project file."),
) -> None:
    state.update(verbose=False, quiet=False, json=False, project=None)  # a new invocation (tests run several in one process)
    configure(verbose, quiet)
    if no_project:
        return
    from edgeq.cli.project import default_map, find, load

    try:
        found = find(Path.cwd()) if project is None else (project, load(project) or {})
        if found is not None:
            ctx.default_map = default_map(found[0], found[1], getattr(ctx.command, "commands", {}))
            state["project"] = str(found[0])
    except EdgeqError as exc:
        fail(exc)


def configure(verbose: bool, quiet: bool) -> None:
    """-v / -q, before or after the command name: the later call only adds to the earlier one."""
    verbose, quiet = verbose or state["verbose"], quiet or state["quiet"]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("edgeq: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    if verbose:  # TensorFlow's and absl's own Python logs, otherwise silent
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    state.update(verbose=verbose, quiet=quiet)


P = ParamSpec("P")


def choice(values) -> Any:
    """A choice listed in --help, completed by the shell, and refused in one line when not among them."""
    return click.Choice([str(v) for v in values])


def json_option(what: str) -> Any:
    """The one --json of every command: PATH (a .json file) or stdout."""
    return typer.Option(
        None,
        "--json",
        metavar="[PATH]",
        show_default=False,
        help=f"{what} as JSON: into PATH (ending .json), or on stdout instead of the summary when no PATH (or -) is given "
        "(-q keeps it).",
        rich_help_panel=Panel.FILES,
    )


def check_json(path: str | None, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Before any work: a --json PATH that exists needs --force, and is never one of the inputs (nor
    the manifest beside an input .tflite, which edgeq reads too)."""
    from edgeq.core.fileio import check_writable
    from edgeq.records.manifest_file import manifest_for

    if path is not None and path != STDOUT:
        manifests = tuple(manifest_for(p) for p in inputs if p.suffix.lower() == ".tflite")
        check_writable(Path(path), force, inputs + manifests)


def emit_json(path: str | None, text: str) -> None:
    """The JSON on stdout (`-`) or into its file, written whole (checked first with check_json)."""
    from edgeq.core.fileio import write_files_atomically

    if path == STDOUT:
        typer.echo(text)
    elif path is not None:
        write_files_atomically({Path(path): (text + "\n").encode()})


def command(
    target: typer.Typer | None = None, name: str | None = None, examples: tuple[str, ...] = ()
) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """`app.command()` that also takes -v/-q after the command name."""
    import functools
    import inspect

    def register(fn: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:  # and verbose=, quiet= (the -v/-q below)
            configure(bool(kwargs.pop("verbose", False)), bool(kwargs.pop("quiet", False)))
            if state.get("project"):
                from edgeq.cli.project import given

                used = given(click.get_current_context())
                if used:
                    log.info(f"from {terminal(state['project'])}: {', '.join(used)} (flags given here override it)")
            fn(*args, **kwargs)

        signature = inspect.signature(fn)
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation="bool")
            for n, d in (("verbose", VERBOSE), ("quiet", QUIET))
        ]
        # Typer reads the signature: the command's parameters and -v/-q
        wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**fn.__annotations__, "verbose": "bool", "quiet": "bool"}
        epilog = ("Examples:\n\n" + "\n\n".join(f"  {e}" for e in examples)) if examples else None
        return (target or app).command(name, epilog=epilog, cls=Command)(wrapper)

    return register


def say(text: str) -> None:
    """Human output on stdout, which -q silences."""
    if not state["quiet"]:
        typer.echo(text)


def fail(exc: EdgeqError) -> None:
    if state["verbose"]:
        import traceback

        traceback.print_exception(exc)
    typer.echo(f"edgeq: error: {terminal(exc)}", err=True)
    raise typer.Exit(exc.exit_code)


def floats(value: str | None, option: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"{option} takes comma-separated numbers, e.g. 127.5,127.5,127.5") from None


@contextlib.contextmanager
def progress_bar():
    """Progress on stderr. On an interactive terminal one live display: each running phase with its
    time, each loop with its count, rate, note (the search's best so far) and time left. In CI (CI
    set, no terminal) a plain line per phase of a second or more, with its time. Nothing with -q,
    with the JSON on stdout, or in a pipe outside CI."""
    from edgeq.core.progress import reporting

    live = sys.stderr.isatty() and not os.environ.get("CI")
    if state["quiet"] or state.get("json") or not (live or os.environ.get("CI")):
        with reporting(None):
            yield
    elif not live:
        with _phase_lines() as line, reporting(line):
            yield
    else:
        with _live_display() as update, reporting(update):
            yield


@contextlib.contextmanager
def _phase_lines():
    """CI's progress: `edgeq: calibrate took 3.2 s` as each phase of a second or more ends."""
    import time

    from edgeq.core.progress import PHASE

    started: dict[str, float] = {}
    with _stderr() as err:

        def line(label: str, done: int, total: int | None, note: str) -> None:
            kind, _, name = label.partition(":")
            if kind != PHASE:
                return
            if done == 0:
                started[name] = time.perf_counter()
            elif name in started and (seconds := time.perf_counter() - started.pop(name)) >= 1:
                print(f"edgeq: {name} took {seconds:.1f} s", file=err, flush=True)

        yield line


@contextlib.contextmanager
def _stderr() -> Iterator[TextIO]:
    """A copy of fd 2, which TensorFlow's captured native output does not reach; sys.stderr itself
    where it has no descriptor (a notebook, a test runner)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        yield sys.stderr
        return
    with os.fdopen(os.dup(fd), "w") as err:
        yield err


@contextlib.contextmanager
def _live_display():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from edgeq.core.progress import PHASE, SEARCH
    from edgeq.host.isolation import STEP

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    terminal_out = os.fdopen(os.dup(sys.stderr.fileno()), "w")  # the terminal, even while TensorFlow's fd 2 is captured
    with terminal_out, Progress(*columns, transient=True, console=Console(file=terminal_out)) as bar:
        tasks: dict[str, TaskID] = {}

        def update(label: str, done: int, total: int | None, note: str) -> None:
            kind, _, name = label.partition(":")
            if kind == STEP:  # step markers name crashes; they draw nothing
                return
            if kind == PHASE:  # a phase is a row while it runs
                if done == 0 and label not in tasks:
                    tasks[label] = bar.add_task(name, total=None, count="", note="")
                elif done and label in tasks:
                    bar.remove_task(tasks.pop(label))
                return
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total, count="", note="")
            task = next(t for t in bar.tasks if t.id == tasks[label])  # ids, not places: finished phases are removed
            rate = f"  {task.speed:.1f} samples/s" if task.speed and label != SEARCH else ""
            count = f"{done}/{total}" if total else str(done)
            bar.update(tasks[label], completed=done, total=total, count=count + rate, note=note)

        yield update


def key_values(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} takes key=value, got {value!r}")
        pairs[key] = val
    return pairs


class Panel:
    """The --help panels: the option groups of convert and validate (edgeq.records.recipe.Recipe,
    Preprocessing, the budget and gates, ...), so a flag is listed with the setting it belongs to."""

    FILES = "Files"
    RECIPE = "Recipe: what decides the bytes"
    PREPROCESSING = "Preprocessing: how samples become inputs"
    CALIBRATION = "Calibration and refinement"
    BUDGET = "Accuracy budget (the search)"
    GATES = "Gates (exit 1 when one fails)"
    OUTPUTS = "Outputs: what they are"
    LATENCY = "Latency and targets"
    RUNTIME = "Where and how it runs"
    DEVICES = "Devices and accelerators"
    METADATA = "Model metadata"
    TRUST = "Trust"


FORCE = typer.Option(False, "--force", metavar="", help="Overwrite existing output files.", rich_help_panel=Panel.FILES)


def fraction(text: str) -> float:
    """An agreement as printed or as a fraction: `98%` or `0.98` (a bare 98 is refused by the limits)."""
    value = text.strip()
    try:
        return float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give a fraction (0.98) or a percentage (98%)") from None


def points(text: str) -> float:
    """Top-1 points as printed or bare: `0.5pts`, `1pt` or `0.5`."""
    value = text.strip().removesuffix("pts").removesuffix("pt").strip()
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give top-1 points (0.5 or 0.5pts)") from None
