"""The team's own data: Parquet or CSV files with their own column names, read into the canonical
tables (dynrec.data.schemas), with every row that cannot be used counted by cause.

A source is a folder (a local path or a pyarrow filesystem URI) holding items, events and,
optionally, users. `source.columns` maps canonical names to the files' own, and item and user
columns left unmapped become attributes. Timestamps may be unix seconds, milliseconds,
microseconds or ISO-8601 strings; event types outside the model's vocabulary map through
`source.event_types`. A row that cannot be used (a missing id, an unparsable timestamp, an event
for an unknown item, a duplicate) is left out and counted in a `LoadReport`; past
`source.max_bad_rows` the load fails, naming the file, the column and the causes.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dynrec.config import DynrecConfig, ModelConfig, SourceConfig
from dynrec.data.dataset import Dataset
from dynrec.data.schemas import ATTRIBUTES_TYPE, EVENTS_SCHEMA, IMAGE_TYPE, ITEMS_SCHEMA, TIMESTAMP_TYPE, USERS_SCHEMA

log = logging.getLogger("dynrec.data")

SUFFIXES = (".parquet", ".csv", ".csv.gz", ".tsv")
EXAMPLES = 3  # row numbers quoted per cause


class SourceError(ValueError):
    """The source cannot be read as configured; the message names the file, the column and the fix."""


@dataclass
class LoadReport:
    """Rows read and rows left out, per table and cause, with a few row numbers of each."""

    rows: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, Counter] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def reject(self, table: str, cause: str, mask: np.ndarray, row_numbers: np.ndarray) -> None:
        count = int(mask.sum())
        if count:
            self.rejected.setdefault(table, Counter())[cause] += count
            self.examples.setdefault((table, cause), []).extend(row_numbers[mask][:EXAMPLES].tolist())

    def bad(self, table: str) -> int:
        return sum(self.rejected.get(table, Counter()).values())

    def lines(self) -> list[str]:
        out = []
        for table, read in self.rows.items():
            causes = self.rejected.get(table, Counter())
            out.append(f"{table}: {read:,} rows read, {read - sum(causes.values()):,} used")
            for cause, count in causes.most_common():
                rows = ", ".join(str(r) for r in self.examples[(table, cause)][:EXAMPLES])
                out.append(f"  {count:,} left out: {cause} (e.g. row {rows})")
        return out + [f"note: {note}" for note in self.notes]

    def check(self, table: str, where: str, ceiling: float) -> None:
        """Fail when the table's unusable rows pass the ceiling (a share below 1, a count from 1)."""
        read, bad = self.rows.get(table, 0), self.bad(table)
        allowed = ceiling * read if ceiling < 1 else ceiling
        if bad > allowed:
            detail = "\n".join(line for line in self.lines() if not line.startswith("note"))
            raise SourceError(f"{where}: {bad:,} of {read:,} {table} rows cannot be used, more than "
                              f"source.max_bad_rows ({ceiling:g}) allows:\n{detail}")


@dataclass
class _File:
    """One table as read, with where it came from (for messages) and its folder (for relative paths)."""

    table: pa.Table
    where: str
    folder: str | None  # a local folder that relative image paths resolve against


def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri and not uri.startswith("file://"):
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri.removeprefix("file://")).expanduser().resolve())


def _delimiter(header: bytes) -> str:
    line = header.split(b"\n", 1)[0].decode("utf-8", "replace")
    return max((",", "\t", ";", "|"), key=line.count)


def _read_csv(fs: pafs.FileSystem, path: str) -> pa.Table:
    """Every column as a string: inference that guesses from the first block fails on the odd later
    value, and ids such as `007` must stay as written; the canonical casts below parse the rest."""
    with fs.open_input_stream(path, compression="detect") as stream:
        raw = stream.read()
    parse = pacsv.ParseOptions(delimiter="\t" if path.endswith(".tsv") else _delimiter(raw[:65536]))
    names = pacsv.read_csv(pa.BufferReader(raw), parse_options=parse,
                           read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names if raw.strip() else []
    return pacsv.read_csv(
        pa.BufferReader(raw), parse_options=parse,
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True),
    )


def read_table(fs: pafs.FileSystem, path: str) -> pa.Table:
    """A Parquet or CSV file, or a folder of them (as Spark and Ray write)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        parts = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                 if i.type == pafs.FileType.File and i.path.endswith(SUFFIXES)]
        if not parts:
            raise SourceError(f"{path}: folder holds no {', '.join(SUFFIXES)} files")
        if all(p.path.endswith(".parquet") for p in parts):
            return pads.dataset(path, filesystem=fs, format="parquet").to_table()
        return pa.concat_tables([read_table(fs, p.path) for p in sorted(parts, key=lambda p: p.path)], promote_options="permissive")
    try:
        if path.endswith(".parquet"):
            return pq.read_table(path, filesystem=fs)
        return _read_csv(fs, path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{path}: cannot be read as {'Parquet' if path.endswith('.parquet') else 'CSV'}: {exc}") from exc


def _locate(uri: str, name: str, kind: str, required: bool) -> _File | None:
    fs, root = _filesystem(uri)
    candidates = [name] if name.endswith(SUFFIXES) else [name + s for s in SUFFIXES] + [name]
    for candidate in candidates:
        path = candidate if os.path.isabs(candidate) else f"{root.rstrip('/')}/{candidate}"
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            local = isinstance(fs, pafs.LocalFileSystem)
            folder = str(Path(path).parent if Path(path).is_file() else Path(path)) if local else None
            return _File(read_table(fs, path), path, folder)
    if required:
        raise SourceError(f"{uri}: no {kind} file found (tried {', '.join(candidates)}); name yours in source.{kind}")
    return None


def _column(file: _File, table: str, canonical: str, mapping: dict, required: bool = False) -> pa.ChunkedArray | None:
    source_name = mapping.get(canonical, canonical)
    if source_name in file.table.column_names:
        return file.table[source_name]
    if required or canonical in mapping:
        raise SourceError(
            f"{file.where}: column '{source_name}' for {table}.{canonical} is missing; the file has "
            f"{file.table.column_names}. Map yours with source.columns.{table}.{canonical}: <your column>"
        )
    return None


def _strings(column: pa.ChunkedArray | None, n: int) -> pa.Array:
    """A column as trimmed strings, empty strings as nulls."""
    if column is None:
        return pa.nulls(n, pa.string())
    values = pc.utf8_trim_whitespace(pc.cast(column, pa.string()).combine_chunks())
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def parse_timestamps(column: pa.ChunkedArray, unit: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (int64) and a validity mask, from Arrow timestamps, numbers (s, ms or us; `auto`
    tells them apart by magnitude) or ISO-8601 strings."""
    array = column.combine_chunks()
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        seconds = pc.cast(pc.cast(array, pa.timestamp("s", tz="UTC")) if pa.types.is_date(array.type) else array,
                          TIMESTAMP_TYPE).cast(pa.int64())
        return seconds.fill_null(0).to_numpy(), seconds.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        numbers = array.cast(pa.float64()).fill_null(np.nan).to_numpy()
        is_number = np.isfinite(numbers)
        return _scaled(numbers, is_number, unit), is_number
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise SourceError(f"{where}: expected timestamps (unix seconds, milliseconds or ISO-8601), got {array.type}")
    text = pd.Series(array.to_pandas(), dtype=object)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    is_number = np.isfinite(numbers)
    seconds = _scaled(numbers, is_number, unit)
    rest = ~is_number & text.notna().to_numpy()
    if rest.any():
        parsed = pd.to_datetime(text[rest], utc=True, errors="coerce", format="ISO8601")
        ok = parsed.notna().to_numpy()
        seconds[np.flatnonzero(rest)[ok]] = parsed[ok].dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
        is_number[np.flatnonzero(rest)[ok]] = True
    return seconds, is_number


def _scaled(numbers: np.ndarray, valid: np.ndarray, unit: str) -> np.ndarray:
    divisor = {"s": 1, "ms": 1_000, "us": 1_000_000}.get(unit)
    if divisor is None:  # auto: seconds reach 1e11 only in the year 5138; milliseconds 1e14 in 5138 too
        typical = float(np.median(np.abs(numbers[valid]))) if valid.any() else 0.0
        divisor = 1_000_000 if typical >= 1e14 else 1_000 if typical >= 1e11 else 1
    return np.where(valid, numbers / divisor, 0).astype(np.int64)


def _timestamp_array(seconds: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(seconds, pa.int64(), mask=~valid).cast(TIMESTAMP_TYPE)


def _attributes(file: _File, mapping: dict, used: set[str], explicit: pa.ChunkedArray | None) -> pa.Array:
    """A map per row: the `attributes` column (JSON objects or a map) plus every unmapped column."""
    extra = [c for c in file.table.column_names if c not in used]
    n = file.table.num_rows
    rows: list[dict] = [{} for _ in range(n)]
    if explicit is not None:
        values = explicit.to_pylist()
        for i, value in enumerate(values):
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise SourceError(f"{file.where}: attributes column, row {i + 1}: expected a JSON object: {exc}") from exc
                value = parsed if isinstance(parsed, dict) else None
            if value:
                rows[i].update({str(k): str(v) for k, v in (value.items() if isinstance(value, dict) else value)})
    for name in extra:
        for i, value in enumerate(file.table[name].to_pylist()):
            if value is not None and value != "":
                rows[i][name] = str(value)
    return pa.array(rows, ATTRIBUTES_TYPE)


def _categories(column: pa.ChunkedArray | None, n: int, separator: str) -> pa.Array:
    if column is None:
        return pa.nulls(n, pa.list_(pa.string()))
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return pc.cast(column, pa.list_(pa.string())).combine_chunks()
    values = _strings(column, n).to_pylist()
    return pa.array([None if v is None else [c.strip() for c in v.split(separator) if c.strip()] for v in values],
                    pa.list_(pa.string()))


def _images(column: pa.ChunkedArray | None, n: int, folder: str | None, report: LoadReport) -> pa.Array:
    """Paths (relative ones resolve against the source's folder), bytes, or {path, bytes} structs."""
    if column is None:
        return pa.nulls(n, IMAGE_TYPE)
    if pa.types.is_struct(column.type):
        return pc.cast(column, IMAGE_TYPE).combine_chunks()
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        return pa.array([None if b is None else {"path": None, "bytes": b} for b in column.to_pylist()], IMAGE_TYPE)
    paths = _strings(column, n).to_pylist()
    missing = 0
    rows = []
    for value in paths:
        if value is None:
            rows.append(None)
            continue
        if folder is not None and "://" not in value:
            value = str(Path(folder, value))
            missing += not os.path.isfile(value)
        rows.append({"path": value, "bytes": None})
    if missing:
        report.notes.append(f"{missing:,} item image paths name no file; those items are served without an image")
    return pa.array(rows, IMAGE_TYPE)


def _keep_last(keys: list, table: str, report: LoadReport, rows: np.ndarray, valid: np.ndarray, cause: str) -> np.ndarray:
    """`valid` less every earlier row whose key repeats later (the newest row of a key wins)."""
    seen: set = set()
    duplicate = np.zeros(len(keys), bool)
    for i in range(len(keys) - 1, -1, -1):
        if valid[i]:
            if keys[i] in seen:
                duplicate[i] = True
            seen.add(keys[i])
    report.reject(table, cause, duplicate, rows)
    return valid & ~duplicate


def canonical_items(file: _File, source: SourceConfig, report: LoadReport) -> pa.Table:
    mapping = source.columns.get("items", {})
    n = file.table.num_rows
    rows = np.arange(1, n + 1)
    report.rows["items"] = n
    get = partial(_column, file, "items", mapping=mapping)
    ids = _strings(get("item_id", required=True), n)
    valid = ids.is_valid().to_numpy(zero_copy_only=False)
    report.reject("items", "missing item_id", ~valid, rows)
    valid = _keep_last(ids.to_pylist(), "items", report, rows, valid, "duplicate item_id (the last row is kept)")
    created = get("created_at")
    if created is None:
        created_at = pa.nulls(n, TIMESTAMP_TYPE)
    else:
        seconds, ok = parse_timestamps(created, source.timestamp_unit, f"{file.where}: column created_at")
        unparsed = int((~ok & created.is_valid().to_numpy(zero_copy_only=False)).sum())
        if unparsed:
            report.notes.append(f"{unparsed:,} items have an unparsable created_at; their age is unknown")
        created_at = _timestamp_array(seconds, ok)
    used = {mapping.get(c, c) for c in ITEMS_SCHEMA.names}
    table = pa.table(
        {
            "item_id": ids,
            "title": _strings(get("title"), n),
            "text": _strings(get("text"), n),
            "categories": _categories(get("categories"), n, source.category_separator),
            "image": _images(get("image"), n, file.folder, report),
            "attributes": _attributes(file, mapping, used, get("attributes")),
            "created_at": created_at,
        },
        schema=ITEMS_SCHEMA,
    )
    return table.filter(pa.array(valid))


def _event_types(column: pa.ChunkedArray | None, n: int, has_values: bool, source: SourceConfig,
                 vocabulary: tuple[str, ...], report: LoadReport, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    if column is None:  # explicit feedback carries a value (a rating); implicit is a view
        return pa.array(["rating" if has_values else "view"] * n, pa.string()), np.ones(n, bool)
    raw = _strings(column, n).to_pylist()
    mapped, valid, unknown = [], np.ones(n, bool), Counter()
    for i, value in enumerate(raw):
        name = source.event_types.get(value, value)
        if name not in vocabulary:
            unknown[value] += 1
            if not source.unknown_event_type:
                valid[i] = False
            name = source.unknown_event_type
        mapped.append(name)
    if unknown:
        kinds = ", ".join(f"'{k}' ({c:,})" for k, c in unknown.most_common(5))
        if source.unknown_event_type:
            report.notes.append(f"event types outside the vocabulary {list(vocabulary)} became "
                                f"'{source.unknown_event_type}': {kinds}; map them in source.event_types")
        else:
            report.reject("events", "event type outside the vocabulary (map it in source.event_types)", ~valid, rows)
    return pa.array(mapped, pa.string()), valid


def canonical_events(file: _File, source: SourceConfig, item_ids: pa.Array, vocabulary: tuple[str, ...],
                     report: LoadReport) -> pa.Table:
    mapping = source.columns.get("events", {})
    n = file.table.num_rows
    rows = np.arange(1, n + 1)
    report.rows["events"] = n
    get = partial(_column, file, "events", mapping=mapping)
    users, items = _strings(get("user_id", required=True), n), _strings(get("item_id", required=True), n)
    valid = np.ones(n, bool)
    for name, ids in (("user_id", users), ("item_id", items)):
        missing = ~ids.is_valid().to_numpy(zero_copy_only=False)
        report.reject("events", f"missing {name}", missing & valid, rows)
        valid &= ~missing
    known = pc.is_in(items, value_set=item_ids).to_numpy(zero_copy_only=False)
    report.reject("events", "item_id not in the items file", valid & ~known, rows)
    valid &= known
    seconds, ok = parse_timestamps(get("timestamp", required=True), source.timestamp_unit, f"{file.where}: column timestamp")
    report.reject("events", "missing or unparsable timestamp", valid & ~ok, rows)
    valid &= ok
    value_column = get("value")
    if value_column is None:
        values = pa.nulls(n, pa.float32())
    else:
        numbers = pd.to_numeric(pd.Series(value_column.to_pandas(), dtype=object), errors="coerce").to_numpy(np.float64)
        present = value_column.is_valid().to_numpy(zero_copy_only=False)
        report.reject("events", "value is not a number", valid & present & ~np.isfinite(numbers), rows)
        valid &= ~present | np.isfinite(numbers)
        values = pa.array(numbers, pa.float32(), mask=~np.isfinite(numbers))
    types, typed = _event_types(get("event_type"), n, value_column is not None, source, vocabulary, report, rows)
    valid &= typed
    table = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "event_type": types,
            "timestamp": _timestamp_array(seconds, ok),
            "value": values,
            "recommendation_id": _strings(get("recommendation_id"), n),
        },
        schema=EVENTS_SCHEMA,
    )
    keys = list(zip(users.to_pylist(), items.to_pylist(), types.to_pylist(), seconds.tolist(), values.to_pylist()))
    seen: set = set()
    duplicate = np.zeros(n, bool)
    for i in np.flatnonzero(valid):
        duplicate[i] = keys[i] in seen
        seen.add(keys[i])
    report.reject("events", "duplicate event (same user, item, type, time and value)", duplicate, rows)
    return table.filter(pa.array(valid & ~duplicate))


def canonical_users(file: _File | None, source: SourceConfig, events: pa.Table, report: LoadReport) -> pa.Table:
    if file is None:
        ids = pc.unique(events["user_id"])
        return pa.table({"user_id": ids, "attributes": pa.nulls(len(ids), ATTRIBUTES_TYPE)}, schema=USERS_SCHEMA)
    mapping = source.columns.get("users", {})
    n = file.table.num_rows
    rows = np.arange(1, n + 1)
    report.rows["users"] = n
    ids = _strings(_column(file, "users", "user_id", mapping, required=True), n)
    valid = ids.is_valid().to_numpy(zero_copy_only=False)
    report.reject("users", "missing user_id", ~valid, rows)
    valid = _keep_last(ids.to_pylist(), "users", report, rows, valid, "duplicate user_id (the last row is kept)")
    used = {mapping.get(c, c) for c in USERS_SCHEMA.names}
    attributes = _attributes(file, mapping, used, _column(file, "users", "attributes", mapping))
    table = pa.table({"user_id": ids, "attributes": attributes}, schema=USERS_SCHEMA)
    return table.filter(pa.array(valid))


def read_files(items: _File, events: _File, users: _File | None, source: SourceConfig, name: str,
               vocabulary: tuple[str, ...], report: LoadReport | None = None) -> Dataset:
    """The canonical dataset from three tables as read; raises SourceError past the bad-row ceiling."""
    report = report if report is not None else LoadReport()
    items_table = canonical_items(items, source, report)
    report.check("items", items.where, source.max_bad_rows)
    events_table = canonical_events(events, source, items_table["item_id"].combine_chunks(), vocabulary, report)
    report.check("events", events.where, source.max_bad_rows)
    users_table = canonical_users(users, source, events_table, report)
    if users is not None:
        report.check("users", users.where, source.max_bad_rows)
    for line in report.lines():
        if "left out" in line or line.startswith("note"):
            log.warning("%s: %s", name, line.strip())
    return Dataset(name, items_table, events_table, users_table)


def load_tables(items: str | Path, events: str | Path, users: str | Path | None = None, name: str = "custom",
                source: SourceConfig | None = None, report: LoadReport | None = None,
                vocabulary: tuple[str, ...] = ModelConfig().event_types) -> Dataset:
    """Items, events and (optionally) users from Parquet or CSV files, read through `source`'s
    column mapping and rules (the defaults: canonical column names)."""
    source = source or SourceConfig(uri=str(Path(items).parent))
    files = [_locate(str(Path(p).parent), Path(p).name, kind, True) if p is not None else None
             for p, kind in ((items, "items"), (events, "events"), (users, "users"))]
    return read_files(*files, source, name, vocabulary, report)


def load_source(config: DynrecConfig, report: LoadReport | None = None) -> Dataset:
    """The configured source (`config.source`): the team's own files under `uri`, else a bundled
    example by name. Every command and the import read data through this one function."""
    source = config.source
    if not source.uri:
        from dynrec.data.movielens import load_bundled

        return load_bundled(source.dataset, config.data.data_dir)
    items = _locate(source.uri, source.items, "items", True)
    events = _locate(source.uri, source.events, "events", True)
    users = _locate(source.uri, source.users, "users", False)
    return read_files(items, events, users, source, source.label, config.model.event_types, report)
