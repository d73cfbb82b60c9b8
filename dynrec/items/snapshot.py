"""Compaction: the catalogue as of a position in the store's logs, saved in the store itself.

A replica's start then reads one snapshot and the log entries after it, so its cost follows the
catalogue's current size rather than the length of the event history. The first replica to start
on a store without a snapshot builds the state from the store's records and events (and the
catalogue embeddings for the items the encode job embedded) and saves it; Rankers save a newer one
every `state.compact_every` log entries. Everything but the fused embeddings is model-independent;
those are kept with the model version they came from and re-fused when the served model differs.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq

from dynrec.artifacts.prepare import Artifacts, vectors
from dynrec.config import DynrecConfig
from dynrec.data import Interactions
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.encoders.behaviour import BehaviourFeatures
from dynrec.encoders.image import ImageEncoder
from dynrec.encoders.text import TextEncoder
from dynrec.items.feedback import FEEDBACK_TYPES, FeedbackCounts
from dynrec.ranking.prior import AttributePrior
from dynrec.state import StateStore, unpickled
from dynrec.state.imports import stored_dataset, vector_carrying

SNAPSHOT = "catalogue"
SNAPSHOT_VERSION = 3  # 2: position-weighted impressions in the feedback counts; 3: a rebuild keeps their positions


@dataclass
class ItemMeta:
    item_id: str
    title: str
    categories: list[str]
    created_at: int  # unix seconds, -1 unknown
    attributes: dict[str, str]
    text: str = ""


@dataclass
class CatalogueState:
    """Everything a catalogue holds, by row, as of `positions` (item change, event)."""

    positions: tuple[int, int]
    meta: list[ItemMeta]
    text: np.ndarray
    text_mask: np.ndarray
    image: np.ndarray
    image_mask: np.ndarray
    embeddings: np.ndarray  # fused, for `model_version`; hidden items keep theirs (user histories name them)
    embedded: np.ndarray  # rows with a fused embedding (an item logged without vectors has none)
    model_version: str
    behaviour: BehaviourFeatures
    prior: AttributePrior
    feedback: FeedbackCounts
    now: int
    hidden: set[str] = field(default_factory=set)
    touched: set[int] = field(default_factory=set)  # rows whose behaviour changed since their fusion


def save(store: StateStore, state: CatalogueState) -> None:
    store.save_snapshot(SNAPSHOT, state.positions[1], pickle.dumps((SNAPSHOT_VERSION, state), protocol=5))


def load(store: StateStore) -> CatalogueState | None:
    """The store's catalogue snapshot; None without one (or one written by another layout)."""
    saved = store.load_snapshot(SNAPSHOT)
    if saved is None:
        return None
    payload = unpickled(saved[1], SNAPSHOT)
    if not isinstance(payload, tuple) or payload[0] != SNAPSHOT_VERSION:
        return None
    return payload[1]


def build(config: DynrecConfig, artifacts: Artifacts, store: StateStore, model_version: str, dim: int) -> CatalogueState:
    """The catalogue from the store's records and events: items the encode job embedded take their
    vectors from the catalogue embeddings, items upserted through the API from their newest logged
    change (re-fused by the catalogue when another model made them), and an item whose last change
hides it starts hidden."""
    dataset, positions = stored_dataset(store, config.source.label)
    items = dataset.items
    ids = items["item_id"].to_pylist()
    changes = [c for c in store.item_changes(0) if c.seq <= positions[0]]
    carried = vector_carrying(changes)
    table = pq.read_table(artifacts.embeddings_path)
    position = {item_id: i for i, item_id in enumerate(table["item_id"].to_pylist())}
    unembedded = [i for i in ids if i not in position and i not in carried]
    if unembedded:  # imported after the embeddings were made: a restart prepares them (ensure_artifacts)
        raise RuntimeError(f"{len(unembedded):,} stored items, e.g. {unembedded[:3]}, have no embeddings in "
                           f"{artifacts.embeddings_path}; restart the replica or run `dynrec encode`")
    n = len(ids)
    text, image = np.zeros((n, TextEncoder.dim), np.float32), np.zeros((n, ImageEncoder.dim), np.float32)
    text_mask, image_mask = np.zeros(n, bool), np.zeros(n, bool)
    embeddings = np.zeros((n, dim), np.float32)
    rows = np.array([position.get(i, -1) for i in ids], dtype=np.int64)
    listed = rows >= 0
    text[listed], image[listed] = vectors(table["text_embedding"])[rows[listed]], vectors(table["image_embedding"])[rows[listed]]
    text_mask[listed] = np.asarray(table["text_mask"].to_pylist(), bool)[rows[listed]]
    image_mask[listed] = np.asarray(table["image_mask"].to_pylist(), bool)[rows[listed]]
    embeddings[listed] = vectors(table["embedding"])[rows[listed]]
    embedded = listed.copy()
    for row, item_id in enumerate(ids):
        change = carried.get(item_id)
        if change is not None:
            text[row], text_mask[row], image[row], image_mask[row] = change.text_vec, change.text_mask, change.image_vec, change.image_mask
            if change.embedding is not None and change.model_version == model_version:
                embeddings[row], embedded[row] = change.embedding, True
    created = items["created_at"].cast("int64").fill_null(-1).to_numpy()
    meta = [
        ItemMeta(r["item_id"], r["title"] or r["item_id"], list(r["categories"] or []), int(c),
                 dict(r["attributes"] or []), r["text"] or "")
        for r, c in zip(items.select(["item_id", "title", "categories", "attributes", "text"]).to_pylist(), created)
    ]
    interactions = Interactions.from_dataset(dataset, exclude_types=NOT_INTERACTIONS)
    feedback = FeedbackCounts()
    for item_id, event_type, position in store.attributed_events(positions[1], FEEDBACK_TYPES):
        feedback.record(item_id, event_type, position)
    last = {c.item_id: c for c in changes}
    return CatalogueState(
        positions=positions, meta=meta, text=text, text_mask=text_mask, image=image, image_mask=image_mask,
        embeddings=embeddings, embedded=embedded, model_version=model_version,
        behaviour=BehaviourFeatures.from_events(interactions.items, interactions.timestamps, interactions.values,
                                                interactions.n_items, created, config.behaviour),
        prior=AttributePrior.fit(dataset.users, interactions, config.cold_start),
        feedback=feedback,
        now=int(interactions.timestamps.max()) + 1 if len(interactions.timestamps) else int(time.time()),
        hidden={item_id for item_id in ids if last[item_id].hidden},
    )
