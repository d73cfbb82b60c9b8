"""The cluster state store: Redis streams for the two logs, a hash for users, plain keys for snapshots
(and a hash beside one for a keyed snapshot's entries).

Each append runs as one Lua script: it takes the next sequence number from a counter and adds
the entry to its stream under that number, so every replica sees one order; an entry with an
idempotency key (imports) is added only if the key is new to the log's key set. Durability is the
server's: run Redis with `appendonly yes` and `appendfsync always` (as the tests and k8s/ do), so
an acknowledged write is on disk; `WAIT` is issued when replicas are attached. Snapshots are
single `SET`s, and a keyed snapshot's write one MULTI/EXEC: atomic by construction.

The same script appends each event's sequence number to a list per user, so erasing a user reads
their own entries instead of the whole stream (2 s a user on ML-100k's 100k events, ten times that
on ML-1M). A store written before the lists existed keeps, in `user_index_from`, the last event that
no list names: only the stream up to there is scanned.
"""

from __future__ import annotations

import json
from typing import Collection

import numpy as np
import redis

from dynrec.state.base import IssuedRecommendation, ItemChange, StoredEvent

# ARGV holds (idempotency key or '', entry, owner or '') triples; an owner's list KEYS[4] .. owner
# gets the entry's sequence number
APPEND = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 1, #ARGV, 3 do
  if ARGV[i] == '' or redis.call('SADD', KEYS[3], ARGV[i]) == 1 then
    seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], seq .. '-1', 'entry', ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', KEYS[4] .. ARGV[i + 2], seq)
    end
  end
end
return seq
"""

# the events that came before the per-user lists: set once, atomically, when a store is first opened
# by a version that keeps them (0 for a new store)
INDEX_FROM = """
redis.call('SETNX', KEYS[1], redis.call('GET', KEYS[2]) or '0')
return tonumber(redis.call('GET', KEYS[1]))
"""


def _blob(vector: np.ndarray | None) -> str | None:
    return None if vector is None else np.ascontiguousarray(vector, dtype=np.float32).tobytes().hex()


def _vector(blob: str | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes.fromhex(blob), dtype=np.float32).copy()


class RedisStore:
    def __init__(self, url: str, namespace: str = "dynrec"):
        self.client = redis.Redis.from_url(url)
        self.client.ping()
        self.keys = {name: f"{namespace}:{name}" for name in
                     ("item_seq", "item_log", "item_keys", "event_seq", "item_events", "event_keys", "users", "erased",
                      "item_images", "user_index_from")}
        self.snapshot_prefix = f"{namespace}:snapshot:"
        self.snapshot_entries_prefix = f"{namespace}:snapshot-entries:"
        self.recommendation_prefix = f"{namespace}:recommendation:"
        self.user_events_prefix = f"{namespace}:user-events:"
        self._append = self.client.register_script(APPEND)
        self._user_index_from = int(self.client.register_script(INDEX_FROM)(
            keys=[self.keys["user_index_from"], self.keys["event_seq"]]))

    def _add(self, seq_key: str, log_key: str, key_set: str, entries: list[dict], keys: list[str | None],
             owners: list[str | None] | None = None) -> int:
        args = []
        for entry, key, owner in zip(entries, keys, owners or [None] * len(entries)):
            args += ["" if key is None else str(key), json.dumps(entry), owner or ""]
        last = int(self._append(keys=[self.keys[seq_key], self.keys[log_key], self.keys[key_set], self.user_events_prefix],
                                args=args))
        self._replicated()
        return last

    def _replicated(self) -> None:
        """With replicas attached, wait until one has the write (a primary's crash keeps it)."""
        replicas = self.client.info("replication").get("connected_slaves", 0)
        if replicas:
            self.client.wait(1, 1000)

    def put_item(self, change: ItemChange) -> int:
        return self.put_items([change])

    def put_items(self, changes: list[ItemChange]) -> int:
        return self._add("item_seq", "item_log", "item_keys", [{
            "item_id": c.item_id, "hidden": c.hidden, "record": c.record,
            "text_vec": _blob(c.text_vec), "text_mask": c.text_mask, "image_vec": _blob(c.image_vec),
            "image_mask": c.image_mask, "embedding": _blob(c.embedding), "model_version": c.model_version,
            "content_vec": _blob(c.content_vec),
        } for c in changes], [None] * len(changes))

    def hide(self, item_id: str) -> int:
        return self.put_item(ItemChange(0, item_id, hidden=True))

    def _range(self, log_key: str, after: int) -> list[tuple[int, dict]]:
        rows = self.client.xrange(self.keys[log_key], min=f"({after}-1" if after else "-", max="+")
        return [(int(key.split(b"-")[0]), json.loads(fields[b"entry"])) for key, fields in rows]

    def item_changes(self, after: int) -> list[ItemChange]:
        return [
            ItemChange(seq, e["item_id"], e["hidden"], e["record"], _vector(e["text_vec"]), e["text_mask"],
                       _vector(e["image_vec"]), e["image_mask"], _vector(e["embedding"]), e["model_version"],
                       _vector(e.get("content_vec")))
            for seq, e in self._range("item_log", after)
        ]

    def add_events(self, events: list[StoredEvent]) -> int:
        entries = [{k: v for k, v in event._asdict().items() if k != "key"} for event in events]
        return self._add("event_seq", "item_events", "event_keys", entries, [event.key for event in events],
                         [event.user_id for event in events])

    def events(self, after: int) -> list[tuple[int, StoredEvent]]:
        return [(seq, StoredEvent(**e)) for seq, e in self._range("item_events", after)]

    def event_rows(self, upto: int) -> list[tuple]:
        rows = self.client.xrange(self.keys["item_events"], min="-", max=f"{upto}-1") if upto else []
        return [(e.get("user_id"), e["item_id"], e.get("event_type", "rating"), e["ts"], e["value"], e.get("recommendation_id"))
                for e in (json.loads(fields[b"entry"]) for _, fields in rows)]

    def attributed_events(self, upto: int, event_types: tuple[str, ...]) -> list[tuple[str, str, int | None]]:
        rows = self.client.xrange(self.keys["item_events"], min="-", max=f"{upto}-1") if upto else []
        entries = (json.loads(fields[b"entry"]) for _, fields in rows)
        return [(e["item_id"], e.get("event_type", "rating"), e.get("position")) for e in entries
                if e.get("recommendation_id") and e.get("event_type", "rating") in event_types]

    def event_page(self, after: int, limit: int) -> list[tuple[int, str, str, int]]:
        rows = self.client.xrange(self.keys["item_events"], min=f"({after}-1" if after else "-", max="+", count=limit)
        page = []
        for key, fields in rows:
            entry = json.loads(fields[b"entry"])
            page.append((int(key.split(b"-")[0]), entry["item_id"], entry.get("event_type", "rating"), entry["ts"]))
        return page

    def latest(self) -> tuple[int, int]:
        items, events = self.client.mget(self.keys["item_seq"], self.keys["event_seq"])
        return int(items or 0), int(events or 0)

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        self.client.set(self.snapshot_prefix + name, seq.to_bytes(8, "big") + payload)
        self._replicated()

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None:
        value = self.client.get(self.snapshot_prefix + name)
        return None if value is None else (int.from_bytes(value[:8], "big"), value[8:])

    def save_snapshot_entries(self, name: str, seq: int, header: bytes, changed: dict[str, bytes],
                              removed: Collection[str] = (), whole: bool = False) -> None:
        """The header under the snapshot's key, the entries in a hash beside it, in one MULTI/EXEC."""
        entries = self.snapshot_entries_prefix + name
        with self.client.pipeline(transaction=True) as batch:
            if whole:
                batch.delete(entries)
            if removed:
                batch.hdel(entries, *removed)
            if changed:
                batch.hset(entries, mapping=changed)
            batch.set(self.snapshot_prefix + name, seq.to_bytes(8, "big") + header)
            batch.execute()
        self._replicated()

    def load_snapshot_entries(self, name: str) -> tuple[int, bytes, dict[str, bytes]] | None:
        with self.client.pipeline(transaction=True) as batch:
            header, entries = batch.get(self.snapshot_prefix + name).hgetall(self.snapshot_entries_prefix + name).execute()
        if header is None:
            return None
        return int.from_bytes(header[:8], "big"), header[8:], {k.decode(): v for k, v in entries.items()}

    def put_images(self, images: dict[str, bytes]) -> None:
        """One hash of item id -> image bytes."""
        if images:
            self.client.hset(self.keys["item_images"], mapping=images)
            self._replicated()

    def item_image(self, item_id: str) -> bytes | None:
        return self.client.hget(self.keys["item_images"], item_id)

    def image_ids(self) -> set[str]:
        return {item_id.decode() for item_id in self.client.hkeys(self.keys["item_images"])}

    def put_users(self, users: dict[str, dict[str, str]]) -> None:
        if users:
            self.client.hset(self.keys["users"], mapping={u: json.dumps(a) for u, a in users.items()})
            self._replicated()

    def users(self) -> dict[str, dict[str, str]]:
        return {u.decode(): json.loads(a) for u, a in self.client.hgetall(self.keys["users"]).items()}

    def erased_users(self) -> set[str]:
        return {u.decode() for u in self.client.smembers(self.keys["erased"])}

    def erase_user(self, user_id: str) -> int:
        """Delete the entries the user's list names, and those of the stream's part that came before
        the lists, found by a scan of that part only."""
        listed = self.user_events_prefix + user_id
        seqs = self.client.lrange(listed, 0, -1)
        doomed = [f"{int(seq)}-1" for seq in seqs]
        if self._user_index_from:
            doomed += [key for key, fields in self.client.xrange(self.keys["item_events"], max=f"{self._user_index_from}-1")
                       if json.loads(fields[b"entry"]).get("user_id") == user_id]
        issued = [self.recommendation_prefix + r.decode() for r in self.client.smembers(self.recommendation_prefix + "by-user:" + user_id)]
        with self.client.pipeline(transaction=True) as batch:
            if doomed:
                batch.xdel(self.keys["item_events"], *doomed)
            batch.delete(*issued, self.recommendation_prefix + "by-user:" + user_id)
            batch.ltrim(listed, len(seqs), -1)  # an event appended since the read keeps its place in the list
            batch.hdel(self.keys["users"], user_id)
            batch.sadd(self.keys["erased"], user_id)
            results = batch.execute()
        self._replicated()
        return int(results[0]) if doomed else 0

    def put_recommendations(self, issued: list[IssuedRecommendation], ttl_s: float) -> None:
        """One key per recommendation, expiring after `ttl_s` (Redis drops it itself), and a set of
        each user's, so erasing the user finds them."""
        ttl_ms = max(1, int(ttl_s * 1000))
        with self.client.pipeline(transaction=False) as pipe:
            for r in issued:
                pipe.set(self.recommendation_prefix + r.recommendation_id, json.dumps([r.user_id, r.item_ids, r.counted, r.ts]), px=ttl_ms)
                pipe.sadd(self.recommendation_prefix + "by-user:" + r.user_id, r.recommendation_id)
                pipe.pexpire(self.recommendation_prefix + "by-user:" + r.user_id, ttl_ms)
            pipe.execute()

    def recommendation(self, recommendation_id: str) -> IssuedRecommendation | None:
        value = self.client.get(self.recommendation_prefix + recommendation_id)
        if value is None:
            return None
        user_id, item_ids, counted, ts = json.loads(value)
        return IssuedRecommendation(recommendation_id, user_id, item_ids, counted, ts)

    def close(self) -> None:
        self.client.close()
