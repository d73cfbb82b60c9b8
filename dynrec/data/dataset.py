"""A dataset is three Arrow tables in the canonical schemas."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from dynrec.data.schemas import EVENTS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA


@dataclass(frozen=True)
class Dataset:
    name: str
    items: pa.Table
    events: pa.Table
    users: pa.Table

    def __post_init__(self) -> None:
        for label, table, schema in (
            ("items", self.items, ITEMS_SCHEMA),
            ("events", self.events, EVENTS_SCHEMA),
            ("users", self.users, USERS_SCHEMA),
        ):
            if not table.schema.equals(schema):
                raise ValueError(f"{self.name}: {label} table does not match the canonical schema:\n{table.schema}")
