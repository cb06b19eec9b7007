"""Writing outputs: atomic, never over an input, never half a file."""

from __future__ import annotations

import os

import pytest

from edgeq.core.errors import OutputExistsError, UsageError
from edgeq.core.fileio import check_writable, write_files_atomically

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_atomic_write_refuses_an_existing_file_and_leaves_no_temporary(tmp_path):
    taken = tmp_path / "a.tflite"
    taken.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        write_files_atomically({tmp_path / "b.json": b"{}", taken: b"new"}, force=False)
    assert taken.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.tflite"]
    write_files_atomically({tmp_path / "b.json": b"{}", taken: b"new"}, force=True)
    assert taken.read_bytes() == b"new" and (tmp_path / "b.json").read_bytes() == b"{}"


def test_check_writable_protects_inputs_and_needs_the_folder(tmp_path):
    source = tmp_path / "m.keras"
    source.write_bytes(b"x")
    with pytest.raises(UsageError, match="overwrite an input"):
        check_writable(source, True, [source])
    with pytest.raises(UsageError, match="no such folder"):
        check_writable(tmp_path / "missing" / "m.tflite", False)
