"""Each user's long-term interests, beside the sequence model's short-term state: a few clusters of
the item vectors of what they liked, kept incrementally with decay.

An interest is the decayed sum of its items' vectors (its direction in the model's item space),
its decayed weight (its share of the history) and its heaviest items (what labels it, and what
rebuilds its direction under another model). Weights decay per liked event, not per second: a
history arrives in bursts (an ML-1M user rates dozens of films in one sitting), and what a
long-term share should forget is the events since, not the days.

Item vectors are read centred on the catalogue's mean (`ItemSpace`): a model's vectors can share
most of their direction (an untrained model's cosines are all near 0.99), and interests should
tell apart what sets items apart. Retrieval along a centred direction ranks items as it would in
the model's own space, since the mean only adds the same amount to every item's score.

A liked event ages every interest by one step and joins the nearest: O(k·d). The kept items are
clustered afresh (k-means) when the history reaches `events_per_interest` times 1, 2, ... k liked
events (one interest more is allowed each time), and again whenever it doubles after that; a
whole history at start-up is clustered the same way. Between those points, an event far from
every interest (cosine under `new_below`) starts one of its own while fewer than allowed, or
takes the place of one whose share fell under `min_share`, so a new taste can displace one that
faded. The objects are immutable: an update returns a new one, so a view read without the lock
sees one whole state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dynrec.config import InterestConfig
from dynrec.items.catalog import Catalog
from dynrec.ranking.ranker import liked
from dynrec.segments import kmeans, top_categories
from dynrec.users.shards import InterestSummary


@dataclass(frozen=True)
class ItemSpace:
    """One model's item vectors as interests read them: centred on its catalogue's mean."""

    catalog: Catalog
    centre: np.ndarray

    @classmethod
    def of(cls, catalog: Catalog) -> ItemSpace:
        return cls(catalog, catalog.score_sample.mean(axis=0))

    @property
    def model_version(self) -> str:
        return self.catalog.model_version

    def vectors(self, item_ids: list[str]) -> np.ndarray:
        return self.catalog.vectors(item_ids) - self.centre


@dataclass(frozen=True)
class Interest:
    items: dict[str, float]  # its heaviest items (at most `members`) and their weights, as of `clock`
    weight: float  # the decayed count of the events it took, as of `clock`
    direction: np.ndarray  # the decayed sum of those events' unit item vectors, as of `clock`
    clock: int  # the liked-event count at which these were last aged


@dataclass(frozen=True)
class UserInterests:
    interests: tuple[Interest, ...]
    events: int  # liked events folded in
    model_version: str  # the model whose item vectors the directions sum

    @classmethod
    def from_history(cls, item_ids: list[str], space: ItemSpace, settings: InterestConfig) -> UserInterests:
        """A whole liked history (oldest first) at once, as start-up reads it: each event weighted
        by its age, the items clustered into as many interests as the history allows."""
        events = len(item_ids)
        weights = decay(settings) ** (events - 1 - np.arange(events))
        vectors = space.vectors(item_ids) if item_ids else np.zeros((0, space.catalog.dim), np.float32)
        return cls(clustered(item_ids, weights, vectors, events, settings), events, space.model_version)

    def updated(self, item_id: str, space: ItemSpace, settings: InterestConfig) -> UserInterests:
        """With one more liked event, in `space` (this state's model's)."""
        events = self.events + 1
        if not self.interests or reclusters(events, settings):
            weights = {item_id: 1.0}
            for interest in self.interests:
                aged = decay(settings) ** (events - interest.clock)
                for kept, weight in interest.items.items():
                    weights[kept] = weights.get(kept, 0.0) + weight * aged
            ids = list(weights)
            return UserInterests(clustered(ids, np.array(list(weights.values())), space.vectors(ids), events, settings),
                                 events, self.model_version)
        unit = unit_rows(space.vectors([item_id]))[0]
        closeness = self.directions() @ unit
        nearest = int(np.argmax(closeness))
        interests = list(self.interests)
        if closeness[nearest] < settings.new_below:
            started = Interest({item_id: 1.0}, 1.0, unit, events)
            if len(interests) < allowed(events, settings):
                return UserInterests((*interests, started), events, self.model_version)
            shares = self.shares(settings, events)
            weakest = int(np.argmin(shares))
            if shares[weakest] < settings.min_share:
                interests[weakest] = started
                return UserInterests(tuple(interests), events, self.model_version)
        joined = interests[nearest]
        aged = decay(settings) ** (events - joined.clock)
        items = {i: w * aged for i, w in joined.items.items()}
        items[item_id] = items.get(item_id, 0.0) + 1.0
        if len(items) > settings.members:
            items = dict(sorted(items.items(), key=lambda pair: -pair[1])[: settings.members])
        interests[nearest] = Interest(items, joined.weight * aged + 1.0, (joined.direction * aged + unit).astype(np.float32), events)
        return UserInterests(tuple(interests), events, self.model_version)

    def rebased(self, space: ItemSpace) -> UserInterests:
        """The same interests in another model's `space`: each direction rebuilt from its kept items."""
        return UserInterests(
            tuple(Interest(i.items, i.weight, np.array(list(i.items.values()), np.float32) @ unit_rows(space.vectors(list(i.items))),
                           i.clock)
                  for i in self.interests),
            self.events, space.model_version)

    def shares(self, settings: InterestConfig, events: int | None = None) -> np.ndarray:
        """Each interest's share of the decayed history (as of `events`, default now); they sum to 1."""
        now = self.events if events is None else events
        weights = np.array([i.weight * decay(settings) ** (now - i.clock) for i in self.interests])
        return weights / weights.sum()

    def directions(self) -> np.ndarray:
        """(interests, dim) unit vectors: where each interest points in the (centred) item space."""
        return unit_rows(np.stack([i.direction for i in self.interests]))

    def summaries(self, settings: InterestConfig, categories_of: Callable[[str], list[str]],
                  title_of: Callable[[str], str]) -> list[InterestSummary]:
        """Readable interests, the largest first: the `settings.top_categories` categories of each
        one's kept items (by weight), and a label naming the first two and an item that has them
        (the heaviest of those that have the most of them)."""
        described = []
        for interest, share in sorted(zip(self.interests, self.shares(settings)), key=lambda pair: -pair[1]):
            categories = top_categories(interest.items.items(), categories_of, settings.top_categories)
            named = set(categories[:2])
            example = title_of(max(interest.items, key=lambda i: (len(named.intersection(categories_of(i))), interest.items[i])))
            label = f"{' & '.join(categories[:2])}, like “{example}”" if categories else f"Like “{example}”"
            described.append(InterestSummary(label, categories, float(share)))
        return described


def interests_of(space: ItemSpace, history: list[tuple[str, str, int, float]], settings: InterestConfig) -> UserInterests:
    """The interests of a history of (item id, event type, timestamp, value), oldest first: only
    what the user liked counts (dynrec.ranking.ranker.liked: a low rating is not an interest)."""
    catalog = space.catalog
    return UserInterests.from_history([e[0] for e in history if e[0] in catalog and liked(catalog, e)], space, settings)


def decay(settings: InterestConfig) -> float:
    """What one liked event leaves of every earlier one's weight."""
    return 0.5 ** (1.0 / settings.half_life_events) if settings.half_life_events > 0 else 1.0


def allowed(events: int, settings: InterestConfig) -> int:
    """How many interests `events` liked events may hold: one per `events_per_interest`, 1 to k."""
    return max(1, min(settings.k, events // settings.events_per_interest))


def reclusters(events: int, settings: InterestConfig) -> bool:
    """Whether the kept items are clustered afresh at this liked-event count: at each multiple of
    `events_per_interest` up to k of them (one interest more is allowed), then each time it doubles."""
    multiple, rest = divmod(events, settings.events_per_interest)
    if rest or multiple == 0:
        return False
    doublings, left = divmod(multiple, settings.k)
    return multiple <= settings.k or (left == 0 and doublings & (doublings - 1) == 0)


def clustered(item_ids: list[str], weights: np.ndarray, vectors: np.ndarray, events: int,
              settings: InterestConfig) -> tuple[Interest, ...]:
    """The items (an item may repeat) in as many interests as `events` allow, by k-means over
    their unit vectors; each keeps its `settings.members` heaviest items."""
    merged: dict[str, float] = {}
    rows: dict[str, int] = {}
    for row, (item_id, weight) in enumerate(zip(item_ids, weights)):
        merged[item_id] = merged.get(item_id, 0.0) + float(weight)
        rows.setdefault(item_id, row)
    ids = list(merged)
    weights = np.array([merged[i] for i in ids])
    unit = unit_rows(vectors[[rows[i] for i in ids]])
    k = min(allowed(events, settings), len(ids))
    labels = kmeans(unit.astype(np.float64), k, seed=0)[1] if k > 1 else np.zeros(len(ids), np.int64)
    interests = []
    for cluster in range(k):
        members = np.flatnonzero(labels == cluster)
        if not len(members):
            continue
        heaviest = members[np.argsort(-weights[members], kind="stable")[: settings.members]]
        interests.append(Interest({ids[m]: float(weights[m]) for m in heaviest}, float(weights[members].sum()),
                                  (weights[members] @ unit[members]).astype(np.float32), events))
    return tuple(interests)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)
