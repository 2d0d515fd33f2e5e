"""Declared records (mobileforge.records): their JSON Schemas are checked in, and a record that
lost or renamed a key fails where it crosses over, naming the key."""

from __future__ import annotations

import copy

import pytest

from mobileforge import records, summary
from tests.conftest import REPO

SCHEMAS = REPO / "schemas" / "records"

SIDECAR = {
    "artifact": "results/m/pte/fp32.xnnpack.pte", "sha256": "0" * 64, "size_bytes": 10,
    "compressed_bytes": 9, "model": "m", "format": "pte", "variant": "fp32",
    "backend": "xnnpack", "engine": None, "arch": "tinycnn", "params": 5, "macs": 7,
    "input_shape": [1, 3, 8, 8], "sparsity": None, "fp32_layers": None, "int8_budget": None,
    "prune": None, "prune_budget": None, "optimization": "to_edge_transform_and_lower(xnnpack)",
    "torch_version": "2.13.0", "python_version": "3.11", "toolchain": None,
    "executorch_version": "1.5.1",
}  # fmt: skip


def test_the_checked_in_schemas_are_the_declared_shapes():
    written = {path.name: path.read_text() for path in SCHEMAS.glob("*.schema.json")}
    assert written == records.schema_texts(), (
        "a record's shape changed: run `python -m mobileforge.records schemas/records` and "
        "commit the schema diff"
    )


def test_a_record_of_its_shape_passes_and_a_renamed_key_is_named():
    assert records.check(records.ArtifactSidecar, SIDECAR, "x.json") is SIDECAR
    renamed = {("input_size" if key == "input_shape" else key): value
               for key, value in SIDECAR.items()}  # fmt: skip
    with pytest.raises(records.RecordError, match=r"x\.json: .*lacks \['input_shape'\].*"
                       r"undeclared \['input_size'\]"):  # fmt: skip
        records.check(records.ArtifactSidecar, renamed, "x.json")


def test_nested_records_are_held_to_their_shape_too():
    sidecar = copy.deepcopy(SIDECAR)
    sidecar["int8_budget"] = {"met": True, "reason": "within", "lost": 0.1}
    with pytest.raises(records.RecordError, match=r"key 'int8_budget'.*lacks \['loss'\]"):
        records.check(records.ArtifactSidecar, sidecar, "x.json")


def test_keys_of_one_format_are_optional_but_still_declared():
    ptl = {**{k: v for k, v in SIDECAR.items() if k != "executorch_version"}, "scripting": "trace"}
    records.check(records.ArtifactSidecar, ptl, "x.json")
    with pytest.raises(records.RecordError, match="undeclared"):
        records.check(records.ArtifactSidecar, {**SIDECAR, "scriptng": "trace"}, "x.json")


def test_summary_columns_are_the_declared_row_and_a_row_that_differs_fails():
    assert summary.COLUMNS == records.keys(records.SummaryRow)
    built = {column: None for column in summary.COLUMNS if column not in summary.DERIVED}
    assert summary._declared(dict(built)) == built
    renamed = {("latency_p50" if key == "latency_ms_p50" else key): value
               for key, value in built.items()}  # fmt: skip
    with pytest.raises(records.RecordError, match=r"missing \['latency_ms_p50'\], undeclared"):
        summary._declared(renamed)


def test_every_shape_has_a_schema_a_json_schema_validator_accepts():
    jsonschema = pytest.importorskip("jsonschema")
    for shape in records.SHAPES.values():
        jsonschema.Draft202012Validator.check_schema(records.json_schema(shape))
    jsonschema.validate(SIDECAR, records.json_schema(records.ArtifactSidecar))
