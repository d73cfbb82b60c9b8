"""Fusion deployment: turns an item's content vectors into its embedding and records the item.

It writes the item store, so every Ranker and UserState replica picks the change up.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.common import load_served, state_store
from dynrec.state import ItemChange


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class Fusion:
    def __init__(self):
        self.served = load_served()
        self.store = state_store(self.served.config)
        self.catalog = self.served.catalog(self.store)

    def upsert(self, item_id: str, record: dict, text: np.ndarray, text_mask: bool, image: np.ndarray, image_mask: bool) -> dict:
        """Fuse and store one item (new or changed); returns its store sequence and model version."""
        self.catalog.sync(force=True)
        known = item_id in self.catalog
        index = self.catalog.model_index[self.catalog.row[item_id]] if known else -1
        behaviour = self.catalog.behaviour_features(item_id)
        embedding = self.served.runtime.embed_items(
            np.array([index]), text[None], np.array([text_mask]), image[None], np.array([image_mask]), behaviour[None]
        )[0]
        seq = self.store.put_item(
            ItemChange(0, item_id, False, record, text, text_mask, image, image_mask, embedding, self.catalog.model_version)
        )
        return {"seq": seq, "model_version": self.catalog.model_version, "new": index < 0}

    def hide(self, item_id: str) -> int:
        return self.store.hide(item_id)
