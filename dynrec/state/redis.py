"""The cluster state store: Redis streams for the two logs, a hash for users, plain keys for snapshots.

Each append runs as one Lua script: it takes the next sequence number from a counter and adds
the entry to its stream under that number, so every replica sees one order; an entry with an
idempotency key (imports) is added only if the key is new to the log's key set. Durability is the
server's: run Redis with `appendonly yes` and `appendfsync always` (as the tests and k8s/ do), so
an acknowledged write is on disk; `WAIT` is issued when replicas are attached. Snapshots are
single `SET`s: atomic by construction.
"""

from __future__ import annotations

import json

import numpy as np
import redis

from dynrec.state.base import IssuedRecommendation, ItemChange, StoredEvent

APPEND = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
for i = 1, #ARGV, 2 do
  if ARGV[i] == '' or redis.call('SADD', KEYS[3], ARGV[i]) == 1 then
    seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], seq .. '-1', 'entry', ARGV[i + 1])
  end
end
return seq
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
                      "item_images")}
        self.snapshot_prefix = f"{namespace}:snapshot:"
        self.recommendation_prefix = f"{namespace}:recommendation:"
        self._append = self.client.register_script(APPEND)

    def _add(self, seq_key: str, log_key: str, key_set: str, entries: list[dict], keys: list[str | None]) -> int:
        args = []
        for entry, key in zip(entries, keys):
            args += ["" if key is None else str(key), json.dumps(entry)]
        last = int(self._append(keys=[self.keys[seq_key], self.keys[log_key], self.keys[key_set]], args=args))
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
        return self._add("event_seq", "item_events", "event_keys", entries, [event.key for event in events])

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
        """Scan the event stream and delete the user's entries (erasure is rare; the scan is O(log))."""
        doomed = [key for key, fields in self.client.xrange(self.keys["item_events"])
                  if json.loads(fields[b"entry"]).get("user_id") == user_id]
        issued = [self.recommendation_prefix + r.decode() for r in self.client.smembers(self.recommendation_prefix + "by-user:" + user_id)]
        with self.client.pipeline(transaction=True) as batch:
            if doomed:
                batch.xdel(self.keys["item_events"], *doomed)
            batch.delete(*issued, self.recommendation_prefix + "by-user:" + user_id)
            batch.hdel(self.keys["users"], user_id)
            batch.sadd(self.keys["erased"], user_id)
            batch.execute()
        self._replicated()
        return len(doomed)

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
