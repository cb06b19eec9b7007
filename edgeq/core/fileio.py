"""Writing outputs safely: never overwrite without being asked, never leave half a file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from edgeq.core.errors import DataError, EdgeqError, OutputExistsError, UsageError


def check_writable(path: Path, force: bool, protected: Sequence[Path] = ()) -> None:
    """Fail before any work is done if `path` cannot or may not be written."""
    resolved = path.resolve()
    for other in protected:
        if other.exists() and resolved == other.resolve():
            raise UsageError(f"{path}: the output would overwrite an input; choose another --output")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path} is a folder; --output must name a file")
    if not path.parent.exists():
        raise UsageError(f"{path.parent}: no such folder for the output; create it first")


def write_files_atomically(contents: dict[Path, bytes], force: bool = True) -> None:
    """Write every file to a temporary beside it, then rename all; on failure none is left.

    The renames run with SIGINT/SIGTERM held, so the files appear together (a model never beside
    an old manifest); without `force` an existing file is refused at that moment too, not only by
    the check before a long conversion.
    """
    temps: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in contents.items():
            try:
                fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                temps.append((temp, path))
                os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a written model is an ordinary file
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            except OSError as exc:
                raise no_room(exc, path, sum(map(len, contents.values()))) from None
        if not force:
            for _, path in temps:
                if path.exists():
                    raise OutputExistsError(f"{path} appeared while edgeq was working; pass --force to overwrite it")
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for temp, path in temps:
                os.replace(temp, path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    finally:
        for temp, _ in temps:
            if os.path.exists(temp):
                os.unlink(temp)


FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def no_room(exc: OSError, path: Path | str, needed: int | None = None) -> EdgeqError:
    """An OSError while writing `path` as one line for the user: a full disk or a file-size limit
    (ulimit -f) is theirs to fix (exit 2), as is a folder they may not write."""
    size = f" ({needed / 2**20:.1f} MiB to write)" if needed else ""
    if exc.errno in FULL:
        free = shutil.disk_usage(Path(path).parent).free if Path(path).parent.exists() else None
        room = f"; {free / 2**20:.1f} MiB free there" if free is not None else ""
        return UsageError(f"{path}: no room to write it{size}: {exc.strerror}{room}; free space or raise the file-size limit")
    return UsageError(f"{path}: cannot be written ({exc.strerror or exc}){size}")


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259): a NaN or an infinity is edgeq's bug, never written as `NaN`."""
    return json.dumps(data, indent=indent, sort_keys=False, allow_nan=False)


def json_bytes(data: Any) -> bytes:
    return (json_text(data) + "\n").encode()


def _no_figure(name: str) -> None:
    """NaN and Infinity are not JSON; earlier edgeq builds wrote them for a figure with no finite value,
    which it now writes as null (schema.to_json): read them as that."""


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON from a stranger: not JSON, nesting past Python's recursion limit, an integer of more
    digits than Python converts: one DataError line naming `where`; NaN and Infinity are null."""
    try:
        return json.loads(text, parse_constant=_no_figure)
    except RecursionError:
        raise DataError(f"{where}: nested too deeply to be an edgeq file") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError, so is an over-long integer
        raise DataError(f"{where}: not valid JSON ({' '.join(str(exc).split())[:200]})") from None


def read_json(path: Path, where: str | None = None) -> Any:
    """`parse_json` of a file; a file that cannot be read is one DataError line too."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_json(data, where or str(path))


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (sorted relative paths and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Arrays into a .npz by name (numpy's savez, whose keywords a type checker cannot match to names)."""
    import numpy as np

    named: dict[str, Any] = dict(arrays)
    np.savez(path, **named)
