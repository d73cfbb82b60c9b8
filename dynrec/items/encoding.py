"""Encoding the catalogue, one batch of items at a time.

Four steps: `hashed` (the text each item shows the encoder, and one content hash over its text
and image bytes), `with_text`, `with_images` and `fused`. A replica preparing its embeddings runs
them back to back (`encode_batch`); the Ray Data job (training/encode_catalog.py) runs the first
two in a text actor pool and the last two in an image actor pool. A batch is a dict of
equal-length numpy columns, starting from the items table's item_id, title, text, categories and
image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa

from dynrec.encoders.content import (
    has_text,
    image_content_hash,
    item_content_hash,
    item_text,
)

if TYPE_CHECKING:
    from dynrec.models.runtime import ModelRuntime

Batch = dict[str, np.ndarray]


class TextEncoding(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class ImageEncoding(Protocol):
    def encode(self, images: list) -> tuple[np.ndarray, np.ndarray]: ...


def batch_of(items: pa.Table) -> Batch:
    """The items table's encoder inputs as a batch: 1-d object columns (lists and dicts kept whole)."""
    batch = {}
    for name, values in items.select(["item_id", "title", "text", "categories", "image"]).to_pydict().items():
        batch[name] = np.empty(len(values), dtype=object)
        batch[name][:] = values
    return batch


def hashed(batch: Batch, unchanged: frozenset = frozenset()) -> Batch:
    """Adds each item's encoder text, text mask and content hash;
    drops the (item_id, content_hash) pairs in `unchanged`, whose output is current."""
    titles, texts, categories = batch["title"], batch["text"], batch["categories"]
    strings = [item_text(t, c, x) for t, c, x in zip(titles, categories, texts)]
    text_mask = np.array([has_text(t, x) for t, x in zip(titles, texts)], dtype=bool)
    hashes = np.array(
        [item_content_hash(s if m else "", image_content_hash(image)) for s, m, image in zip(strings, text_mask, batch["image"])],
        dtype=object,
    )
    keep = np.array([(item_id, h) not in unchanged for item_id, h in zip(batch["item_id"], hashes)], dtype=bool)
    return {
        "item_id": batch["item_id"][keep],
        "content_hash": hashes[keep],
        "item_text": np.array(strings, dtype=object)[keep],
        "text_mask": text_mask[keep],
        "image": batch["image"][keep],
    }


def with_text(batch: Batch, encoder: TextEncoding) -> Batch:
    """The text embedding of every item with text (zeros for the rest); the encoder text goes."""
    vectors = np.zeros((len(batch["item_id"]), encoder.dim), dtype=np.float32)
    rows = np.flatnonzero(batch["text_mask"])
    if len(rows):
        vectors[rows] = encoder.encode([batch["item_text"][i] for i in rows])
    rest = {k: v for k, v in batch.items() if k != "item_text"}
    return {**rest, "text_embedding": vectors}


def with_images(batch: Batch, encoder: ImageEncoding) -> Batch:
    """The image embedding and mask of every item (an item without a decodable image is masked);
    the image column goes."""
    features, valid = encoder.encode(list(batch["image"]))
    rest = {k: v for k, v in batch.items() if k != "image"}
    return {**rest, "image_embedding": features, "image_mask": valid}


def fused(batch: Batch, runtime: ModelRuntime, item_index: dict[str, int], behaviour: dict[str, np.ndarray],
          default_behaviour: np.ndarray) -> Batch:
    """The fused embedding of every item, with the model version that made it: `item_index` names
    trained ID rows (others embed as new items), `behaviour` each item's statistics (an item without
    any takes `default_behaviour`)."""
    ids = batch["item_id"]
    features = np.stack([behaviour.get(i, default_behaviour) for i in ids]) if len(ids) else np.zeros((0, len(default_behaviour)), np.float32)
    embeddings = runtime.embed_items(
        np.array([item_index.get(i, -1) for i in ids], dtype=np.int64),
        batch["text_embedding"], batch["text_mask"], batch["image_embedding"], batch["image_mask"], features,
    )
    return {**batch, "embedding": embeddings, "model_version": np.full(len(ids), runtime.fingerprint, dtype=object)}


def encode_batch(batch: Batch, text_encoder: TextEncoding, image_encoder: ImageEncoding, runtime: ModelRuntime,
                 item_index: dict[str, int], behaviour: dict[str, np.ndarray], default_behaviour: np.ndarray) -> Batch:
    """All four steps in this process."""
    return fused(with_images(with_text(hashed(batch), text_encoder), image_encoder), runtime, item_index, behaviour,
                 default_behaviour)
