"""The item store: an append-only log of item upserts, hides and behaviour events, in SQLite (WAL).

Every replica holding a catalogue view reads the log from its last sequence number, so an item
written once reaches all of them, in the same order, and survives restarts. SQLite is the
embedded default for one machine.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS item_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    hidden INTEGER NOT NULL,
    record TEXT,
    text_vec BLOB, text_mask INTEGER,
    image_vec BLOB, image_mask INTEGER,
    embedding BLOB,
    model_version TEXT,
    written_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS item_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    event_type TEXT NOT NULL DEFAULT 'rating',
    user_id TEXT,
    recommendation_id TEXT
);
"""
# columns added to item_events after its first release; older files gain them on open
EVENT_COLUMNS = {"event_type": "TEXT NOT NULL DEFAULT 'rating'", "user_id": "TEXT", "recommendation_id": "TEXT"}


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


def _blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


class ItemStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a returned write is on disk
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(item_events)")}
        for column, declaration in EVENT_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE item_events ADD COLUMN {column} {declaration}")

    def put_item(self, change: ItemChange) -> int:
        """Append an upsert (or, with `hidden`, a hide); returns its sequence number."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO item_log (item_id, hidden, record, text_vec, text_mask, image_vec, image_mask, embedding,"
                " model_version, written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    change.item_id, int(change.hidden), json.dumps(change.record) if change.record else None,
                    _blob(change.text_vec), int(change.text_mask), _blob(change.image_vec), int(change.image_mask),
                    _blob(change.embedding), change.model_version, time.time(),
                ),
            )
            return int(cursor.lastrowid)

    def hide(self, item_id: str) -> int:
        return self.put_item(ItemChange(0, item_id, hidden=True))

    def item_changes(self, after: int) -> list[ItemChange]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, item_id, hidden, record, text_vec, text_mask, image_vec, image_mask, embedding, model_version"
                " FROM item_log WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [
            ItemChange(seq, item_id, bool(hidden), json.loads(record) if record else None, _vector(tv), bool(tm),
                       _vector(iv), bool(im), _vector(emb), version or "")
            for seq, item_id, hidden, record, tv, tm, iv, im, emb, version in rows
        ]

    def add_events(self, events: list[StoredEvent]) -> int:
        """Append behaviour events in one transaction; durable when this returns."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO item_events (item_id, ts, value, event_type, user_id, recommendation_id) VALUES (?, ?, ?, ?, ?, ?)",
                events,
            )
            self._db.execute("COMMIT")
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM item_events").fetchone()[0])

    def events(self, after: int) -> list[tuple[int, StoredEvent]]:
        """(seq, event) for every event after sequence number `after`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, item_id, ts, value, event_type, user_id, recommendation_id FROM item_events"
                " WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [(row[0], StoredEvent(*row[1:])) for row in rows]

    def latest(self) -> tuple[int, int]:
        """The newest (item change, behaviour event) sequence numbers: a cheap "anything new?"."""
        with self._lock:
            items = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM item_log").fetchone()[0]
            events = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM item_events").fetchone()[0]
        return int(items), int(events)

    def close(self) -> None:
        self._db.close()
