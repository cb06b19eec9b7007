"""Devices: profiles in devices/*.toml, and the transports that reach them (local, ssh, adb).

A transport runs argv lists, never shell strings built from user text: on a remote shell every
argument is quoted with shlex.quote. SSH uses the system client in batch mode (keys only, no
password prompt) with host-key checking on. Files travel over the same connection (`cat`), so
the remote needs only a POSIX shell and the device's Python.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from edgeq.errors import EdgeqError, UsageError

TRANSPORTS = ("local", "ssh", "adb", "qemu")
FORBIDDEN_KEYS = ("password", "passphrase", "passwd", "secret", "token")
RUNNER = Path(__file__).with_name("on_device.py")


log = logging.getLogger(__name__)

class DeviceError(EdgeqError):
    """A device could not be reached or could not run the model."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    transport: str = "local"
    host: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str | None = None  # default: the user's ~/.ssh/known_hosts
    serial: str | None = None  # adb
    python: str | None = None  # the device's Python; adb: none means latency only (benchmark_model)
    runtime: str | None = None  # ai_edge_litert | tflite_runtime; default: whichever the device has
    benchmark_binary: str | None = None  # adb: path of TFLite's benchmark_model on the device
    delegates: tuple[str, ...] = ("xnnpack",)
    threads: int = 1
    workdir: str = "/tmp"
    timeout: float = 30.0  # seconds to connect / answer
    cpu: str | None = None  # qemu: the emulated CPU model, e.g. cortex-a76
    path: str | None = None  # where the profile was read from

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise UsageError(f"device {self.name}: transport {self.transport!r}; use one of {', '.join(TRANSPORTS)}")
        if self.transport == "ssh" and not self.host:
            raise UsageError(f"device {self.name}: an ssh profile needs host")
        if self.transport == "qemu" and not self.cpu:
            raise UsageError(f"device {self.name}: a qemu profile needs cpu (e.g. cortex-a76)")
        if self.runtime not in (None, "ai_edge_litert", "tflite_runtime"):
            raise UsageError(f"device {self.name}: runtime {self.runtime!r}; use ai_edge_litert or tflite_runtime")
        if self.timeout <= 0 or self.threads < 1:
            raise UsageError(f"device {self.name}: timeout and threads must be positive")

    @property
    def address(self) -> str:
        if self.transport == "ssh":
            return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"
        if self.transport == "qemu":
            return f"qemu-aarch64 -cpu {self.cpu}"
        return f"adb {self.serial or '(only device)'}" if self.transport == "adb" else "this machine"

    @property
    def emulated(self) -> bool:
        return self.transport == "qemu"


def shipped_dir() -> Path:
    """The profiles shipped with edgeq, as package data (also in a wheel install)."""
    from importlib.resources import files

    return Path(str(files("edgeq.run") / "profiles"))


def profile_dirs() -> list[Path]:
    """Where profiles are looked up: $EDGEQ_DEVICES, ./devices, then the ones shipped with edgeq."""
    dirs = [Path(p) for p in os.environ.get("EDGEQ_DEVICES", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "devices", shipped_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def load_profile(name_or_path: str) -> Profile:
    """A profile by path, or by name: its `name` key or its file name, first found wins."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise UsageError(f"{path}: no such device profile")
        return _read(path)
    for profile in list_profiles():
        if name_or_path in (profile.name, Path(profile.path or "").stem):
            return profile
    known = ", ".join(p.name for p in list_profiles()) or "none"
    raise UsageError(f"no device profile {name_or_path!r}; known: {known} (edgeq devices lists them)")


def _read(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot be read ({exc.strerror})") from None
    return _profile(data, path)


FIELD_TYPES = {"str": (str,), "str | None": (str, type(None)), "int": (int,), "float": (int, float),
               "tuple[str, ...]": (list, tuple)}


def _profile(data: dict[str, Any], path: Path) -> Profile:
    secret = [k for k in data if any(word in k.lower() for word in FORBIDDEN_KEYS)]
    if secret:
        raise UsageError(f"{path}: a profile never holds a password ({secret[0]}); use key authentication (identity_file)")
    types = {f.name: f.type for f in fields(Profile) if f.name != "path"}
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(types))}")
    for key, value in data.items():
        allowed = FIELD_TYPES[str(types[key])]
        if isinstance(value, bool) or not isinstance(value, allowed) or (
                isinstance(value, (list, tuple)) and not all(isinstance(v, str) for v in value)):
            want = " or ".join("a list of strings" if t in (list, tuple) else "none" if t is type(None) else f"a {t.__name__}"
                               for t in allowed[:1] + allowed[1:] if t is not tuple)
            raise UsageError(f"{path}: key '{key}' must be {want}, not {type(value).__name__} {value!r}")
    data = dict(data)
    data.setdefault("name", path.stem)
    if "delegates" in data:
        data["delegates"] = tuple(data["delegates"])
    return Profile(**data, path=str(path))


def list_profiles() -> list[Profile]:
    """Every readable profile, first found by name wins; a user profile that shadows a shipped
    one is a warning, since its `python` (or host) is what then runs."""
    seen: dict[str, Profile] = {}
    shipped = shipped_dir().resolve()
    for d in profile_dirs():
        for path in sorted(d.glob("*.toml")):
            try:
                profile = _read(path)
            except UsageError as exc:
                log.warning("skipping device profile %s", exc)
                continue
            if profile.name in seen:
                if d.resolve() == shipped:
                    log.warning("device profile %s (%s) shadows the one shipped with edgeq (%s)",
                                profile.name, seen[profile.name].path, path)
                continue
            seen[profile.name] = profile
    return list(seen.values())


# -- transports ---------------------------------------------------------------------------------

class Transport:
    env: dict[str, str] | None = None  # the environment of the commands; None: this process's

    def __init__(self, profile: Profile):
        self.profile = profile

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None, connecting: bool = False) -> bytes:
        """Run `argv` on the device; its stdout. A failure raises DeviceError with one line."""
        command = self.command(argv)
        try:
            proc = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired:
            if connecting:
                raise DeviceError(f"{self.profile.name}: cannot connect to {self.profile.address}: no answer within "
                                  f"{timeout:g} s; is the device on and reachable?") from None
            raise DeviceError(f"{self.profile.name}: {self.profile.address} did not finish within {timeout:g} s") from None
        except FileNotFoundError:
            raise DeviceError(f"{self.profile.name}: {command[0]} is not installed on this machine") from None
        if proc.returncode != 0:
            raise DeviceError(f"{self.profile.name}: {self.explain(proc.returncode, proc.stderr.decode(errors='replace'))}")
        return proc.stdout

    def command(self, argv: list[str]) -> list[str]:
        return argv

    def explain(self, code: int, stderr: str) -> str:
        lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
        runner = [l for l in lines if l.startswith("edgeq-runner: error:")]
        if runner:
            return runner[-1].removeprefix("edgeq-runner: error: ")
        return f"failed (exit {code}): {lines[-1] if lines else 'no message'}"

    def push(self, local: Path, remote: str) -> None:
        self.run(["sh", "-c", 'cat > "$1"', "sh", remote], self.profile.timeout * 10, stdin=local.read_bytes())

    def pull(self, remote: str) -> bytes:
        return self.run(["cat", remote], self.profile.timeout * 10)


class LocalTransport(Transport):
    pass


class QemuTransport(LocalTransport):
    """This machine's files, an emulated ARM64 CPU for the device Python (see edgeq.run.emulation)."""

    def __init__(self, profile: Profile):
        from edgeq.run.emulation import environment

        super().__init__(profile)
        self.env = environment()


class SSHTransport(Transport):
    def command(self, argv: list[str]) -> list[str]:
        p = self.profile
        options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={int(p.timeout)}",
                   "-o", "ServerAliveInterval=5", "-o", "LogLevel=ERROR", "-p", str(p.port)]
        if p.identity_file:
            options += ["-i", os.path.expanduser(p.identity_file), "-o", "IdentitiesOnly=yes"]
        if p.known_hosts:
            options += ["-o", f"UserKnownHostsFile={os.path.expanduser(p.known_hosts)}"]
        target = f"{p.user}@{p.host}" if p.user else p.host
        return ["ssh", *options, "--", target, " ".join(shlex.quote(a) for a in argv)]

    def explain(self, code: int, stderr: str) -> str:
        if code != 255:  # the remote command failed, not ssh
            return super().explain(code, stderr)
        lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
        last = lines[-1] if lines else "ssh failed"
        hint = {
            "Permission denied": "the key was rejected; check identity_file and the device's authorized_keys",
            "Host key verification failed": "the host key is unknown or changed; add it to known_hosts (ssh-keyscan) after checking it",
            "Connection refused": "nothing listens there; is sshd running and the port right?",
            "timed out": "no answer; is the device on and reachable?",
            "Could not resolve": "unknown host name",
        }
        advice = next((h for key, h in hint.items() if key in last), "check the profile's host, port, user and key")
        return f"cannot connect to {self.profile.address}: {last}; {advice}"


class AdbTransport(Transport):
    def command(self, argv: list[str]) -> list[str]:
        serial = ["-s", self.profile.serial] if self.profile.serial else []
        return ["adb", *serial, "shell", " ".join(shlex.quote(a) for a in argv)]

    def pull(self, remote: str) -> bytes:
        """`exec-out`, not `shell`: no pty, so binary files come back unaltered (no CRLF)."""
        serial = ["-s", self.profile.serial] if self.profile.serial else []
        command = ["adb", *serial, "exec-out", "cat " + shlex.quote(remote)]
        try:
            proc = subprocess.run(command, capture_output=True, timeout=self.profile.timeout * 10)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            raise DeviceError(f"{self.profile.name}: adb exec-out failed ({type(exc).__name__})") from None
        if proc.returncode != 0:
            raise DeviceError(f"{self.profile.name}: {self.explain(proc.returncode, proc.stderr.decode(errors='replace'))}")
        return proc.stdout

    def push(self, local: Path, remote: str) -> None:
        serial = ["-s", self.profile.serial] if self.profile.serial else []
        try:
            proc = subprocess.run(["adb", *serial, "push", str(local), remote], capture_output=True, timeout=self.profile.timeout * 10)
        except FileNotFoundError:
            raise DeviceError(f"{self.profile.name}: adb is not installed on this machine (Android platform-tools)") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.profile.name}: adb push did not finish within {self.profile.timeout * 10:g} s") from None
        if proc.returncode != 0:
            raise DeviceError(f"{self.profile.name}: adb push failed: {proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}")


def transport(profile: Profile) -> Transport:
    kinds = {"local": LocalTransport, "ssh": SSHTransport, "adb": AdbTransport, "qemu": QemuTransport}
    return kinds[profile.transport](profile)


# -- a session: a scratch folder on the device, always removed ----------------------------------

class Session:
    def __init__(self, profile: Profile, through=None):
        """`through`: the transport to use (default: the profile's own)."""
        self.profile = profile
        self.transport = through or transport(profile)
        self.workdir = f"{profile.workdir.rstrip('/')}/edgeq-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> Session:
        self.transport.run(["mkdir", "-m", "700", "-p", self.workdir], self.profile.timeout, connecting=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.transport.run(["rm", "-rf", self.workdir], self.profile.timeout)
        except DeviceError:
            pass  # the device went away; nothing else to clean

    def path(self, name: str) -> str:
        return f"{self.workdir}/{name}"

    def python(self) -> list[str]:
        if self.profile.emulated:
            from edgeq.run.emulation import python_command

            return python_command(self.profile.cpu)
        python = self.profile.python or (sys.executable if self.profile.transport == "local" else "python3")
        return shlex.split(python)

    def runner(self, *args: str, timeout: float | None = None) -> bytes:
        runtime = ["--runtime", self.profile.runtime] if self.profile.runtime else []
        argv = [*self.python(), self.path("on_device.py"), args[0], *runtime, *args[1:]]
        return self.transport.run(argv, timeout or max(self.profile.timeout, 600))


def check(profile: Profile) -> dict[str, Any]:
    """Connect and report OS, CPU architecture, dot-product support, runtime and delegates."""
    with Session(profile) as session:
        session.transport.push(RUNNER, session.path("on_device.py"))
        info = json.loads(session.runner("probe", timeout=profile.timeout * 4))
    info["name"], info["transport"], info["address"] = profile.name, profile.transport, profile.address
    info["emulated"] = profile.emulated
    return info


def run_model(profile: Profile, model: Path, feeds: list[Any], warmup: int, runs: int,
              delegate: str | None = None) -> tuple[list[Any], dict[str, Any]]:
    """Run `model` on the device over stacked inputs (model dtypes); raw outputs and timings."""
    import io
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="edgeq-device-") as tmp, Session(profile) as session:
        inputs = Path(tmp) / "inputs.npz"
        np.savez(inputs, **{f"in{i}": f for i, f in enumerate(feeds)})
        for local, name in ((RUNNER, "on_device.py"), (model, "model.tflite"), (inputs, "inputs.npz")):
            session.transport.push(local, session.path(name))
        session.runner("run", "--model", session.path("model.tflite"), "--inputs", session.path("inputs.npz"),
                       "--outputs", session.path("outputs.npz"), "--timings", session.path("timings.json"),
                       "--delegate", delegate or profile.delegates[0], "--threads", str(profile.threads),
                       "--warmup", str(warmup), "--runs", str(runs))
        outputs = np.load(io.BytesIO(session.transport.pull(session.path("outputs.npz"))))
        timings = json.loads(session.transport.pull(session.path("timings.json")))
    return [outputs[f"out{k}"] for k in range(len(outputs.files))], timings


_RUN_LINE = re.compile(r"^count=(\d+) first=(\S+) curr=\S+ min=(\S+) max=(\S+) avg=(\S+) std=(\S+)"
                       r"(?: p5=(\S+) median=(\S+) p95=(\S+))?")
_SUMMARY = re.compile(r"Inference timings in us: Init: (\S+), First inference: (\S+), Warmup \(avg\): (\S+), "
                      r"Inference \(avg\): (\S+)")
_PREFIX = re.compile(r"^(?:[VDIWEF] tflite\s*:\s*|INFO:\s*)")


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """The measured run of TFLite's benchmark_model, in milliseconds. The last `count=... first=`
    line before the summary is the measured run (the ones before it are warm-up); the
    op-profiling "Timings (microseconds): count=" lines are not runs."""
    runs, summary = [], None
    for raw in text.splitlines():
        line = _PREFIX.sub("", raw.strip())
        if summary is None and (m := _RUN_LINE.match(line)):
            runs.append(m)
        elif m := _SUMMARY.search(line):
            summary = m
    if not runs or summary is None:
        raise DeviceError("benchmark_model printed no timing summary; run it by hand to see why")
    m = runs[-1]
    us = lambda s: round(float(s) / 1000.0, 4) if s is not None else None  # noqa: E731 - microseconds -> ms
    return {"runs": int(m.group(1)), "mean": us(m.group(5)), "std": us(m.group(6)), "min": us(m.group(3)),
            "max": us(m.group(4)), "p50": us(m.group(8)), "p5": us(m.group(7)), "p95": us(m.group(9)),
            "init_ms": us(summary.group(1)), "first_ms": us(summary.group(2)), "inference_avg_ms": us(summary.group(4))}


def benchmark_over_adb(profile: Profile, model: Path, warmup: int, runs: int, through=None) -> dict[str, Any]:
    """Latency from the device's benchmark_model (no Python on the device: no outputs)."""
    if not profile.benchmark_binary:
        raise UsageError(f"device {profile.name}: set benchmark_binary (the path of benchmark_model on the device)")
    flags = {"xnnpack": ["--use_xnnpack=true"], "nnapi": ["--use_nnapi=true"], "gpu": ["--use_gpu=true"],
             "none": ["--use_xnnpack=false"]}
    delegate = profile.delegates[0]
    with Session(profile, through) as session:
        session.transport.push(model, session.path("model.tflite"))
        out = session.transport.run([profile.benchmark_binary, f"--graph={session.path('model.tflite')}",
                                     f"--num_threads={profile.threads}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
                                     *flags.get(delegate, [])], max(profile.timeout, 600))
    return {**parse_benchmark_model(out.decode(errors="replace")), "delegate": delegate, "threads": profile.threads}
