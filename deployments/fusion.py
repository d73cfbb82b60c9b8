"""Fusion deployment: turns an item's content vectors into its embedding and records the item.

It writes the item store, so every Ranker and UserState replica picks the change up. It switches
to a model `dynrec train` publishes like the other replicas do; a change fused by a model a replica
does not serve is fused again there.
"""

from __future__ import annotations

import numpy as np
from ray import serve

from deployments.common import (
    REPLICA_HEALTH_CHECK_PERIOD_S,
    load_published,
    load_served,
    state_store,
)
from dynrec.artifacts.versions import ModelWatcher, PublishedModel
from dynrec.items.ingest import EncodedItem
from dynrec.state import ItemChange


@serve.deployment(health_check_period_s=REPLICA_HEALTH_CHECK_PERIOD_S, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class Fusion:
    def __init__(self):
        served = load_served()
        self.store = state_store(served.config)
        self.current = (served, served.catalog(self.store))  # replaced whole when the model changes
        self.watcher = ModelWatcher(self.store, served.runtime.fingerprint, served.config.serving.model_poll_s, self._adopt,
                                    served.artifacts.manifest.text_model)

    def _adopt(self, published: PublishedModel) -> None:
        served = load_published(published)
        self.current = (served, served.catalog(self.store))

    def upsert(self, items: list[EncodedItem]) -> int:
        """Fuse and store items (new or changed) in one store transaction; returns its sequence number."""
        served, catalog = self.current
        catalog.sync(force=True)
        index = np.array([catalog.model_index[catalog.row[i.item_id]] if i.item_id in catalog else -1 for i in items])
        text, text_mask = np.stack([i.text_vec for i in items]), np.ones(len(items), bool)
        image, image_mask = np.stack([i.image_vec for i in items]), np.array([i.image_mask for i in items])
        embeddings = served.runtime.embed_items(
            index, text, text_mask, image, image_mask, np.stack([catalog.behaviour_features(i.item_id) for i in items]),
        )
        content = catalog.content_of(text, text_mask, image, image_mask)
        return self.store.put_items([
            ItemChange(0, i.item_id, False, i.record, i.text_vec, True, i.image_vec, i.image_mask, e, catalog.model_version, c)
            for i, e, c in zip(items, embeddings, content)
        ])

    def keep_images(self, images: dict[str, bytes]) -> None:
        """Keep uploaded image files (the item log holds only their vectors): the item page shows them."""
        self.store.put_images(images)

    def hide(self, item_id: str) -> int:
        return self.store.hide(item_id)
