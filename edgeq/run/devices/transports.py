"""Transports: how commands reach a device (this machine, ssh, adb, qemu), and a session's
scratch folder there.

A transport runs argv lists, never shell strings built from user text: on a remote shell every
argument is quoted with shlex.quote. SSH uses the system client in batch mode (keys only, no
password prompt) with host-key checking on. Files travel over the same connection (`cat`), so
the remote needs only a POSIX shell.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

from edgeq.core.errors import EdgeqError
from edgeq.run.devices.profiles import Profile


class DeviceError(EdgeqError):
    """A device could not be reached or could not run the model."""


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
                raise DeviceError(
                    f"{self.profile.name}: cannot connect to {self.profile.address}: no answer within "
                    f"{timeout:g} s; is the device on and reachable?"
                ) from None
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
    """This machine's files, an emulated ARM64 CPU for the device Python (see edgeq.run.devices.emulation):
    the aarch64 wheels on its path, the user's site-packages (x86) off it."""

    def __init__(self, profile: Profile):
        from edgeq.run.devices.emulation import site_dir

        super().__init__(profile)
        self.env = {**os.environ, "PYTHONPATH": str(site_dir()), "PYTHONNOUSERSITE": "1"}


class SSHTransport(Transport):
    def command(self, argv: list[str]) -> list[str]:
        p = self.profile
        options = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={int(p.timeout)}",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "LogLevel=ERROR",
            "-p",
            str(p.port),
        ]
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
            "Host key verification failed": "the host key is unknown or changed; add it to known_hosts (ssh-keyscan) after "
            "checking it",
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
            proc = subprocess.run(
                ["adb", *serial, "push", str(local), remote], capture_output=True, timeout=self.profile.timeout * 10
            )
        except FileNotFoundError:
            raise DeviceError(f"{self.profile.name}: adb is not installed on this machine (Android platform-tools)") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.profile.name}: adb push did not finish within {self.profile.timeout * 10:g} s") from None
        if proc.returncode != 0:
            raise DeviceError(
                f"{self.profile.name}: adb push failed: {proc.stderr.decode(errors='replace').strip().splitlines()[-1:]}"
            )


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
        """The device's Python command (under emulation, the emulator running the aarch64 one)."""
        if self.profile.emulated:
            from edgeq.run.devices.emulation import python_command

            return python_command(self.profile.cpu)
        python = self.profile.python or (sys.executable if self.profile.transport == "local" else "python3")
        return shlex.split(python)
