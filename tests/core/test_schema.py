"""The typed-record codec: wrong types named by key, round trips, schema versions and upgrades."""

from __future__ import annotations

import pytest

from edgeq.core.errors import DataError
from edgeq.core.schema import from_json, to_json
from edgeq.validation.results import Accuracy, DeviceResult, Latency, Percentiles, ValidationResult

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_from_json_names_the_key_of_a_wrong_type():
    with pytest.raises(DataError, match=r"r\.latency\.int8_ms\.p50: expected an integer or a number, got str"):
        from_json(ValidationResult, {"model": "m", "reference": "r", "passed": True, "latency": {"int8_ms": {"p50": "1"}}}, "r")
    with pytest.raises(DataError, match=r"r\.devices\[0\]: missing key 'transport'"):
        from_json(ValidationResult, {"model": "m", "reference": "r", "passed": True, "devices": [{"name": "pi"}]}, "r")
    with pytest.raises(DataError, match="expected true/false, got int"):
        from_json(ValidationResult, {"model": "m", "reference": "r", "passed": 1}, "r")


def test_records_round_trip_and_optional_fields_take_defaults():
    record = ValidationResult(
        "m",
        "r",
        True,
        accuracy=Accuracy(agreement=0.5),
        latency=Latency(int8_ms=Percentiles(p50=1.0, samples=(1.0, 2.0))),
        devices=(DeviceResult("pi", "ssh"),),
        warnings=("w",),
    )
    data = to_json(record)
    assert data["latency"]["int8_ms"]["samples"] == [1.0, 2.0] and data["warnings"] == ["w"]
    assert from_json(ValidationResult, data, "r") == record
    assert from_json(ValidationResult, {"model": "m", "reference": "r", "passed": False}, "r").accuracy == Accuracy()


def test_a_newer_major_schema_is_refused():
    with pytest.raises(DataError, match="newer edgeq"):
        ValidationResult.from_json({"model": "m", "reference": "r", "passed": True, "schema_version": "2.0"})


def test_a_1_1_results_file_reads_with_gate_status_and_device_capabilities():
    old = {
        "schema_version": "1.1",
        "model": "m",
        "reference": "r",
        "passed": True,
        "gates": [{"name": "min_sqnr", "description": "d", "limit": 1, "value": 3, "passed": True}],
        "devices": [{"name": "phone", "transport": "adb", "runtime": "benchmark_model", "gates": []}],
    }
    result = ValidationResult.from_json(old)
    assert result.gates[0].status == "passed" and not result.devices[0].capabilities.scores_outputs
