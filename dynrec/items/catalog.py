"""A replica's view of the catalogue: item metadata, content vectors, behaviour, and the indexes.

Booted from the store's catalogue snapshot and the log entries after it (dynrec.items.snapshot),
so a replica on any node that reaches the store builds the same state at a cost that follows the
catalogue's size, not its history; then kept current by replaying the store's logs: upserts and
hides apply at once; behaviour events update the statistics and the attributed feedback counts,
and the touched items are re-fused (new embedding, same content) every `behaviour_refresh_s` by a
background thread, off the request path.

Three indexes: `index` holds the full embeddings (ID, content and behaviour) that users are
matched against; `content_index` holds every item's content vector (its text embedding, joined
with the fusion model's view of it as a brand-new item: no ID, no behaviour), so "similar items"
compares what items are about, whatever their popularity, and a new item is comparable at once;
`fresh_index` holds the content view of the items without a trained ID embedding, the pool new
items are recommended from before they have any behaviour.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dynrec.artifacts.prepare import Artifacts
from dynrec.config import DynrecConfig
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.encoders.behaviour import BehaviourFeatures
from dynrec.encoders.image import ImageEncoder
from dynrec.encoders.text import TextEncoder
from dynrec.index import ExactIndex, fitted_index, make_index
from dynrec.items import snapshot
from dynrec.items.feedback import FEEDBACK_TYPES
from dynrec.items.snapshot import CatalogueState, ItemMeta
from dynrec.memory import release_unused_memory
from dynrec.ranking.item_item import ITEM_ITEM_FILE, ItemItemTerm, ItemItemWeights
from dynrec.state import ItemChange, StateStore, StoredEvent

if TYPE_CHECKING:  # torch: loaded by whoever builds the runtime, not by importing the ranker
    from dynrec.models.runtime import ModelRuntime

@dataclass
class ItemDetail:
    """One item as the API describes it."""

    item_id: str
    title: str
    categories: list[str]
    attributes: dict[str, str]
    hidden: bool
    new: bool
    has_image: bool
    model_version: str
    text: str = ""


class Catalog:
    def __init__(self, config: DynrecConfig, runtime: ModelRuntime, trained_ids: list[str], store: StateStore,
                 state: CatalogueState, item_item: ItemItemWeights | None = None):
        """The catalogue from `state` (a snapshot, or one built from the store), as of its log
        positions; `boot` is the usual way in. Rows whose embedding is missing, or was fused by
        another model, are fused here. `item_item`: the model's item-item term, when its training
        fitted one (dynrec.ranking.item_item)."""
        self.config, self.runtime, self.store = config, runtime, store
        self.model_version = runtime.fingerprint
        self.meta: list[ItemMeta] = state.meta
        self.ids: list[str] = [m.item_id for m in state.meta]
        self.row: dict[str, int] = {item_id: i for i, item_id in enumerate(self.ids)}
        self.item_item = ItemItemTerm(item_item, self.row) if item_item is not None else None
        self.text, self.text_mask, self.image, self.image_mask = state.text, state.text_mask, state.image, state.image_mask
        trained = {item_id: i for i, item_id in enumerate(trained_ids)}
        self.model_index = np.array([trained.get(i, -1) for i in self.ids], dtype=np.int64)
        self.behaviour, self.prior, self.feedback, self.now = state.behaviour, state.prior, state.feedback, state.now
        embeddings = state.embeddings if state.model_version == self.model_version and state.embeddings.shape[1:] == (runtime.dim,) \
            else np.zeros((len(self.ids), runtime.dim), np.float32)
        stale = np.flatnonzero(~state.embedded) if embeddings is state.embeddings else np.arange(len(self.ids))
        for start in range(0, len(stale), 4096):
            embeddings[stale[start : start + 4096]] = self.embed_rows(stale[start : start + 4096])
        self.hidden: set[str] = set(state.hidden)
        self.hidden_vectors: dict[str, np.ndarray] = {i: embeddings[self.row[i]] for i in self.hidden}  # still in user histories
        visible = np.array([r for r, item_id in enumerate(self.ids) if item_id not in self.hidden], dtype=np.int64)
        self._item_changes = 0  # counts item adds, updates and hides: what `created_since` keeps depends on them
        self._young: tuple[tuple[int, int], list[str]] = ((-1, -1), [])
        self.index = make_index(runtime.dim, len(self.ids), config.index, model_version=self.model_version)
        self.index.upsert([self.ids[r] for r in visible], embeddings[visible])
        sample = np.random.default_rng(0).choice(len(self.ids), min(len(self.ids), 2048), replace=False)
        self.score_sample = embeddings[np.sort(sample)]  # to standardise a user's scores without scoring every item
        content_dim = TextEncoder.dim + runtime.dim
        self.content_index = make_index(content_dim, len(self.ids), config.index, model_version=self.model_version)
        self.fresh_index = ExactIndex(content_dim, model_version=self.model_version)
        for start in range(0, len(visible), 4096):
            rows = visible[start : start + 4096]
            content = self.content_view(rows)
            self.content_index.upsert([self.ids[r] for r in rows], content)
            new = self.model_index[rows] < 0
            if new.any():
                self.fresh_index.upsert([self.ids[r] for r in rows[new]], content[new])
        self.touched: set[int] = set(state.touched)
        self._seen = self._compacted = state.positions
        self._checked = 0.0
        self._popularity_at = time.monotonic()
        self._lock = threading.RLock()
        self._refresh_popularity()
        self._refresher: threading.Thread | None = None
        self._stopped = threading.Event()

    @classmethod
    def boot(cls, config: DynrecConfig, artifacts: Artifacts, runtime: ModelRuntime, trained_ids: list[str],
             store: StateStore) -> Catalog:
        """From the store's catalogue snapshot and the log after it; without a snapshot, built
        from the store's records and events, and saved as the first snapshot."""
        state = snapshot.load(store)
        if state is None:
            state = snapshot.build(config, artifacts, store, runtime.fingerprint, runtime.dim)
            snapshot.save(store, state)
        catalog = cls(config, runtime, trained_ids, store, state, ItemItemWeights.load(artifacts.model_path.with_name(ITEM_ITEM_FILE)))
        catalog.sync(force=True)
        release_unused_memory()  # the tables read above
        return catalog

    def start_refreshing(self, compact: bool = False) -> None:
        """Re-fuse behaviour-touched items every `behaviour_refresh_s` in a daemon thread; with
        `compact`, also save a new snapshot every `state.compact_every` log entries."""
        if self._refresher is None:
            self._refresher = threading.Thread(target=self._refresh_loop, args=(compact,), name="catalog-refresh", daemon=True)
            self._refresher.start()

    def state(self) -> CatalogueState:
        """The catalogue as of the log positions applied so far (call under the lock)."""
        embeddings = np.zeros((len(self.ids), self.dim), np.float32)
        embedded = np.zeros(len(self.ids), bool)
        indexed = [r for r, item_id in enumerate(self.ids) if item_id in self.index]
        embeddings[indexed] = self.index.vectors([self.ids[r] for r in indexed]) if indexed else 0
        embedded[indexed] = True
        for item_id, vector in self.hidden_vectors.items():
            embeddings[self.row[item_id]], embedded[self.row[item_id]] = vector, True
        return CatalogueState(self._seen, list(self.meta), self.text.copy(), self.text_mask.copy(), self.image.copy(),
                              self.image_mask.copy(), embeddings, embedded, self.model_version, self.behaviour,
                              self.prior, self.feedback, self.now, set(self.hidden), set(self.touched))

    def compact(self) -> None:
        """Save the catalogue as a snapshot in the store (pickled under the lock, so the
        statistics match the positions it records)."""
        with self._lock:
            snapshot.save(self.store, self.state())
            self._compacted = self._seen

    def stop_refreshing(self) -> None:
        """End the background refresh (a replica that switched to another model's catalogue): this
        one is then only synced when asked, and no longer compacts."""
        self._stopped.set()

    def _refresh_loop(self, compact: bool) -> None:
        while not self._stopped.wait(self.config.serving.behaviour_refresh_s):
            self.sync(force=True)
            self.refresh_behaviour()
            if compact and sum(self._seen) - sum(self._compacted) >= self.config.state.compact_every:
                self.compact()

    @property
    def positions(self) -> tuple[int, int]:
        """The (item log, event log) sequence numbers applied so far."""
        return self._seen

    @property
    def dim(self) -> int:
        return self.index.dim

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.row

    def visible(self, item_id: str) -> bool:
        return item_id in self.row and item_id not in self.hidden

    def item(self, item_id: str) -> ItemMeta:
        return self.meta[self.row[item_id]]

    def describe(self, item_id: str) -> ItemDetail | None:
        if item_id not in self.row:
            return None
        meta = self.item(item_id)
        return ItemDetail(item_id, meta.title, meta.categories, meta.attributes, item_id in self.hidden,
                          self.is_new(item_id), bool(self.image_mask[self.row[item_id]]), self.model_version, meta.text)

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
            items_seen, events_seen = self._seen
            # the reads return whatever was written up to them, past `latest` too: the position kept
            # is the last one applied, so a write landing between the reads is never applied twice
            if latest[0] > items_seen:
                for change in self.store.item_changes(self._seen[0]):
                    self._apply(change)
                    items_seen = max(items_seen, change.seq)
            if latest[1] > events_seen:
                for seq, event in self.store.events(self._seen[1]):
                    self._apply_event(event)
                    events_seen = max(events_seen, seq)
            self._seen = (items_seen, events_seen)
            return changed

    def _apply_event(self, event: StoredEvent) -> None:
        """Attributed impressions and clicks feed the feedback counts (the bandit's evidence); every
        event but an impression (a showing, not an interaction) feeds the behaviour statistics."""
        row = self.row.get(event.item_id)
        if row is None:
            return
        if event.recommendation_id and event.event_type in FEEDBACK_TYPES:
            self.feedback.record(event.item_id, event.event_type, event.position)
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
        if row is None and change.text_vec is None:
            return  # a new item imported without its vectors: a restart embeds it (see dynrec.artifacts.prepare)
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
        carried = change.content_vec is not None and change.model_version == self.model_version
        content = change.content_vec[None, :] if carried else self.content_view(np.array([row]))
        self.row[change.item_id] = row
        if change.embedding is not None:
            fused = change.embedding[None, :] if change.model_version == self.model_version else self.embed_rows(np.array([row]))
            self.index.upsert([change.item_id], fused)
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
        return self.content_of(self.text[rows], self.text_mask[rows], self.image[rows], self.image_mask[rows])

    def content_of(self, text: np.ndarray, text_mask: np.ndarray, image: np.ndarray, image_mask: np.ndarray) -> np.ndarray:
        """Unit content vectors: the text embedding (weight 0.8) joined with the fusion model's
        embedding of the item from content alone (0.6: no ID, the behaviour of an unseen item), so
        their dot product is 0.64 x text cosine + 0.36 x model cosine. The Fusion deployment computes
        it once per upsert and the item change carries it, so replicas do not fuse again."""
        unseen = np.repeat(self.behaviour_features("")[None], len(text), axis=0)
        fused = self.runtime.embed_items(np.full(len(text), -1), text, text_mask, image, image_mask, unseen)
        joined = np.hstack([0.8 * text, 0.6 * fused])
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
        picked: list[str] = []
        if k <= 0:  # else the loop below would walk the whole catalogue looking for a k-th item
            return picked
        for row in self.popular_order:
            item_id = self.ids[row]
            if item_id in exclude or item_id in self.hidden or (accept is not None and not accept(item_id)):
                continue
            picked.append(item_id)
            if len(picked) == k:
                break
        return picked
