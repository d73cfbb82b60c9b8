"""Ranking: retrieval over the item index, business filters, optional MMR diversity, and a
readable reason for every result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynrec.serving.catalog import Catalog
from dynrec.serving.users import UserView

VERBS = {"rating": "rated", "view": "viewed", "click": "clicked", "add_to_cart": "added to your cart", "purchase": "bought"}


@dataclass
class Filters:
    include_categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    exclude_item_ids: list[str] = field(default_factory=list)

    def accepts(self, catalog: Catalog):
        include = {c.casefold() for c in self.include_categories}
        exclude = {c.casefold() for c in self.exclude_categories}
        if not include and not exclude:
            return None

        def accept(item_id: str) -> bool:
            categories = {c.casefold() for c in catalog.item(item_id).categories}
            return (not include or bool(categories & include)) and not (categories & exclude)

        return accept


@dataclass
class Ranked:
    item_id: str
    score: float
    reason: str


def recommend(
    catalog: Catalog,
    user: UserView,
    k: int,
    filters: Filters,
    exclude_seen: bool,
    candidates: int,
    diversity: float,
    new_item_slots: int = 1,
) -> list[Ranked]:
    """Top-k for `user`; users without an embedding (unknown, or no events yet) get what is popular.

    Up to `new_item_slots` per 10 results go to new items (added while serving, so without
    behaviour or a trained ID) whose content is closest to the user's recent history: they are
    served from content alone from the moment they are upserted.
    """
    exclude = set(filters.exclude_item_ids) | catalog.hidden
    if exclude_seen:
        exclude |= user.seen
    accept = filters.accepts(catalog)
    if user.embedding is None:
        return [Ranked(i, 0.0, "Popular right now") for i in catalog.popular(exclude, k, accept)]
    ids, scores = catalog.index.search(user.embedding, max(k, candidates) if diversity > 0 else k, exclude, accept)
    if diversity > 0 and len(ids) > k:
        ids, scores = mmr(catalog, ids, scores, k, diversity)
    ranked = [Ranked(i, float(s), reason_for(catalog, i, user)) for i, s in zip(ids, scores)]
    slots = new_item_slots * k // 10
    if slots and len(catalog.fresh_index):
        fresh = [f for f in new_items_for(catalog, user, slots, exclude, accept) if f.item_id not in set(ids)]
        ranked = ranked[: k - len(fresh)] + fresh
    return ranked


def new_items_for(catalog: Catalog, user: UserView, k: int, exclude: set[str], accept) -> list[Ranked]:
    """New items closest in content to the user's recent history (the mean of its content vectors)."""
    recent = [h[0] for h in user.recent[:20] if h[0] in catalog]
    if not recent:
        return []
    profile = np.mean([catalog.content_vector(i) for i in recent], axis=0)
    profile /= max(float(np.linalg.norm(profile)), 1e-12)
    ids, scores = catalog.fresh_index.search(profile, k, exclude, accept)
    return [Ranked(i, float(s), reason_for(catalog, i, user)) for i, s in zip(ids, scores)]


def mmr(catalog: Catalog, ids: list[str], scores: np.ndarray, k: int, diversity: float) -> tuple[list[str], np.ndarray]:
    """Maximal marginal relevance: each pick trades relevance against similarity to earlier picks."""
    vectors = np.stack([catalog.vector(i) for i in ids])
    chosen: list[int] = []
    closest = np.full(len(ids), -np.inf)
    for _ in range(k):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = (1 - diversity) * scores - diversity * penalty
        value[chosen] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        closest = np.maximum(closest, vectors @ vectors[pick])
    return [ids[c] for c in chosen], scores[chosen]


def reason_for(catalog: Catalog, item_id: str, user: UserView, recent: int = 20) -> str:
    """"Similar to <the recent history item closest to it in content>", flagged when the item is new."""
    history = [h for h in user.recent[:recent] if h[0] in catalog]
    prefix = "new item, " if catalog.is_new(item_id) else ""
    if not history:
        return sentence(f"{prefix}matches your interests")
    target = catalog.content_vector(item_id)
    similarities = [float(catalog.content_vector(h[0]) @ target) for h in history]
    item, event_type, _, value = history[int(np.argmax(similarities))]
    verb = VERBS.get(event_type, "interacted with")
    detail = f" {value:g}★" if event_type == "rating" else ""
    return sentence(f"{prefix}similar to “{catalog.item(item).title}”, which you {verb}{detail}")


def similar_items(catalog: Catalog, item_id: str, k: int, filters: Filters) -> list[Ranked]:
    """Items closest in content to one item (the item itself and hidden items excluded)."""
    exclude = {item_id} | set(filters.exclude_item_ids) | catalog.hidden
    ids, scores = catalog.content_index.search(catalog.content_vector(item_id), k, exclude, filters.accepts(catalog))
    title = catalog.item(item_id).title
    return [Ranked(i, float(s), sentence(f"similar to “{title}”")) for i, s in zip(ids, scores)]


def sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
