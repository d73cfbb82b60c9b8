"""Moving data between a source and the state store, the online service's source of truth.

`import_dataset` writes a canonical dataset (from `dynrec.data.load_source`) into the store in
batches, each one transaction: users' attributes, the items whose record changed (and their
image files, kept apart from the item log), and events under an idempotency key (a 64-bit hash
of user, item, type, time and value), so a re-run adds nothing twice and an interrupted run,
run again, adds only what is missing. Users erased on request stay erased: their rows are
skipped and counted.

`stored_dataset` reads the store back as a canonical dataset: what every replica, and the
bootstrap training, build their state from, on any node that reaches the store.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from dynrec.config import DynrecConfig
from dynrec.data.dataset import Dataset
from dynrec.data.schemas import (
    ATTRIBUTES_TYPE,
    EVENTS_SCHEMA,
    IMAGE_TYPE,
    ITEMS_SCHEMA,
    TIMESTAMP_TYPE,
    USERS_SCHEMA,
)
from dynrec.data.sources import LoadReport, load_source
from dynrec.encoders.content import image_bytes
from dynrec.state.base import ItemChange, StateStore, StoredEvent, open_store


@dataclass
class ImportSummary:
    items_written: int = 0
    items_unchanged: int = 0
    images_kept: int = 0
    users_written: int = 0
    events_written: int = 0
    events_already_stored: int = 0
    rows_of_erased_users: int = 0
    items_seconds: float = 0.0
    events_seconds: float = 0.0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"items   {self.items_written:,} written, {self.items_unchanged:,} unchanged",
            *([f"images  {self.images_kept:,} kept in the store"] if self.images_kept else []),
            f"users   {self.users_written:,} written",
            f"events  {self.events_written:,} written, {self.events_already_stored:,} already stored",
            *([f"skipped {self.rows_of_erased_users:,} rows of users erased on request"] if self.rows_of_erased_users else []),
            f"took    {self.seconds:.1f} s",
        ]


def item_record(row: dict) -> dict:
    """An items-table row as the JSON record the item log keeps (image bytes as base64)."""
    created = row["created_at"]
    image = row["image"]
    if image is not None:
        image = {"path": image["path"], "bytes": base64.b64encode(image["bytes"]).decode() if image["bytes"] else None}
    return {
        "title": row["title"], "text": row["text"], "categories": list(row["categories"] or []),
        "attributes": dict(row["attributes"] or []), "created_at": int(created.timestamp()) if created else None,
        "image": image,
    }


def event_keys(events: pa.Table) -> list[int]:
    """Each event's idempotency key: a signed 64-bit hash of its user, item, type, time and value,
    the same on every run (pandas' fixed-key SipHash, vectorised: a per-row hash in Python cost
    as much as the SQLite insert). Collisions are negligible below billions of events per store."""
    frame = events.select(["user_id", "item_id", "event_type", "timestamp", "value"]).to_pandas()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64).tolist()


def latest_records(changes: list[ItemChange]) -> dict[str, ItemChange]:
    """Each item's newest upsert (hides carry no record)."""
    latest: dict[str, ItemChange] = {}
    for change in changes:
        if change.record is not None:
            latest[change.item_id] = change
    return latest


def vector_carrying(changes: list[ItemChange]) -> dict[str, ItemChange]:
    """Items whose newest upsert carries its content vectors (upserted through the API, encoded
    then); imported items carry none and take theirs from the catalogue embeddings."""
    return {item_id: c for item_id, c in latest_records(changes).items() if c.text_vec is not None}


def keep_images(dataset: Dataset, store: StateStore, written: set[str], batch_size: int = 256) -> int:
    """Keep the image files of the items just written, and of any the store holds no image for
    yet (a store imported before images were kept), read from their bytes or path, `batch_size`
    files to a write; returns how many. The replicas that serve an image may not reach the
    import's files."""
    kept = store.image_ids()
    rows = [(row["item_id"], row["image"]) for row in dataset.items.select(["item_id", "image"]).to_pylist()
            if row["image"] is not None and (row["item_id"] in written or row["item_id"] not in kept)]
    stored = 0
    for start in range(0, len(rows), batch_size):
        images = {item_id: data for item_id, image in rows[start : start + batch_size] if (data := image_bytes(image))}
        store.put_images(images)
        stored += len(images)
    return stored


def import_dataset(dataset: Dataset, store: StateStore, batch_size: int = 20_000, progress: bool = True,
                   encode: Callable[[Dataset, list[str]], dict[str, np.ndarray]] | None = None) -> ImportSummary:
    """With `encode` (dynrec.artifacts.prepare.import_encoder), the changed items' records carry
    their content and fused vectors, as items put through the API do."""
    started = time.perf_counter()
    summary = ImportSummary()
    erased = store.erased_users()
    users = {r["user_id"]: dict(r["attributes"] or []) for r in dataset.users.to_pylist() if r["user_id"] not in erased}
    summary.rows_of_erased_users += dataset.users.num_rows - len(users)
    known_users = store.users()
    users = {u: a for u, a in users.items() if known_users.get(u) != a}
    for start in range(0, len(users), batch_size):
        store.put_users(dict(list(users.items())[start : start + batch_size]))
    summary.users_written = len(users)

    began = time.perf_counter()
    stored = {item_id: change.record for item_id, change in latest_records(store.item_changes(0)).items()}
    changes = []
    for row in dataset.items.to_pylist():
        record = item_record(row)
        if stored.get(row["item_id"]) == record:
            summary.items_unchanged += 1
        else:
            changes.append(ItemChange(0, row["item_id"], False, record))
    if encode is not None and changes:
        encoded = encode(dataset, [c.item_id for c in changes])
        position = {item_id: i for i, item_id in enumerate(encoded["item_id"].tolist())}
        for change in changes:
            i = position[change.item_id]
            change.text_vec, change.text_mask = encoded["text_embedding"][i], bool(encoded["text_mask"][i])
            change.image_vec, change.image_mask = encoded["image_embedding"][i], bool(encoded["image_mask"][i])
            change.embedding, change.model_version = encoded["embedding"][i], str(encoded["model_version"][i])
    with tqdm(total=len(changes), desc="import items", unit="item", disable=not progress) as bar:
        for start in range(0, len(changes), batch_size):
            store.put_items(changes[start : start + batch_size])
            bar.update(len(changes[start : start + batch_size]))
    summary.items_written = len(changes)
    summary.images_kept = keep_images(dataset, store, {c.item_id for c in changes})
    summary.items_seconds = time.perf_counter() - began

    began = time.perf_counter()
    events = dataset.events
    before, sent = store.latest()[1], 0
    with tqdm(total=events.num_rows, desc="import events", unit="event", disable=not progress) as bar:
        for start in range(0, events.num_rows, batch_size):
            batch = events.slice(start, batch_size)
            columns = {name: batch[name].to_pylist() for name in ("user_id", "item_id", "event_type", "recommendation_id")}
            seconds = pc.cast(batch["timestamp"], pa.int64()).to_pylist()
            values = batch["value"].fill_null(1.0).to_pylist()
            rows = [
                StoredEvent(item, ts, value, kind, user, rec, key)
                for user, item, kind, ts, value, rec, key in zip(
                    columns["user_id"], columns["item_id"], columns["event_type"], seconds, values,
                    columns["recommendation_id"], event_keys(batch))
                if user not in erased
            ]
            summary.rows_of_erased_users += batch.num_rows - len(rows)
            if rows:
                store.add_events(rows)
                sent += len(rows)
            bar.update(batch.num_rows)
    summary.events_written = store.latest()[1] - before
    summary.events_already_stored = sent - summary.events_written
    summary.events_seconds = time.perf_counter() - began
    summary.seconds = time.perf_counter() - started
    return summary


def import_source(config: DynrecConfig, progress: bool = True, report: LoadReport | None = None,
                  encode: Callable[[Dataset, list[str]], dict[str, np.ndarray]] | None = None) -> ImportSummary:
    """`dynrec import`: the configured source into the configured store (see `import_dataset` for
    `encode`). A source that fails its checks fails before anything is written."""
    dataset = load_source(config, report)
    store = open_store(config)
    try:
        return import_dataset(dataset, store, config.state.import_batch, progress, encode)
    finally:
        store.close()


def import_if_empty(config: DynrecConfig, progress: bool = True) -> ImportSummary | None:
    """The configured source into a store that holds nothing yet (the quickstart's first run);
    None when the store has data already: the service never re-reads the source on its own."""
    store = open_store(config)
    try:
        empty = store.latest() == (0, 0)
    finally:
        store.close()
    return import_source(config, progress) if empty else None


def stored_dataset(store: StateStore, name: str) -> tuple[Dataset, tuple[int, int]]:
    """The store's items (newest record of each), events and users as canonical tables, with the
    (item change, event) sequence numbers they are complete to: a replica replays what follows."""
    latest = store.latest()
    records = latest_records([c for c in store.item_changes(0) if c.seq <= latest[0]])
    rows = [(item_id, change.record) for item_id, change in records.items()]
    created = [r.get("created_at") for _, r in rows]
    items = pa.table(
        {
            "item_id": pa.array([i for i, _ in rows], pa.string()),
            "title": pa.array([r.get("title") for _, r in rows], pa.string()),
            "text": pa.array([r.get("text") for _, r in rows], pa.string()),
            "categories": pa.array([r.get("categories") or [] for _, r in rows], pa.list_(pa.string())),
            "image": pa.array([_image(r.get("image")) for _, r in rows], IMAGE_TYPE),
            "attributes": pa.array([r.get("attributes") or {} for _, r in rows], ATTRIBUTES_TYPE),
            "created_at": pa.array(created, pa.int64()).cast(TIMESTAMP_TYPE),
        },
        schema=ITEMS_SCHEMA,
    )
    rows = store.event_rows(latest[1])
    columns = list(zip(*rows)) if rows else [()] * 6
    events = pa.table(
        {
            "user_id": pa.array(columns[0], pa.string()),
            "item_id": pa.array(columns[1], pa.string()),
            "event_type": pa.array(columns[2], pa.string()),
            "timestamp": pa.array(columns[3], pa.int64()).cast(TIMESTAMP_TYPE),
            "value": pa.array(columns[4], pa.float32()),
            "recommendation_id": pa.array(columns[5], pa.string()),
        },
        schema=EVENTS_SCHEMA,
    )
    # events need a user, and an item with a record (a hide alone names no item to describe)
    usable = pc.and_(pc.is_valid(events["user_id"]), pc.is_in(events["item_id"], value_set=items["item_id"]))
    events = events.filter(usable)
    attributes = store.users()
    user_ids = sorted(set(attributes) | set(pc.unique(events["user_id"]).to_pylist()))
    users = pa.table({"user_id": pa.array(user_ids, pa.string()),
                      "attributes": pa.array([attributes.get(u, {}) for u in user_ids], ATTRIBUTES_TYPE)}, schema=USERS_SCHEMA)
    return Dataset(name, items, events, users), latest


def _image(image: dict | None) -> dict | None:
    if not image:
        return None
    return {"path": image.get("path"), "bytes": base64.b64decode(image["bytes"]) if image.get("bytes") else None}


def training_dataset(config: DynrecConfig) -> Dataset:
    """What `dynrec train` learns from: with `train.data: store`, the store's items, users and
    events, imported and live alike (the configured source while the store holds no events);
    with `source`, the source's files as they are."""
    if config.train.data == "store":
        store = open_store(config)
        try:
            if store.latest()[1] > 0:
                return stored_dataset(store, config.source.label)[0]
        finally:
            store.close()
    return load_source(config)
