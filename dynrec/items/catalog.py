"""A replica's view of the catalogue: item metadata, content vectors, behaviour, and the indexes.

Built from the state store (items, events, bandit feedback) and the catalogue embeddings
(Parquet), so a replica on any node that reaches the store builds the same state; then kept
current by replaying the store's logs: upserts and hides apply at once; behaviour events update the statistics, and
the touched items are re-fused (new embedding, same content) every `behaviour_refresh_s` by a
background thread, off the request path.

Three indexes: `index` holds the full embeddings (ID, content and behaviour) that users are
matched against; `content_index` holds every item's content vector (its text embedding, joined
with the fusion model's view of it as a brand-new item: no ID, no behaviour), so "similar items"
compares what items are about, whatever their popularity, and a new item is comparable at once; `fresh_index` holds the content view of items added while serving, the pool new
items are recommended from before they have any behaviour.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dynrec.artifacts.prepare import Artifacts, vectors
from dynrec.config import DynrecConfig
from dynrec.data import Interactions
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.encoders.behaviour import BehaviourFeatures
from dynrec.encoders.image import ImageEncoder
from dynrec.encoders.text import TextEncoder
from dynrec.index import ExactIndex, fitted_index, make_index
from dynrec.memory import release_unused_memory
from dynrec.ranking.bandit import FEEDBACK_TYPES, ClickBandit
from dynrec.ranking.prior import AttributePrior
from dynrec.state import ItemChange, StateStore, StoredEvent
from dynrec.state.imports import stored_dataset, vector_carrying

if TYPE_CHECKING:  # torch: loaded by whoever builds the runtime, not by importing the ranker
    from dynrec.models.runtime import ModelRuntime



@dataclass
class ItemMeta:
    item_id: str
    title: str
    categories: list[str]
    created_at: int  # unix seconds, -1 unknown
    attributes: dict[str, str]
    text: str = ""


class Catalog:
    def __init__(
        self,
        config: DynrecConfig,
        artifacts: Artifacts,
        runtime: ModelRuntime,
        trained_ids: list[str],
        store: StateStore,
    ):
        self.config, self.runtime, self.store = config, runtime, store
        self.model_version = runtime.fingerprint
        dataset, built = stored_dataset(store, config.source.label)
        items = dataset.items
        table = pq.read_table(artifacts.embeddings_path)
        position = {item_id: i for i, item_id in enumerate(table["item_id"].to_pylist())}
        ids = items["item_id"].to_pylist()
        changes = [c for c in store.item_changes(0) if c.seq <= built[0]]
        carried = vector_carrying(changes)  # upserted through the API: their vectors are in the log
        unembedded = [i for i in ids if i not in position and i not in carried]
        if unembedded:  # imported after the embeddings were made: a restart prepares them (ensure_artifacts)
            raise RuntimeError(f"{len(unembedded):,} stored items, e.g. {unembedded[:3]}, have no embeddings in "
                               f"{artifacts.embeddings_path}; restart the replica or run `dynrec encode`")
        self.ids: list[str] = list(ids)
        self.row: dict[str, int] = {item_id: i for i, item_id in enumerate(ids)}
        self.text, self.image = np.zeros((len(ids), TextEncoder.dim), np.float32), np.zeros((len(ids), ImageEncoder.dim), np.float32)
        self.text_mask, self.image_mask = np.zeros(len(ids), bool), np.zeros(len(ids), bool)
        embeddings = np.zeros((len(ids), runtime.dim), np.float32)
        rows = np.array([position.get(i, -1) for i in ids], dtype=np.int64)
        listed = rows >= 0
        self.text[listed], self.image[listed] = vectors(table["text_embedding"])[rows[listed]], vectors(table["image_embedding"])[rows[listed]]
        self.text_mask[listed] = np.asarray(table["text_mask"].to_pylist(), bool)[rows[listed]]
        self.image_mask[listed] = np.asarray(table["image_mask"].to_pylist(), bool)[rows[listed]]
        embeddings[listed] = vectors(table["embedding"])[rows[listed]]
        for row in np.flatnonzero(~listed):
            change = carried[ids[row]]
            self.text[row], self.text_mask[row], embeddings[row] = change.text_vec, change.text_mask, change.embedding
            self.image[row], self.image_mask[row] = change.image_vec, change.image_mask
        trained = {item_id: i for i, item_id in enumerate(trained_ids)}
        self.model_index = np.array([trained.get(i, -1) for i in ids], dtype=np.int64)
        created = items["created_at"].cast("int64").fill_null(-1).to_numpy()
        self.meta = [
            ItemMeta(r["item_id"], r["title"] or r["item_id"], list(r["categories"] or []), int(c),
                     dict(r["attributes"] or []), r["text"] or "")
            for r, c in zip(items.select(["item_id", "title", "categories", "attributes", "text"]).to_pylist(), created)
        ]
        interactions = Interactions.from_dataset(dataset, exclude_types=NOT_INTERACTIONS)
        self.prior = AttributePrior.fit(dataset.users, interactions, config.cold_start)
        self.behaviour = BehaviourFeatures.from_events(
            interactions.items, interactions.timestamps, interactions.values, interactions.n_items, created, config.behaviour
        )
        self.now = int(interactions.timestamps.max()) + 1 if len(interactions.timestamps) else int(time.time())
        self.hidden: set[str] = set()
        self._item_changes = 0  # counts item adds, updates and hides: what `created_since` keeps depends on them
        self._young: tuple[tuple[int, int], list[str]] = ((-1, -1), [])
        self.hidden_vectors: dict[str, np.ndarray] = {}  # hidden items still appear in user histories
        self.index = make_index(embeddings.shape[1], len(ids), config.index, model_version=self.model_version)
        self.index.upsert(ids, embeddings)
        sample = np.random.default_rng(0).choice(len(ids), min(len(ids), 2048), replace=False)
        self.score_sample = embeddings[np.sort(sample)]  # to standardise a user's scores without scoring every item
        content_dim = TextEncoder.dim + embeddings.shape[1]
        self.content_index = make_index(content_dim, len(ids), config.index, model_version=self.model_version)
        for start in range(0, len(ids), 4096):
            rows = np.arange(start, min(start + 4096, len(ids)))
            self.content_index.upsert([ids[r] for r in rows], self.content_view(rows))
        self.fresh_index = ExactIndex(content_dim, model_version=self.model_version)
        self.touched: set[int] = set()
        self.bandit = ClickBandit(config.exploration)
        feedback = dataset.events.filter(pc.and_(pc.is_valid(dataset.events["recommendation_id"]),
                                                 pc.is_in(dataset.events["event_type"], value_set=pa.array(FEEDBACK_TYPES))))
        for item_id, event_type in zip(feedback["item_id"].to_pylist(), feedback["event_type"].to_pylist()):
            self.bandit.record(item_id, event_type)
        self._seen = built
        self._checked = 0.0
        self._popularity_at = time.monotonic()
        self._lock = threading.RLock()
        self._refresh_popularity()
        self._apply_logged_state(changes)
        self.sync(force=True)
        self._refresher: threading.Thread | None = None
        release_unused_memory()  # the dataset and embedding tables read above

    def start_refreshing(self) -> None:
        """Re-fuse behaviour-touched items every `behaviour_refresh_s` in a daemon thread."""
        if self._refresher is None:
            self._refresher = threading.Thread(target=self._refresh_loop, name="catalog-refresh", daemon=True)
            self._refresher.start()

    def _refresh_loop(self) -> None:
        while True:
            time.sleep(self.config.serving.behaviour_refresh_s)
            self.sync(force=True)
            self.refresh_behaviour()

    @property
    def dim(self) -> int:
        return self.index.dim

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.row

    def visible(self, item_id: str) -> bool:
        return item_id in self.row and item_id not in self.hidden

    def item(self, item_id: str) -> ItemMeta:
        return self.meta[self.row[item_id]]

    def vector(self, item_id: str) -> np.ndarray:
        return self.vectors([item_id])[0]

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        """The items' current fused embeddings, in one index read when all are visible (hidden
        items keep theirs, for user histories; an unknown id raises KeyError)."""
        try:
            return self.index.vectors(item_ids)
        except KeyError:
            return np.stack([self._vector_or_hidden(i) for i in item_ids])

    def _vector_or_hidden(self, item_id: str) -> np.ndarray:
        try:
            return self.index.vector(item_id)
        except KeyError:
            return self.hidden_vectors[item_id]

    def created_since(self, cutoff: float) -> list[str]:
        """Visible items created at or after `cutoff` (unix seconds): what exploration may show.
        Every request asks, so the answer is kept per whole second of `cutoff` until the next item
        change (a shared list: callers must not change it). Creation times are whole seconds, so
        rounding `cutoff` up changes no answer."""
        second = math.ceil(cutoff)
        key = (second, self._item_changes)
        if self._young[0] != key:
            rows = np.flatnonzero(self.behaviour.created_at >= second)
            self._young = (key, [self.ids[r] for r in rows
                                 if r < len(self.ids) and self.ids[r] in self.row and self.ids[r] not in self.hidden])
        return self._young[1]

    def shortfall(self, returned: int, asked: int) -> str | None:
        """Why a ranking returned fewer items than asked, in words for the API's `note`."""
        if returned >= asked:
            return None
        if len(self.row) == len(self.hidden):
            return "the catalogue is empty: add items with PUT /v1/items/{item_id} or `dynrec import`"
        return "fewer items than asked passed the filters and exclusions"

    def is_new(self, item_id: str) -> bool:
        """No trained ID embedding: the item is embedded from its content alone."""
        return self.model_index[self.row[item_id]] < 0

    def sync(self, force: bool = False) -> bool:
        """Apply the store's new changes; returns whether anything changed.

        With the default `sync_interval_s` of 0 every call checks the store (two indexed reads),
        so a request sees every write acknowledged before it began; concurrent callers wait for
        a sync in progress rather than read a half-applied view.
        """
        clock = time.monotonic()
        if not force and clock - self._checked < self.config.serving.sync_interval_s:
            return False
        with self._lock:
            self._checked = clock
            latest = self.store.latest()
            changed = latest != self._seen
            if latest[0] > self._seen[0]:
                for change in self.store.item_changes(self._seen[0]):
                    self._apply(change)
            if latest[1] > self._seen[1]:
                for _, event in self.store.events(self._seen[1]):
                    self._apply_event(event)
            self._seen = latest
            return changed

    def _apply_logged_state(self, changes: list[ItemChange]) -> None:
        """What the item log adds to the items built from its records: items upserted through the
        API (their newest upsert, with its vectors) and hides (an item whose last change hides it).
        Replaying every upsert instead re-ran fusion once per item: 4 s of a replica's start on ML-1M."""
        for change in vector_carrying(changes).values():
            self._apply(change)
        last = {c.item_id: c for c in changes}
        for change in last.values():
            if change.hidden:
                self._apply(change)

    def _apply_event(self, event: StoredEvent) -> None:
        """Attributed impressions and clicks feed the bandit; every event but an impression (a
        showing, not an interaction) feeds the item's behaviour statistics."""
        row = self.row.get(event.item_id)
        if row is None:
            return
        if event.recommendation_id and event.event_type in FEEDBACK_TYPES:
            self.bandit.record(event.item_id, event.event_type)
        if event.event_type not in NOT_INTERACTIONS:
            self.behaviour.update(row, event.ts, event.value)
            self.touched.add(row)
            self.now = max(self.now, int(event.ts) + 1)

    def _apply(self, change: ItemChange) -> None:
        try:
            self._apply_item(change)
        finally:
            self._item_changes += 1

    def _apply_item(self, change: ItemChange) -> None:
        if change.hidden:
            if change.item_id in self.row and change.item_id not in self.hidden:
                self.hidden.add(change.item_id)
                self.hidden_vectors[change.item_id] = self.index.vector(change.item_id)
                for index in (self.index, self.content_index, self.fresh_index):
                    index.remove([change.item_id])
            return
        record = change.record or {}
        created = -1 if record.get("created_at") is None else int(record["created_at"])
        row = self.row.get(change.item_id)
        if row is None:  # grow every per-item array first; readers find the id only once it is complete
            row = self._grow([ItemMeta(change.item_id, change.item_id, [], created, {})])[0]
        self.meta[row] = ItemMeta(
            change.item_id, record.get("title") or change.item_id, list(record.get("categories") or []),
            created, dict(record.get("attributes") or {}), record.get("text") or "",
        )
        if change.text_vec is not None:
            self.text[row], self.text_mask[row] = change.text_vec, change.text_mask
        if change.image_vec is not None:
            self.image[row], self.image_mask[row] = change.image_vec, change.image_mask
        content = self.content_view(np.array([row]))
        self.row[change.item_id] = row
        if change.embedding is not None:
            self.index.upsert([change.item_id], change.embedding[None, :])
        self.content_index.upsert([change.item_id], content)
        if self.model_index[row] < 0:
            self.fresh_index.upsert([change.item_id], content)
        self.hidden.discard(change.item_id)
        self.hidden_vectors.pop(change.item_id, None)

    def _grow(self, metas: list[ItemMeta]) -> np.ndarray:
        """Append rows for new items to every per-item array (zero vectors, no trained ID); returns
        their rows. The ids become visible to readers only when `row` is set afterwards."""
        n = len(metas)
        rows = self.behaviour.add_items([m.created_at for m in metas])
        self.text = np.vstack([self.text, np.zeros((n, TextEncoder.dim), np.float32)])
        self.image = np.vstack([self.image, np.zeros((n, ImageEncoder.dim), np.float32)])
        self.text_mask = np.append(self.text_mask, np.zeros(n, bool))
        self.image_mask = np.append(self.image_mask, np.zeros(n, bool))
        self.model_index = np.append(self.model_index, np.full(n, -1, np.int64))
        self.meta.extend(metas)
        self.ids.extend(m.item_id for m in metas)
        self.popular_order = np.append(self.popular_order, rows)  # least popular until the next recount
        return rows

    def add_items(
        self, metas: list[ItemMeta], text: np.ndarray, embeddings: np.ndarray, model_rows: np.ndarray | None = None
    ) -> None:
        """Add many items not yet in the catalogue in one step (bulk imports, and the catalogue-size
        benchmark): arrays grow once rather than per item. `model_rows` names each item's trained ID
        row (-1, the default: a new item, embedded from content alone)."""
        with self._lock:
            rows = self._grow(metas)
            self.text[rows], self.text_mask[rows] = text, True
            if model_rows is not None:
                self.model_index[rows] = model_rows
            ids = [m.item_id for m in metas]
            self.index = fitted_index(self.index, len(self.ids), self.config.index)
            self.content_index = fitted_index(self.content_index, len(self.ids), self.config.index)
            self.index.upsert(ids, embeddings)
            for start in range(0, len(rows), 4096):
                chunk = rows[start : start + 4096]
                self.content_index.upsert([self.ids[r] for r in chunk], self.content_view(chunk))
            fresh = [r for r in rows if self.model_index[r] < 0]
            if fresh:
                self.fresh_index.upsert([self.ids[r] for r in fresh], self.content_index.vectors([self.ids[r] for r in fresh]))
            self.row.update({item_id: int(r) for item_id, r in zip(ids, rows)})
            self._item_changes += 1

    def refresh_behaviour(self) -> int:
        """Re-fuse the items whose behaviour changed since the last refresh; returns how many."""
        with self._lock:
            rows = np.array(sorted(r for r in self.touched if self.ids[r] not in self.hidden), dtype=np.int64)
            self.touched.clear()
            if len(rows):
                self.index.upsert([self.ids[r] for r in rows], self.embed_rows(rows))
            if time.monotonic() - self._popularity_at >= self.config.serving.popularity_refresh_s:
                self._refresh_popularity()
                self._popularity_at = time.monotonic()
        return len(rows)

    def embed_rows(self, rows: np.ndarray) -> np.ndarray:
        behaviour = np.stack([self.behaviour.item_features(int(r), self.now) for r in rows])
        return self.runtime.embed_items(
            self.model_index[rows], self.text[rows], self.text_mask[rows], self.image[rows], self.image_mask[rows], behaviour
        )

    def content_view(self, rows: np.ndarray) -> np.ndarray:
        """Unit content vectors: the text embedding (weight 0.8) joined with the fusion model's
        embedding of the item from content alone (0.6: no ID, the behaviour of an unseen item), so
        their dot product is 0.64 x text cosine + 0.36 x model cosine."""
        unseen = np.repeat(self.behaviour_features("")[None], len(rows), axis=0)
        fused = self.runtime.embed_items(
            np.full(len(rows), -1), self.text[rows], self.text_mask[rows], self.image[rows], self.image_mask[rows], unseen
        )
        joined = np.hstack([0.8 * self.text[rows], 0.6 * fused])
        return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)

    def content_vector(self, item_id: str) -> np.ndarray:
        return self.content_vectors([item_id])[0]

    def content_vectors(self, item_ids: list[str]) -> np.ndarray:
        """Content vectors, in one content-index read when all are indexed (computed for the rest)."""
        try:
            return self.content_index.vectors(item_ids)
        except KeyError:
            return np.stack([self.content_index.vector(i) if i in self.content_index
                             else self.content_view(np.array([self.row[i]]))[0] for i in item_ids])

    def behaviour_features(self, item_id: str) -> np.ndarray:
        """The item's behaviour now; an item not in the catalogue yet has none."""
        if item_id in self.row:
            return self.behaviour.item_features(self.row[item_id], self.now)
        return BehaviourFeatures(1, config=self.config.behaviour).item_features(0, self.now)

    def _refresh_popularity(self) -> None:
        """Items by events in the widest behaviour window (30 days by default), then all time: the
        cold-start ranking."""
        recent, total = self.behaviour.counts(self.now, max(self.config.behaviour.windows_days))
        popularity = np.log1p(recent) * 1000 + np.log1p(total)
        self.popular_order = np.argsort(-popularity, kind="stable")

    def popular(self, exclude: set[str], k: int, accept=None) -> list[str]:
        picked = []
        for row in self.popular_order:
            item_id = self.ids[row]
            if item_id in exclude or item_id in self.hidden or (accept is not None and not accept(item_id)):
                continue
            picked.append(item_id)
            if len(picked) == k:
                break
        return picked
