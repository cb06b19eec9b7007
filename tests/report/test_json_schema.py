"""The published JSON Schemas: generated from the records (the committed files are current), strict
enough to catch a wrong type, and met by files of older versions once edgeq has read them."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import written_file_errors
from helpers import FIXTURES, ROOT

from edgeq.core.schema import SCHEMA_VERSION
from edgeq.records.manifest import Manifest
from edgeq.report.json_schema import FOLDER, schemas, text
from edgeq.validation.results import ValidationResult


def test_the_committed_schemas_are_the_records_own():
    for name, schema in schemas().items():
        assert (FOLDER / name).read_text() == text(schema), f"{name} is stale: python -m edgeq.report.json_schema"


@pytest.mark.parametrize(
    "path, kind",
    [(p, "manifest") for p in sorted((FIXTURES / "manifests").rglob("*.edgeq.json"))]
    + [(FIXTURES / "results" / "digits_validation.json", "results")],
    ids=lambda x: getattr(x, "name", x),
)
def test_older_files_once_read_match_the_schemas(path, kind):
    record = (Manifest if kind == "manifest" else ValidationResult).from_json(json.loads(path.read_text()), path.name)
    schema = json.loads((FOLDER / f"{kind}.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(record.to_json())), schema)


def test_a_wrong_type_is_caught(tmp_path):
    data = ValidationResult.from_json(json.loads((FIXTURES / "results" / "digits_validation.json").read_text()), "r").to_json()
    data["accuracy"]["samples"], data["schema_version"] = "359", SCHEMA_VERSION
    (tmp_path / "r.json").write_text(json.dumps(data))
    errors = written_file_errors(tmp_path)
    assert len(errors) == 1 and "accuracy/samples" in errors[0]
    (tmp_path / "r.json").unlink()  # the check after this test looks at tmp_path too


def test_the_schemas_ship_with_the_package():
    assert "schemas/*.json" in (ROOT / "pyproject.toml").read_text()
