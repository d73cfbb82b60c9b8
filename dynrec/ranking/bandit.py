"""Exploration: Thompson sampling over new items' click-through rates.

Every item's CTR has a Beta posterior, Beta(prior_clicks + clicks, prior_misses + impressions -
clicks). Only feedback attributed to a recommendation counts: impressions and clicks that carry
the `recommendation_id` they answer. A request gives `weight x k` of its slots (rounded at random,
so the expected share is exact) to items younger than `max_age_days`: the most relevant `pool` of
them each draw a CTR from their posterior, and the highest draws win. A new item with no feedback
draws from the prior, so it gets shown; one that is shown and never clicked draws low and fades;
one that is clicked draws high and keeps its place until its behaviour speaks for it.

The counts are the catalogue's (dynrec.items.feedback): compacted and replayed with the rest of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dynrec.config import ExplorationConfig
from dynrec.items.feedback import FeedbackCounts


@dataclass(frozen=True)
class ExplorationSettings:
    """One request's exploration: the config's values unless the request overrides them."""

    weight: float
    max_age_days: float
    pool: int

    @classmethod
    def from_config(cls, config: ExplorationConfig, weight: float | None = None, max_age_days: float | None = None):
        return cls(
            config.weight if weight is None else weight,
            config.max_age_days if max_age_days is None else max_age_days,
            config.pool,
        )


class ClickBandit:
    """The exploration policy over the catalogue's attributed feedback counts."""

    def __init__(self, config: ExplorationConfig, feedback: FeedbackCounts):
        self.prior_clicks = config.prior_clicks
        self.prior_misses = max(config.prior_impressions - config.prior_clicks, 1e-3)
        self.feedback = feedback

    def posterior(self, item_id: str) -> tuple[float, float]:
        """(alpha, beta) of the item's CTR: impressions count by how likely their slot was looked at."""
        shown, clicks = self.feedback.evidence(item_id)
        return self.prior_clicks + clicks, self.prior_misses + shown - clicks

    def mean(self, item_id: str) -> float:
        alpha, beta = self.posterior(item_id)
        return alpha / (alpha + beta)

    def sample(self, item_ids: list[str], rng: np.random.Generator) -> np.ndarray:
        """One CTR draw per item from its posterior."""
        if not item_ids:
            return np.zeros(0)
        alpha, beta = np.array([self.posterior(i) for i in item_ids]).T
        return rng.beta(alpha, beta)


def exploration_slots(k: int, weight: float, rng: np.random.Generator) -> int:
    """How many of `k` slots explore: `weight x k`, its fraction rounded up with that probability."""
    if weight <= 0:
        return 0
    expected = min(weight, 1.0) * k
    whole = math.floor(expected)
    return min(k, whole + int(rng.random() < expected - whole))
