"""Fusion deployment: turns an item's content vectors into its embedding and records the item.

It writes the item store, so every Ranker and UserState replica picks the change up.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.common import load_served, state_store
from dynrec.items.ingest import EncodedItem
from dynrec.state import ItemChange


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class Fusion:
    def __init__(self):
        self.served = load_served()
        self.store = state_store(self.served.config)
        self.catalog = self.served.catalog(self.store)

    def upsert(self, items: list[EncodedItem]) -> int:
        """Fuse and store items (new or changed) in one store transaction; returns its sequence number."""
        self.catalog.sync(force=True)
        index = np.array([self.catalog.model_index[self.catalog.row[i.item_id]] if i.item_id in self.catalog else -1
                          for i in items])
        text, text_mask = np.stack([i.text_vec for i in items]), np.ones(len(items), bool)
        image, image_mask = np.stack([i.image_vec for i in items]), np.array([i.image_mask for i in items])
        embeddings = self.served.runtime.embed_items(
            index, text, text_mask, image, image_mask, np.stack([self.catalog.behaviour_features(i.item_id) for i in items]),
        )
        content = self.catalog.content_of(text, text_mask, image, image_mask)
        return self.store.put_items([
            ItemChange(0, i.item_id, False, i.record, i.text_vec, True, i.image_vec, i.image_mask, e, self.catalog.model_version, c)
            for i, e, c in zip(items, embeddings, content)
        ])

    def hide(self, item_id: str) -> int:
        return self.store.hide(item_id)
