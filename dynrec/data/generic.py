"""A user's own catalogue and events, as Parquet or CSV in the canonical schema.

Parquet columns are cast to the canonical types. CSV cannot hold lists or maps, so there
`categories` is pipe-separated, `attributes` is a JSON object, `image` is a path, and timestamps
are ISO-8601 or unix seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dynrec.data.dataset import Dataset
from dynrec.data.schemas import EVENTS_SCHEMA, ITEMS_SCHEMA, TIMESTAMP_TYPE, USERS_SCHEMA


def _read_raw(path: Path) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if path.suffix == ".parquet":
        return pq.read_table(path)
    if path.suffix == ".csv":
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    raise ValueError(f"{path}: expected a .parquet or .csv file")


def _timestamps(column: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        return pc.cast(column, TIMESTAMP_TYPE)
    if pa.types.is_integer(column.type):
        return pc.cast(column, pa.int64()).cast(TIMESTAMP_TYPE)
    parsed = pc.cast(pc.cast(column, pa.string()), pa.timestamp("s", tz="UTC"))
    return parsed


def _column(table: pa.Table, field: pa.Field, path: Path) -> pa.Array:
    if field.name not in table.column_names:
        if not field.nullable:
            raise ValueError(f"{path}: required column '{field.name}' is missing (have {table.column_names})")
        return pa.nulls(table.num_rows, field.type)
    column = table[field.name]
    if field.type == TIMESTAMP_TYPE:
        return _timestamps(column)
    if pa.types.is_string(column.type) and pa.types.is_list(field.type):
        return pa.array([None if v is None else [c for c in v.split("|") if c] for v in column.to_pylist()], field.type)
    if pa.types.is_string(column.type) and pa.types.is_map(field.type):
        return pa.array([None if v is None else json.loads(v) for v in column.to_pylist()], field.type)
    if pa.types.is_string(column.type) and pa.types.is_struct(field.type):
        return pa.array([None if v is None else {"path": v, "bytes": None} for v in column.to_pylist()], field.type)
    try:
        return pc.cast(column, field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"{path}: column '{field.name}' cannot be read as {field.type}: {exc}") from exc


def _canonical(path: Path, schema: pa.Schema) -> pa.Table:
    table = _read_raw(path)
    columns = [_column(table, field, path) for field in schema]
    result = pa.Table.from_arrays(columns, schema=schema.remove_metadata())
    for field in schema:
        if not field.nullable and result[field.name].null_count:
            raise ValueError(f"{path}: column '{field.name}' has {result[field.name].null_count} empty values")
    return result


def load_tables(items: str | Path, events: str | Path, users: str | Path | None = None, name: str = "custom") -> Dataset:
    """Load a catalogue, its events and (optionally) users from Parquet or CSV files."""
    items_table = _canonical(Path(items), ITEMS_SCHEMA)
    events_table = _canonical(Path(events), EVENTS_SCHEMA)
    if users is None:
        user_ids = pc.unique(events_table["user_id"])
        users_table = pa.table({"user_id": user_ids, "attributes": pa.nulls(len(user_ids), USERS_SCHEMA.field("attributes").type)}, schema=USERS_SCHEMA)
    else:
        users_table = _canonical(Path(users), USERS_SCHEMA)
    return Dataset(name, items_table, events_table, users_table)
