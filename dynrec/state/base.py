"""The state store protocol: the source of truth every replica boots from, and snapshots.

One store holds, in order, item upserts and hides (`item_log`) and behaviour events
(`item_events`: ratings, views, clicks, impressions, with the user and recommendation they came
from), the users' attributes, plus named snapshots (a segment fit, the item state, or a UserState
shard's users as of an event sequence number, kept one entry per user). Imports
(dynrec.state.imports) and the API write the same logs. A write returns only once it is durable,
so whatever the API acknowledged survives a crash; a replica builds its state from the store and
replays the log after that point.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import Any, Collection, NamedTuple, Protocol

import numpy as np

from dynrec.config import DynrecConfig


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
    content_vec: np.ndarray | None = None  # the catalogue's content view (Catalog.content_view), fused once by the writer


class StoredEvent(NamedTuple):
    item_id: str
    ts: int  # unix seconds
    value: float
    event_type: str = "rating"
    user_id: str | None = None
    recommendation_id: str | None = None  # the recommendation it answers (bandit feedback)
    key: int | None = None  # an import's idempotency key: an event whose key is stored already is skipped
    position: int | None = None  # where the item was in its recommendation (0 = first), when attributed


@dataclass
class IssuedRecommendation:
    """A list the service returned, kept so feedback that names it can be checked and placed."""

    recommendation_id: str
    user_id: str
    item_ids: list[str]
    counted: list[bool]  # the items whose impression the service counted itself (dynrec.ranking.attribution)
    ts: float


class StateStore(Protocol):
    def put_item(self, change: ItemChange) -> int:
        """Append an upsert (or, with `hidden`, a hide); returns its sequence number once durable."""

    def put_items(self, changes: list[ItemChange]) -> int:
        """Append many upserts atomically (imports); returns the newest sequence number once durable."""

    def hide(self, item_id: str) -> int: ...

    def item_changes(self, after: int) -> list[ItemChange]: ...

    def add_events(self, events: list[StoredEvent]) -> int:
        """Append behaviour events atomically; returns the newest sequence number once durable.
        Events with a `key` already stored are skipped, so a re-run import adds nothing twice."""

    def events(self, after: int) -> list[tuple[int, StoredEvent]]: ...

    def event_rows(self, upto: int) -> list[tuple]:
        """(user_id, item_id, event_type, ts, value, recommendation_id) of every event up to `upto`,
        as plain tuples: a replica reads the whole log this way when it boots."""

    def attributed_events(self, upto: int, event_types: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
        """(item_id, event_type, position) of every event up to `upto` that names a recommendation
        and has one of `event_types`, in order: the feedback a rebuilt catalogue counts."""

    def event_page(self, after: int, limit: int) -> list[tuple[int, str, str, int]]:
        """(seq, item_id, event_type, ts) of at most `limit` events after `after`, in order: the
        whole log read a page at a time, without holding every event's full row at once."""

    def latest(self) -> tuple[int, int]:
        """The newest (item change, behaviour event) sequence numbers: a cheap "anything new?"."""

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        """Replace snapshot `name` atomically: a reader sees the old one or the new one whole."""

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None: ...

    def save_snapshot_entries(self, name: str, seq: int, header: bytes, changed: dict[str, bytes],
                              removed: Collection[str] = (), whole: bool = False) -> None:
        """Update keyed snapshot `name` in one atomic write: its sequence number and header, the
        entries in `changed` (added or replaced) and in `removed` (dropped); with `whole`, every
        other entry is dropped too. Entries not named keep their bytes, so a write costs what
        changed since the last one (a UserState shard's users: one entry each)."""

    def load_snapshot_entries(self, name: str) -> tuple[int, bytes, dict[str, bytes]] | None:
        """A keyed snapshot's sequence number, header and entries, read in one go; None without one."""

    def put_images(self, images: dict[str, bytes]) -> None:
        """Keep items' image files as uploaded or imported (replacing any kept before), durably:
        the item log keeps only their vectors, and the inspector shows the image itself."""

    def item_image(self, item_id: str) -> bytes | None: ...

    def image_ids(self) -> set[str]:
        """The items with a kept image."""

    def put_users(self, users: dict[str, dict[str, str]]) -> None:
        """Set users' attributes (replacing what was stored for them), durably."""

    def users(self) -> dict[str, dict[str, str]]: ...

    def erase_user(self, user_id: str) -> int:
        """Delete every event the user sent and their attributes, and remember the erasure (a
        re-run import must not bring them back); returns how many events."""

    def erased_users(self) -> set[str]: ...

    def put_recommendations(self, issued: list[IssuedRecommendation], ttl_s: float) -> None:
        """Keep issued recommendations for `ttl_s` seconds (feedback naming one is attributed to it)."""

    def recommendation(self, recommendation_id: str) -> IssuedRecommendation | None:
        """An issued recommendation that has not expired, else None."""

    def close(self) -> None: ...


def unpickled(data: bytes, snapshot: str) -> Any:
    """A snapshot's pickled object, or None when this code cannot read it: one written by code whose
    classes have since changed (a field removed, a module moved) is rebuilt from the store's records
    and events, as if there were none, instead of failing every replica's boot."""
    try:
        return pickle.loads(data)
    except (AttributeError, ImportError, TypeError, ValueError, EOFError, pickle.UnpicklingError) as error:
        logging.getLogger(__name__).warning("snapshot %s was written by another version of dynrec (%s: %s); rebuilding it",
                                            snapshot, type(error).__name__, error)
        return None


def open_store(config: DynrecConfig) -> StateStore:
    """The configured backend, one store per source: SQLite under `home` (the embedded default) or
    Redis at `state.redis_url`."""
    state, name = config.state, config.source.label
    if state.backend == "sqlite":
        from dynrec.state.sqlite import SqliteStore

        return SqliteStore(config.paths.state(name))
    if state.backend == "redis":
        from dynrec.state.redis import RedisStore

        return RedisStore(state.redis_url, namespace=f"{state.redis_namespace}:{name}")
    raise ValueError(f"state.backend must be sqlite or redis, got '{state.backend}'")
