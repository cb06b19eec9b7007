"""edgeq devices: list, check and set up device profiles."""

from __future__ import annotations

import json

import typer

from edgeq.cli.common import FORCE, STDOUT, Group, app, check_json, command, emit_json, fail, json_option, say, state
from edgeq.core.errors import EdgeqError, UsageError
from edgeq.core.escape import terminal

devices_app = typer.Typer(
    help="Device profiles (devices/*.toml): list them, check one, set up ARM64 emulation.",
    invoke_without_command=True,
    cls=Group,
)
app.add_typer(devices_app, name="devices")


@devices_app.callback()
def devices_list(
    ctx: typer.Context,
    as_json: str | None = json_option("The profiles (or with --aihub the phones)"),
    force: bool = FORCE,
    aihub: bool = typer.Option(
        False,
        "--aihub",
        metavar="",
        help="List the phones your Qualcomm AI Hub account reaches (use one with --device aihub:NAME).",
    ),
) -> None:
    """List the device profiles."""
    if ctx.invoked_subcommand is not None:
        return
    _check(as_json, force)
    from dataclasses import asdict

    from edgeq.core.fileio import json_text
    from edgeq.run.devices.profiles import list_profiles

    if aihub:
        from edgeq.run.devices.aihub import list_devices

        try:
            phones = list_devices()
        except EdgeqError as exc:
            fail(exc)
        if as_json is not None:
            _emit(as_json, json_text([asdict(p) for p in phones]))
            if as_json == STDOUT:
                return
        for phone in phones:
            say(
                terminal(
                    f"aihub:{phone.name:<40} Android {phone.os:<6} {phone.chipset:<34} "
                    f"{'TFLite' if phone.tflite else 'no TFLite'}"
                )
            )
        return
    profiles = list_profiles()
    if as_json is not None:
        _emit(as_json, json_text([asdict(p) for p in profiles]))
        if as_json == STDOUT:
            return
    say("profiles (nothing was contacted; `edgeq devices check NAME` tries one):")
    for p in profiles:
        say(terminal(f"{p.name:<28} {p.transport:<6} {p.address:<28} {p.description}"))
        say(f"{'':<28} {_status(p)}; {terminal(p.path)}")


def _check(path: str | None, force: bool) -> None:
    try:
        check_json(path, force)
    except EdgeqError as exc:
        fail(exc)


def _emit(path: str, text: str) -> None:
    emit_json(path, text.rstrip("\n"))


def _status(profile) -> str:
    """What is known of a profile without contacting it."""
    if profile.transport == "local":
        return "this machine"
    if profile.emulated:
        from edgeq.run.devices.emulation import cache_dir, qemu_binary

        return "emulation set up" if qemu_binary(cache_dir()).exists() else f"not set up: edgeq devices setup {profile.name}"
    return "not checked"


@command(
    devices_app,
    "check",
    examples=(
        "edgeq devices check raspberry-pi-5",
        "edgeq devices check ./devices/my-phone.toml",
    ),
)
def devices_check(
    name: str = typer.Argument(..., show_default=False, metavar="NAME", help="A profile name or a .toml path."),
    as_json: str | None = json_option("What the device reported"),
    force: bool = FORCE,
) -> None:
    """Connect to a device and report OS, CPU architecture, ARM dot-product, runtime and delegates."""
    from edgeq.core.schema import to_json
    from edgeq.run.devices.device_script import check
    from edgeq.run.devices.profiles import load_profile

    _check(as_json, force)
    try:
        info = check(load_profile(name))
    except EdgeqError as exc:
        fail(exc)
    if as_json is not None:
        _emit(as_json, json.dumps({**to_json(info.probe), **{k: v for k, v in to_json(info).items() if k != "probe"}}, indent=2))
        if as_json == STDOUT:
            return
    probe = info.probe
    delegates = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in probe.delegates.items()) or "none"
    for label, value in (
        ("device", f"{info.name} ({info.transport}, {info.address})"),
        ("os", probe.os),
        ("cpu", probe.machine),
        ("dot-product", "yes (asimddp)" if probe.asimddp else "no"),
        ("python", probe.python),
        ("runtime", probe.runtime or probe.runtime_error),
        ("delegates", delegates),
    ):
        say(terminal(f"{label:<12}{value}"))


@command(devices_app, "setup", examples=("edgeq devices setup emulated-raspberry-pi-5",))
def devices_setup(
    name: str = typer.Argument("emulated-raspberry-pi-5", metavar="NAME", help="An emulated profile (transport qemu)."),
) -> None:
    """Build the ARM64 emulation (QEMU user mode, arm64 sysroot, aarch64 wheels) once into the cache."""
    from edgeq.run.devices.emulation import setup
    from edgeq.run.devices.profiles import load_profile

    try:
        profile = load_profile(name)
        if not profile.emulated:
            raise UsageError(f"{profile.name} is a {profile.transport} device; setup builds emulated (qemu) ones")

        def show(line: str) -> None:
            if not state["quiet"]:
                typer.echo(line, err=True)

        setup(show)
    except EdgeqError as exc:
        fail(exc)
