"""The embedded state store: SQLite in WAL mode, a file under DYNREC_HOME (see dynrec.state.base).

Every replica on the machine opens the same file; `synchronous=FULL` makes a committed write
durable before the call returns. WAL must not be shared across hosts: a cluster uses Redis.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Collection

import numpy as np

from dynrec.state.base import IssuedRecommendation, ItemChange, StoredEvent

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
    written_at REAL NOT NULL,
    content_vec BLOB
);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    written_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_entries (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE TABLE IF NOT EXISTS item_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    event_type TEXT NOT NULL DEFAULT 'rating',
    user_id TEXT,
    recommendation_id TEXT,
    event_key INTEGER
);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS erased_users (
    user_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS recommendations (
    recommendation_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    ts REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recommendations_expiry ON recommendations (expires_at);
CREATE TABLE IF NOT EXISTS item_images (
    item_id TEXT PRIMARY KEY,
    image BLOB NOT NULL,
    written_at REAL NOT NULL
);
"""
# columns added after a table's first release; older files gain them on open
EVENT_COLUMNS = {"event_type": "TEXT NOT NULL DEFAULT 'rating'", "user_id": "TEXT", "recommendation_id": "TEXT",
                 "event_key": "INTEGER", "position": "INTEGER"}
ITEM_COLUMNS = {"content_vec": "BLOB"}


def _blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _vector(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


class SqliteStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a returned write is on disk
        # 64 MiB of page cache (the default is 2 MiB): an import's inserts land at random places in
        # the event-key index, and with the small cache ML-1M imported at 55-60k events/s, not 70-75k
        self._db.execute("PRAGMA cache_size=-65536")
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(item_events)")}
        for column, declaration in EVENT_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE item_events ADD COLUMN {column} {declaration}")
        present = {row[1] for row in self._db.execute("PRAGMA table_info(item_log)")}
        for column, declaration in ITEM_COLUMNS.items():
            if column not in present:
                self._db.execute(f"ALTER TABLE item_log ADD COLUMN {column} {declaration}")
        self._db.execute("CREATE INDEX IF NOT EXISTS item_events_user ON item_events (user_id)")
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS item_events_key ON item_events (event_key)")
        # the reads on a request's path (what is new, the log's tail, an issued recommendation, an
        # image) go through a connection of their own, so they never queue behind a write in flight
        # or a bulk read on this one: a user snapshot's 19 MB and its fsync held the lock for 0.2 s
        # while the user lookup waited on its replica's event loop. In WAL mode a reader never waits
        # for a writer, and sees every write committed before its read began.
        self._reader_lock = threading.Lock()
        self._reader = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30, isolation_level=None)

    def put_item(self, change: ItemChange) -> int:
        """Append an upsert (or, with `hidden`, a hide); returns its sequence number."""
        return self.put_items([change])

    def put_items(self, changes: list[ItemChange]) -> int:
        """Append upserts in one transaction; returns the newest sequence number."""
        now = time.time()
        rows = [(c.item_id, int(c.hidden), json.dumps(c.record) if c.record else None, _blob(c.text_vec), int(c.text_mask),
                 _blob(c.image_vec), int(c.image_mask), _blob(c.embedding), c.model_version, now, _blob(c.content_vec))
                for c in changes]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO item_log (item_id, hidden, record, text_vec, text_mask, image_vec, image_mask, embedding,"
                " model_version, written_at, content_vec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM item_log").fetchone()[0])

    def hide(self, item_id: str) -> int:
        return self.put_item(ItemChange(0, item_id, hidden=True))

    def item_changes(self, after: int) -> list[ItemChange]:
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT seq, item_id, hidden, record, text_vec, text_mask, image_vec, image_mask, embedding, model_version,"
                " content_vec FROM item_log WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [
            ItemChange(seq, item_id, bool(hidden), json.loads(record) if record else None, _vector(tv), bool(tm),
                       _vector(iv), bool(im), _vector(emb), version or "", _vector(content))
            for seq, item_id, hidden, record, tv, tm, iv, im, emb, version, content in rows
        ]

    def add_events(self, events: list[StoredEvent]) -> int:
        """Append behaviour events in one transaction; durable when this returns."""
        with self._lock:
            self._db.execute("BEGIN")
            # a skipped row must not take a sequence number (INSERT OR IGNORE would), so the log stays gapless
            self._db.executemany(
                "INSERT INTO item_events (item_id, ts, value, event_type, user_id, recommendation_id, event_key, position)"
                " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE ?7 IS NULL OR NOT EXISTS"
                " (SELECT 1 FROM item_events WHERE event_key = ?7)",
                events,
            )
            self._db.execute("COMMIT")
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM item_events").fetchone()[0])

    def events(self, after: int) -> list[tuple[int, StoredEvent]]:
        """(seq, event) for every event after sequence number `after`, in order."""
        with self._reader_lock:
            rows = self._reader.execute(
                "SELECT seq, item_id, ts, value, event_type, user_id, recommendation_id, position FROM item_events"
                " WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()
        return [(row[0], StoredEvent(*row[1:7], position=row[7])) for row in rows]

    def event_rows(self, upto: int) -> list[tuple]:
        with self._lock:
            return self._db.execute(
                "SELECT user_id, item_id, event_type, ts, value, recommendation_id FROM item_events WHERE seq <= ? ORDER BY seq",
                (upto,),
            ).fetchall()

    def attributed_events(self, upto: int, event_types: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
        marks = ",".join("?" * len(event_types))
        with self._lock:
            return self._db.execute(
                "SELECT item_id, event_type, position FROM item_events WHERE seq <= ? AND recommendation_id IS NOT NULL"
                f" AND event_type IN ({marks}) ORDER BY seq",
                (upto, *event_types),
            ).fetchall()

    def event_page(self, after: int, limit: int) -> list[tuple[int, str, str, int]]:
        with self._lock:
            return self._db.execute(
                "SELECT seq, item_id, event_type, ts FROM item_events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit),
            ).fetchall()

    def latest(self) -> tuple[int, int]:
        """The newest (item change, behaviour event) sequence numbers: a cheap "anything new?"."""
        with self._reader_lock:
            items = self._reader.execute("SELECT COALESCE(MAX(seq), 0) FROM item_log").fetchone()[0]
            events = self._reader.execute("SELECT COALESCE(MAX(seq), 0) FROM item_events").fetchone()[0]
        return int(items), int(events)

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        with self._lock:  # one statement, one transaction: the old row or the new one, never half
            self._db.execute("INSERT OR REPLACE INTO snapshots (name, seq, payload, written_at) VALUES (?, ?, ?, ?)",
                             (name, seq, payload, time.time()))

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._db.execute("SELECT seq, payload FROM snapshots WHERE name = ?", (name,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def save_snapshot_entries(self, name: str, seq: int, header: bytes, changed: dict[str, bytes],
                              removed: Collection[str] = (), whole: bool = False) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                if whole:
                    self._db.execute("DELETE FROM snapshot_entries WHERE name = ?", (name,))
                self._db.executemany("DELETE FROM snapshot_entries WHERE name = ? AND key = ?", ((name, k) for k in removed))
                self._db.executemany("INSERT OR REPLACE INTO snapshot_entries (name, key, payload) VALUES (?, ?, ?)",
                                     ((name, k, v) for k, v in changed.items()))
                self._db.execute("INSERT OR REPLACE INTO snapshots (name, seq, payload, written_at) VALUES (?, ?, ?, ?)",
                                 (name, seq, header, time.time()))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load_snapshot_entries(self, name: str) -> tuple[int, bytes, dict[str, bytes]] | None:
        with self._lock:  # one read transaction: the header and the entries of the same write
            self._db.execute("BEGIN")
            try:
                row = self._db.execute("SELECT seq, payload FROM snapshots WHERE name = ?", (name,)).fetchone()
                entries = self._db.execute("SELECT key, payload FROM snapshot_entries WHERE name = ?", (name,)).fetchall()
            finally:
                self._db.execute("COMMIT")
        return None if row is None else (int(row[0]), bytes(row[1]), {k: bytes(v) for k, v in entries})

    def put_images(self, images: dict[str, bytes]) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO item_images (item_id, image, written_at) VALUES (?, ?, ?)",
                                 [(item_id, image, now) for item_id, image in images.items()])
            self._db.execute("COMMIT")

    def item_image(self, item_id: str) -> bytes | None:
        with self._reader_lock:
            row = self._reader.execute("SELECT image FROM item_images WHERE item_id = ?", (item_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def image_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT item_id FROM item_images")}

    def put_users(self, users: dict[str, dict[str, str]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO users (user_id, attributes) VALUES (?, ?)",
                                 [(u, json.dumps(a)) for u, a in users.items()])
            self._db.execute("COMMIT")

    def users(self) -> dict[str, dict[str, str]]:
        with self._lock:
            return {u: json.loads(a) for u, a in self._db.execute("SELECT user_id, attributes FROM users")}

    def erase_user(self, user_id: str) -> int:
        with self._lock:
            self._db.execute("BEGIN")
            erased = self._db.execute("DELETE FROM item_events WHERE user_id = ?", (user_id,)).rowcount
            self._db.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
            self._db.execute("DELETE FROM recommendations WHERE user_id = ?", (user_id,))
            self._db.execute("INSERT OR IGNORE INTO erased_users (user_id) VALUES (?)", (user_id,))
            self._db.execute("COMMIT")
            return erased

    def erased_users(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT user_id FROM erased_users")}

    def put_recommendations(self, issued: list[IssuedRecommendation], ttl_s: float) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM recommendations WHERE expires_at < ?", (now,))
            self._db.executemany(
                "INSERT OR REPLACE INTO recommendations (recommendation_id, user_id, items, ts, expires_at) VALUES (?, ?, ?, ?, ?)",
                [(r.recommendation_id, r.user_id, json.dumps([r.item_ids, r.counted]), r.ts, now + ttl_s) for r in issued],
            )
            self._db.execute("COMMIT")

    def recommendation(self, recommendation_id: str) -> IssuedRecommendation | None:
        with self._reader_lock:
            row = self._reader.execute("SELECT user_id, items, ts FROM recommendations WHERE recommendation_id = ? AND expires_at >= ?",
                                       (recommendation_id, time.time())).fetchone()
        if row is None:
            return None
        item_ids, counted = json.loads(row[1])
        return IssuedRecommendation(recommendation_id, row[0], item_ids, counted, row[2])

    def close(self) -> None:
        self._db.close()
        self._reader.close()
