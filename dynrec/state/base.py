"""The state store protocol: the durable log every replica replays, and snapshots.

One store holds, in order, item upserts and hides (`item_log`) and behaviour events
(`item_events`: ratings, views, clicks, impressions, with the user and recommendation they came
from), plus named snapshots (a UserState shard's users, as of an event sequence number). A write
returns only once it is durable, so whatever the API acknowledged survives a crash; a replica
that restarts loads its snapshot and replays the log after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from dynrec.config import StateConfig


@dataclass
class ItemChange:
    seq: int
    item_id: str
    hidden: bool
    record: dict | None = None  # title, text, categories, attributes, created_at
    text_vec: np.ndarray | None = None
    text_mask: bool = False
    image_vec: np.ndarray | None = None
    image_mask: bool = False
    embedding: np.ndarray | None = None
    model_version: str = ""


class StoredEvent(NamedTuple):
    item_id: str
    ts: int  # unix seconds
    value: float
    event_type: str = "rating"
    user_id: str | None = None
    recommendation_id: str | None = None  # the recommendation it answers (bandit feedback)


class StateStore(Protocol):
    def put_item(self, change: ItemChange) -> int:
        """Append an upsert (or, with `hidden`, a hide); returns its sequence number once durable."""

    def hide(self, item_id: str) -> int: ...

    def item_changes(self, after: int) -> list[ItemChange]: ...

    def add_events(self, events: list[StoredEvent]) -> int:
        """Append behaviour events atomically; returns the newest sequence number once durable."""

    def events(self, after: int) -> list[tuple[int, StoredEvent]]: ...

    def latest(self) -> tuple[int, int]:
        """The newest (item change, behaviour event) sequence numbers: a cheap "anything new?"."""

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        """Replace snapshot `name` atomically: a reader sees the old one or the new one whole."""

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None: ...

    def erase_user(self, user_id: str) -> int:
        """Delete every event the user sent; returns how many."""

    def close(self) -> None: ...


def open_store(config: StateConfig, home, dataset: str) -> StateStore:
    """The configured backend: SQLite under `home` (the embedded default) or Redis at `redis_url`."""
    if config.backend == "sqlite":
        from dynrec.state.sqlite import SqliteStore

        return SqliteStore(home / "state" / f"{dataset}-items.sqlite")
    if config.backend == "redis":
        from dynrec.state.redis import RedisStore

        return RedisStore(config.redis_url, namespace=f"{config.redis_namespace}:{dataset}")
    raise ValueError(f"state.backend must be sqlite or redis, got '{config.backend}'")
