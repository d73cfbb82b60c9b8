"""The cluster state store: Redis streams for the two logs, plain keys for snapshots.

Each append runs as one Lua script: it takes the next sequence number from a counter and adds
the entry to its stream under that number, so every replica sees one order. Durability is the
server's: run Redis with `appendonly yes` and `appendfsync always` (as the tests and k8s/ do), so
an acknowledged write is on disk; `WAIT` is issued when replicas are attached. Snapshots are
single `SET`s: atomic by construction.
"""

from __future__ import annotations

import json

import numpy as np
import redis

from dynrec.state.base import ItemChange, StoredEvent

APPEND = """
local seq = redis.call('INCR', KEYS[1])
for i = 1, #ARGV, 2 do
  if i > 1 then seq = redis.call('INCR', KEYS[1]) end
  redis.call('XADD', KEYS[2], seq .. '-1', 'entry', ARGV[i + 1])
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
        self.keys = {name: f"{namespace}:{name}" for name in ("item_seq", "item_log", "event_seq", "item_events")}
        self.snapshot_prefix = f"{namespace}:snapshot:"
        self._append = self.client.register_script(APPEND)

    def _add(self, seq_key: str, log_key: str, entries: list[dict]) -> int:
        args = []
        for entry in entries:
            args += ["entry", json.dumps(entry)]
        last = int(self._append(keys=[self.keys[seq_key], self.keys[log_key]], args=args))
        self._replicated()
        return last

    def _replicated(self) -> None:
        """With replicas attached, wait until one has the write (a primary's crash keeps it)."""
        replicas = self.client.info("replication").get("connected_slaves", 0)
        if replicas:
            self.client.wait(1, 1000)

    def put_item(self, change: ItemChange) -> int:
        return self._add("item_seq", "item_log", [{
            "item_id": change.item_id, "hidden": change.hidden, "record": change.record,
            "text_vec": _blob(change.text_vec), "text_mask": change.text_mask, "image_vec": _blob(change.image_vec),
            "image_mask": change.image_mask, "embedding": _blob(change.embedding), "model_version": change.model_version,
        }])

    def hide(self, item_id: str) -> int:
        return self.put_item(ItemChange(0, item_id, hidden=True))

    def _range(self, log_key: str, after: int) -> list[tuple[int, dict]]:
        rows = self.client.xrange(self.keys[log_key], min=f"({after}-1" if after else "-", max="+")
        return [(int(key.split(b"-")[0]), json.loads(fields[b"entry"])) for key, fields in rows]

    def item_changes(self, after: int) -> list[ItemChange]:
        return [
            ItemChange(seq, e["item_id"], e["hidden"], e["record"], _vector(e["text_vec"]), e["text_mask"],
                       _vector(e["image_vec"]), e["image_mask"], _vector(e["embedding"]), e["model_version"])
            for seq, e in self._range("item_log", after)
        ]

    def add_events(self, events: list[StoredEvent]) -> int:
        return self._add("event_seq", "item_events", [event._asdict() for event in events])

    def events(self, after: int) -> list[tuple[int, StoredEvent]]:
        return [(seq, StoredEvent(**e)) for seq, e in self._range("item_events", after)]

    def latest(self) -> tuple[int, int]:
        items, events = self.client.mget(self.keys["item_seq"], self.keys["event_seq"])
        return int(items or 0), int(events or 0)

    def save_snapshot(self, name: str, seq: int, payload: bytes) -> None:
        self.client.set(self.snapshot_prefix + name, seq.to_bytes(8, "big") + payload)
        self._replicated()

    def load_snapshot(self, name: str) -> tuple[int, bytes] | None:
        value = self.client.get(self.snapshot_prefix + name)
        return None if value is None else (int.from_bytes(value[:8], "big"), value[8:])

    def erase_user(self, user_id: str) -> int:
        """Scan the event stream and delete the user's entries (erasure is rare; the scan is O(log))."""
        doomed = [key for key, fields in self.client.xrange(self.keys["item_events"])
                  if json.loads(fields[b"entry"]).get("user_id") == user_id]
        if doomed:
            self.client.xdel(self.keys["item_events"], *doomed)
        self._replicated()
        return len(doomed)

    def close(self) -> None:
        self.client.close()
