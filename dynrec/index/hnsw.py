"""Approximate inner-product search for large catalogues: an HNSW graph from usearch.

usearch (Unum) is maintained, ships manylinux wheels with no system dependencies, and inserts
single vectors into a built graph in well under a millisecond, so an item can be added, updated
or hidden without a rebuild. Item ids map to integer keys here. An update inserts the new vector
under a fresh key and retires the old key, and a removal only retires it: retired nodes stay in
the graph as stepping stones and are skipped in results. (usearch's own removal makes the next
insert ~50x slower at 1M items.) `compact` rebuilds without them once they outnumber live items.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnxruntime  # noqa: F401  (before usearch: see below)
from usearch.index import Index

from dynrec.index.base import IndexConfig, as_matrix, read_meta, write_version
from dynrec.onnx.session import replica_threads

GRAPH_FILE = "graph.usearch"

# onnxruntime is imported above only for its order: in a process without torch, loading usearch's
# extension first makes onnxruntime's own import crash with a segfault inside libstdc++ (usearch
# 2.26, onnxruntime 1.31), and a Ranker imports both.


class HnswIndex:
    kind = "hnsw"

    def __init__(self, dim: int, config: IndexConfig | None = None, model_version: str = ""):
        self.dim = dim
        self.config = replace(config) if config else IndexConfig()  # its own copy: search settings change live
        self.model_version = model_version
        self.version = 0
        self._graph = self._new_graph()
        self._keys: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._next_key = 0
        self._retired = 0  # graph nodes no id maps to any more
        self._lock = threading.RLock()

    def _new_graph(self) -> Index:
        return Index(
            ndim=self.dim,
            metric="ip",
            dtype="f32",
            connectivity=self.config.connectivity,
            expansion_add=self.config.expansion_add,
            expansion_search=self.config.expansion_search,
        )

    @property
    def expansion_search(self) -> int:
        """The search's candidate list: recall against latency, adjustable on a live index (and saved)."""
        return self._graph.expansion_search

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        with self._lock:
            self._graph.expansion_search = self.config.expansion_search = int(value)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._keys

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def upsert(self, item_ids: Iterable[str], vectors: np.ndarray) -> None:
        item_ids = [str(i) for i in item_ids]
        matrix = as_matrix(vectors, self.dim, len(item_ids))
        if len(set(item_ids)) != len(item_ids):  # the last vector given for an id wins
            last = {item_id: row for row, item_id in enumerate(item_ids)}
            item_ids, matrix = list(last), matrix[list(last.values())]
        with self._lock:
            keys = np.empty(len(item_ids), dtype=np.uint64)
            for position, item_id in enumerate(item_ids):
                old = self._keys.get(item_id)
                if old is not None:
                    del self._ids[old]
                    self._retired += 1
                key = self._keys[item_id] = self._next_key
                self._ids[key] = item_id
                self._next_key += 1
                keys[position] = key
            if len(keys):
                threads = (self.config.threads or replica_threads()) if len(keys) > 1 else 1
                self._graph.add(keys, matrix, threads=threads)
            self.version += 1
            if self._retired > max(len(self._keys), 1000):
                self.compact()

    def remove(self, item_ids: Iterable[str]) -> int:
        removed = 0
        with self._lock:
            for item_id in item_ids:
                key = self._keys.pop(str(item_id), None)
                if key is None:
                    continue
                del self._ids[key]
                self._retired += 1
                removed += 1
            if removed:
                self.version += 1
        return removed

    def compact(self) -> None:
        """Rebuild the graph from the live items only (drops retired nodes)."""
        with self._lock:
            live = list(self._keys.items())
            vectors = np.asarray(self._graph.get(np.array([k for _, k in live], dtype=np.uint64)), dtype=np.float32)
            graph = self._new_graph()
            if live:
                graph.add(np.arange(len(live), dtype=np.uint64), vectors.reshape(len(live), self.dim),
                          threads=self.config.threads or replica_threads())
            self._graph = graph
            self._keys = {item_id: i for i, (item_id, _) in enumerate(live)}
            self._ids = {i: item_id for item_id, i in self._keys.items()}
            self._next_key, self._retired = len(live), 0

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors([item_id])[0]

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        with self._lock:
            if not item_ids:
                return np.zeros((0, self.dim), np.float32)
            keys = np.array([self._keys[i] for i in item_ids], dtype=np.uint64)
            return np.asarray(self._graph.get(keys), dtype=np.float32).reshape(len(item_ids), self.dim)

    def search(
        self, query: np.ndarray, k: int, exclude: Iterable[str] = (), accept: Callable[[str], bool] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """Approximately the top-k ids by inner product, best first; see `ExactIndex.search`."""
        query = as_matrix(query, self.dim, 1)[0]
        excluded = set(exclude)
        with self._lock:
            want = min(k, len(self._keys))
            nodes = len(self._graph)  # live and retired: retired ones take result slots too
            # excluded ids (a user's seen items: thousands for some) rarely all sit at the top, so
            # start with a modest margin and widen only when filtering leaves too few
            fetch = want + min(len(excluded), max(32, 2 * want))
            while True:
                fetch = min(nodes, fetch)
                # one query on the calling thread: usearch's default (threads=0) hands it to a pool of
                # every core, which took 0.58 ms against 0.15 ms (20k items, 2 cores) while another
                # process kept the cores busy, as a loaded app does; idle, both took 0.15-0.22 ms
                matches = self._graph.search(query, fetch, threads=1) if fetch else None
                ids, scores = [], []
                if matches is not None:
                    for key, distance in zip(matches.keys, matches.distances):
                        item_id = self._ids.get(int(key))
                        if item_id is None or item_id in excluded or (accept is not None and not accept(item_id)):
                            continue
                        ids.append(item_id)
                        scores.append(1.0 - float(distance))  # usearch "ip" distance is 1 - dot
                        if len(ids) == want:
                            break
                if len(ids) == want:
                    return ids, np.asarray(scores, dtype=np.float32)
                if fetch >= nodes:  # the graph's walk missed nodes it cannot reach: scan them all
                    return self._scan(query, want, excluded, accept)
                fetch = max(2 * fetch, fetch + self._retired)

    def _scan(self, query: np.ndarray, want: int, excluded: set[str], accept) -> tuple[list[str], np.ndarray]:
        """Exact top-`want` over every live item: only when a search asks for nearly everything."""
        live = [(item_id, key) for item_id, key in self._keys.items()
                if item_id not in excluded and (accept is None or accept(item_id))]
        if not live:
            return [], np.zeros(0, np.float32)
        vectors = np.asarray(self._graph.get(np.array([key for _, key in live], dtype=np.uint64)), np.float32)
        scores = vectors.reshape(len(live), self.dim) @ query
        order = np.argsort(-scores, kind="stable")[:want]
        return [live[r][0] for r in order], scores[order].astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        with self._lock:
            meta = {
                "kind": self.kind,
                "dim": self.dim,
                "version": self.version,
                "model_version": self.model_version,
                "config": asdict(self.config),
                "next_key": self._next_key,
                "retired": self._retired,
            }
            keys = dict(self._keys)
            graph = self._graph.copy()

        def payload(folder: Path) -> None:
            graph.save(str(folder / GRAPH_FILE))
            (folder / "keys.json").write_text(json.dumps(keys))

        return write_version(directory, {**meta, "count": len(keys)}, payload)

    @classmethod
    def load(cls, directory: str | Path) -> "HnswIndex":
        folder, meta = read_meta(directory)
        index = cls(meta["dim"], IndexConfig(**meta["config"]), meta["model_version"])
        index._graph.load(str(folder / GRAPH_FILE))
        index._keys = json.loads((folder / "keys.json").read_text())
        index._ids = {key: item_id for item_id, key in index._keys.items()}
        index._next_key = meta["next_key"]
        index._retired = meta.get("retired", 0)
        index.version = meta["version"]
        return index
