"""Exact inner-product search: one matrix-vector product and an argpartition.

Rows live in one preallocated float32 matrix that grows by doubling; removing an item moves the
last row into its slot, so every mutation costs O(dim) and the live rows stay contiguous.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dynrec.index.base import as_matrix, read_meta, write_version


class ExactIndex:
    kind = "exact"

    def __init__(self, dim: int, model_version: str = "", capacity: int = 1024):
        self.dim = dim
        self.model_version = model_version
        self.version = 0
        self._vectors = np.zeros((max(capacity, 1), dim), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._rows

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def upsert(self, item_ids: Iterable[str], vectors: np.ndarray) -> None:
        item_ids = [str(i) for i in item_ids]
        matrix = as_matrix(vectors, self.dim, len(item_ids))
        with self._lock:
            needed = len(self._ids) + sum(1 for i in set(item_ids) if i not in self._rows)
            if needed > len(self._vectors):
                grown = np.zeros((max(needed, 2 * len(self._vectors)), self.dim), dtype=np.float32)
                grown[: len(self._ids)] = self._vectors[: len(self._ids)]
                self._vectors = grown
            for item_id, vector in zip(item_ids, matrix):
                row = self._rows.get(item_id)
                if row is None:
                    row = self._rows[item_id] = len(self._ids)
                    self._ids.append(item_id)
                self._vectors[row] = vector
            self.version += 1

    def remove(self, item_ids: Iterable[str]) -> int:
        """Drop the given items (unknown ids are ignored); returns how many were removed."""
        removed = 0
        with self._lock:
            for item_id in item_ids:
                row = self._rows.pop(str(item_id), None)
                if row is None:
                    continue
                last = len(self._ids) - 1
                if row != last:
                    moved = self._ids[last]
                    self._vectors[row] = self._vectors[last]
                    self._ids[row] = moved
                    self._rows[moved] = row
                self._ids.pop()
                removed += 1
            if removed:
                self.version += 1
        return removed

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors([item_id])[0]

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        with self._lock:
            return self._vectors[[self._rows[i] for i in item_ids]]

    def search(
        self, query: np.ndarray, k: int, exclude: Iterable[str] = (), accept: Callable[[str], bool] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """The top-k item ids by inner product with `query` and their scores, best first.

        `exclude` ids are never returned; `accept`, if given, must hold for every returned id.
        """
        query = as_matrix(query, self.dim, 1)[0]
        with self._lock:
            n = len(self._ids)
            scores = self._vectors[:n] @ query
            excluded = [row for row in map(self._rows.get, exclude) if row is not None]
            scores[excluded] = -np.inf  # one vectorised write: a user's seen items run to thousands
            ids = self._ids
            want = min(k, n)
            found: list[int] = []
            fetch = want
            while want and len(found) < want:
                fetch = min(n, max(fetch, 2 * want))
                top = np.argpartition(-scores, fetch - 1)[:fetch] if fetch < n else np.arange(n)
                top = top[np.lexsort((top, -scores[top]))]
                allowed = top[scores[top] > -np.inf].tolist()
                found = (allowed if accept is None else [r for r in allowed if accept(ids[r])])[:want]
                if fetch == n:
                    break
                fetch *= 2
            return [ids[r] for r in found], scores[found].astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        with self._lock:
            n = len(self._ids)
            vectors, ids = self._vectors[:n].copy(), list(self._ids)
            meta = {"kind": self.kind, "dim": self.dim, "version": self.version, "model_version": self.model_version}

        def payload(folder: Path) -> None:
            np.save(folder / "vectors.npy", vectors)
            (folder / "ids.json").write_text(json.dumps(ids))

        return write_version(directory, {**meta, "count": n}, payload)

    @classmethod
    def load(cls, directory: str | Path) -> "ExactIndex":
        folder, meta = read_meta(directory)
        index = cls(meta["dim"], meta["model_version"], capacity=meta["count"])
        ids = json.loads((folder / "ids.json").read_text())
        index.upsert(ids, np.load(folder / "vectors.npy"))
        index.version = meta["version"]
        return index
