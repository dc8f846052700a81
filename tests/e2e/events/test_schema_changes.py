"""What a change to the event schema may be: each refused change names its field, and an added
field flows, from one edit of events/schema.py (plus its migration line), through the validator,
the transform's line, the Arrow table, the Glue columns and the ClickHouse migrations."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bxb_runtime.events.schema import FIELDS, RELEASED, Field, Kind, Origin, SchemaChangeError, check_history
from bxb_stream.clickhouse.ddl import SchemaMigrationError, migrations
from bxb_stream.clickhouse.settings import ClickHouseSettings

ADDED = Field("region", Kind.STRING, "Where it happened.", nullable=True, max_length=64, added_in=2)


def replaced(field: str, **changes) -> tuple[Field, ...]:
    return tuple(dataclasses.replace(f, **changes) if f.name == field else f for f in FIELDS)


def test_the_released_schema_passes_and_adding_an_optional_field_is_allowed():
    check_history(FIELDS)
    check_history((*FIELDS, ADDED))
    check_history((*FIELDS, dataclasses.replace(ADDED, removed_in=3)))


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ((*FIELDS, dataclasses.replace(ADDED, nullable=False)), "region", "optional and nullable"),
        ((*FIELDS, dataclasses.replace(ADDED, required=True)), "region", "optional and nullable"),
        ((*FIELDS, dataclasses.replace(ADDED, origin=Origin.PIPELINE)), "region", "producer field"),
        ((*FIELDS, dataclasses.replace(ADDED, kind=Kind.JSON)), "region", "cannot be added"),
        ((*FIELDS[:3], ADDED, *FIELDS[3:]), "timestamp", "add fields at the end"),
        ((*FIELDS, ADDED, ADDED), "region", "declared twice"),
        (replaced("value", kind=Kind.DECIMAL), "value", "type changed from FLOAT to DECIMAL"),
        (replaced("value", nullable=False), "value", "nullable changed"),
        (tuple(f for f in FIELDS if f.name != "value"), "value", "set removed_in, never delete it"),
        (replaced("value", name="amount"), "value", "set removed_in, never delete it"),
        (replaced("code", removed_in=2), "code", "only an optional, nullable producer field can be removed"),
        (replaced("arrived_at", removed_in=2), "arrived_at", "only an optional, nullable producer field"),
        ((*FIELDS, dataclasses.replace(ADDED, removed_in=2)), "region", "must come after added_in"),
        ((FIELDS[1], FIELDS[0], *FIELDS[2:]), "transaction_id", "order of the fields released in version 1"),
    ],
    ids=[
        "add-non-null",
        "add-required",
        "add-pipeline",
        "add-json",
        "add-in-the-middle",
        "twice",
        "type-change",
        "nullability",
        "delete",
        "rename",
        "remove-required",
        "remove-pipeline",
        "remove-before-added",
        "reorder",
    ],
)
def test_unsupported_changes_are_refused_naming_the_field(fields, field, words):
    with pytest.raises(SchemaChangeError) as err:
        check_history(fields, RELEASED)
    assert err.value.field == field
    assert words in str(err.value) and repr(field) in str(err.value)


def test_a_schema_version_without_its_migration_is_refused_naming_the_field():
    s = ClickHouseSettings(bucket_url="https://bxb-events.s3.eu-west-1.amazonaws.com", named_collection="nc")
    with pytest.raises(SchemaMigrationError, match=r"field 'region': schema version 2 has no ClickHouse migration"):
        migrations(s, (*FIELDS, ADDED))
    with pytest.raises(SchemaMigrationError, match="migration 3 is taken"):
        migrations(s, (*FIELDS, ADDED), ((2, 3),))


# The one edit a developer makes: the field at the end of FIELDS, and its migration line.
_FIELD_LINE = '    Field("region", Kind.STRING, "Where it happened.", nullable=True, max_length=64, added_in=2),\n'
_PROBE = r"""
import json, msgspec
from bxb_runtime.config import EventRules
from bxb_runtime.events import lines, schema, validate
from bxb_stream import event_table as table
from bxb_runtime.events.errors import EventError
from bxb_stream.clickhouse.ddl import migrations
from bxb_stream.clickhouse.settings import ClickHouseSettings

rules = EventRules(organization_id="org_1")
base = {"transaction_id": "t1", "external_customer_id": "c1", "code": "api"}
at = {"arrival_ms": 1767225600000, "ingested_ms": 1767225600000}
fast = validate.normalize_bytes(json.dumps({**base, "region": "eu-west-1"}).encode(), rules, **at)
slow = validate.normalize({**base, "region": "eu-west-1"}, rules, **at)
old = validate.normalize_bytes(json.dumps(base).encode(), rules, **at)
try:
    validate.normalize_bytes(json.dumps({**base, "region": "x" * 65}).encode(), rules, **at)
    too_long = None
except EventError as exc:
    too_long = exc.code
hooked = validate.from_dict(validate.to_dict(fast), fast, rules)
line_new, line_old = lines.to_line(fast), lines.to_line(old)
arrow = table.read_table([line_new, line_old])
s = ClickHouseSettings(bucket_url="https://bxb-events.s3.eu-west-1.amazonaws.com", named_collection="nc")
print(json.dumps({
    "fast": fast.region, "slow": slow.region, "old": old.region, "hooked": hooked.region, "too_long": too_long,
    "line_old": line_old.decode(), "arrow": arrow.column("region").to_pylist() if arrow is not None else None,
    "arrow_schema": str(schema.arrow_schema().field("region").type),
    "glue": schema.glue_columns()[-1], "version": schema.SCHEMA_VERSION,
    "migrations": [m.version for m in migrations(s)],
}))
"""


def _edited_package(tmp_path: Path, field_line: str, steps: str) -> Path:
    """A copy of the packages with ``field_line`` appended to FIELDS and ``steps`` as SCHEMA_MIGRATIONS."""
    root = Path(__file__).resolve().parents[3]
    for package in ("bxb_runtime", "bxb_stream"):
        shutil.copytree(root / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    schema_py = tmp_path / "bxb_runtime" / "events" / "schema.py"
    text = schema_py.read_text()
    anchor = "        origin=Origin.PIPELINE,\n    ),\n)\n"
    assert text.count(anchor) == 1
    schema_py.write_text(text.replace(anchor, "        origin=Origin.PIPELINE,\n    ),\n" + field_line + ")\n"))
    ddl_py = tmp_path / "bxb_stream" / "clickhouse" / "ddl.py"
    default = "SCHEMA_MIGRATIONS: tuple[tuple[int, int], ...] = ()"
    assert default in ddl_py.read_text()
    ddl_py.write_text(ddl_py.read_text().replace(default, f"SCHEMA_MIGRATIONS: tuple[tuple[int, int], ...] = {steps}"))
    return tmp_path


def _probe(root: Path, script: str) -> dict:
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_one_edit_of_the_schema_flows_to_the_transform_the_table_glue_and_clickhouse(tmp_path: Path):
    out = _probe(_edited_package(tmp_path, _FIELD_LINE, "((2, 4),)"), _PROBE)
    assert (out["fast"], out["slow"], out["hooked"], out["old"]) == ("eu-west-1", "eu-west-1", "eu-west-1", None)
    assert out["too_long"] == "field_too_long:region"
    assert "region" not in out["line_old"]  # null fields stay out of the line
    assert out["arrow"] == ["eu-west-1", None] and out["arrow_schema"] == "string"
    assert out["glue"] == {"name": "region", "type": "string", "comment": "Where it happened."}
    assert out["version"] == 2 and out["migrations"] == [1, 2, 3, 4]


_REMOVED_PROBE = r"""
import json
from bxb_runtime.config import EventRules
from bxb_runtime.events import schema, validate
from bxb_runtime.events.errors import EventError

rules = EventRules(organization_id="org_1")
at = {"arrival_ms": 1767225600000, "ingested_ms": 1767225600000}
base = {"transaction_id": "t1", "external_customer_id": "c1", "code": "api"}
codes = []
for attempt in (
    lambda: validate.normalize_bytes(json.dumps({**base, "region": "eu"}).encode(), rules, **at),
    lambda: validate.normalize({**base, "region": "eu"}, rules, **at),
    lambda: validate.from_dict({**validate.to_dict(kept), "region": "eu"}, kept, rules),
):
    kept = validate.normalize_bytes(json.dumps(base).encode(), rules, **at)
    try:
        attempt()
        codes.append(None)
    except EventError as exc:
        codes.append(exc.code)
print(json.dumps({"codes": codes, "kept": kept.region, "arrow": "region" in schema.arrow_schema().names,
                  "glue": schema.glue_columns()[-1]["name"]}))
"""


def test_a_removed_field_is_refused_from_producers_and_hooks_but_its_column_stays(tmp_path: Path):
    line = _FIELD_LINE.replace("added_in=2)", "added_in=2, removed_in=3)")
    out = _probe(_edited_package(tmp_path, line, "((2, 4), (3, 5))"), _REMOVED_PROBE)
    assert out["codes"] == ["removed_field:region"] * 3
    assert out["kept"] is None and out["arrow"] and out["glue"] == "region"
