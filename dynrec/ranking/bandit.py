"""Exploration: young items shown on purpose until their click-through rate is known, with a
click model shared across items through their content.

Evidence is the catalogue's attributed feedback (dynrec.items.feedback): per item, impressions
weighted by the chance their slot was looked at, and clicks.

Model. A young item's CTR has a Beta posterior: `prior_impressions` looked-at impressions' worth
of prior, at a mean its content predicts, plus its own evidence. The prediction is a ridge
regression of the young items' click rates on their vectors in the model's item space (the
content embedding a new item is served with), each item weighted by its looked-at impressions
and the fit pulled towards `prior_clicks / prior_impressions` with `content_weight` looked-at
impressions. Clicks on one item so move the estimate of every item like it, shown or not: on
the replay, the new items' interest is as smooth in that space as their content-only embeddings
are (bench/exploration.py).

Decision. An item is *settled* once it has been looked at `settle_after` times. While a request's
`pool` most relevant young items hold unsettled ones, `weight x k` of its slots (rounded at
random) go to them: those with the highest draws from their posteriors (Thompson sampling), each
taking a random slot of the list. A settled item is no longer explored; it is ranked like any other.
Exploration so spends a bounded number of impressions per new item, and spends them early,
which on the replay learns the new items' rank faster, for fewer clicks, than exploring at a
steady rate (epsilon-greedy): bench/results/exploration.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


@dataclass(frozen=True)
class ContentFit:
    """The shared part of the model: CTR predicted from an item's vector (intercept first)."""

    coefficients: np.ndarray

    def predict(self, vectors: np.ndarray, floor: float = 1e-4) -> np.ndarray:
        """CTR per row of `vectors`; a fit without evidence (intercept only) predicts the prior mean."""
        slope = self.coefficients[1:]
        linear = vectors @ slope if len(slope) else np.zeros(len(vectors))
        return np.clip(self.coefficients[0] + linear, floor, 1 - floor)


class ClickBandit:
    """The exploration policy over the catalogue's attributed feedback counts."""

    def __init__(self, config: ExplorationConfig, feedback: FeedbackCounts):
        self.config = config
        self.feedback = feedback
        self.prior_mean = config.prior_clicks / config.prior_impressions
        self._fit: tuple[tuple, ContentFit] | None = None  # (what it was fitted on, the fit)

    def evidence(self, item_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(times looked at, clicks) per item: impressions weighted by position (a clicked one was
        looked at), and clicks up to the impressions counted. The service counts an impression of
        every unsettled young item it serves (dynrec.ranking.ranker.counted_impressions); a click
        on an item served before it was young, or while settled, has none, and would read as a CTR
        of 1."""
        counts = self.feedback
        clicks = np.array([min(counts.clicks.get(i, 0), counts.impressions.get(i, 0)) for i in item_ids], dtype=np.float64)
        looked_at = np.array([counts.looked_at.get(i, 0.0) for i in item_ids], dtype=np.float64)
        return np.maximum(looked_at, clicks), clicks

    def fit(self, item_ids: list[str], vectors_of: Callable[[list[str]], np.ndarray]) -> ContentFit:
        """The ridge regression of click rates on vectors over those of these items with evidence
        (`vectors_of` gives their vectors), kept until the feedback or the items change."""
        shown, clicks = self.evidence(item_ids)
        seen = np.flatnonzero(shown > 0)
        key = (self.feedback.version, tuple(item_ids[r] for r in seen))
        if self._fit is not None and self._fit[0] == key:
            return self._fit[1]
        vectors = vectors_of(list(key[1])) if len(seen) else np.zeros((0, 0))
        dim = vectors.shape[1] if len(seen) else 0
        features = np.hstack([np.ones((len(seen), 1)), vectors])
        target = np.zeros(dim + 1)
        target[0] = self.prior_mean
        gram = self.config.content_weight * np.eye(dim + 1) + (features * shown[seen, None]).T @ features
        fit = ContentFit(np.linalg.solve(gram, features.T @ clicks[seen] + self.config.content_weight * target))
        self._fit = (key, fit)
        return fit

    def posterior(self, item_ids: list[str], vectors: np.ndarray, fit: ContentFit) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) of each item's CTR: the content prediction's prior plus its own evidence."""
        prior = self.config.prior_impressions
        mean = fit.predict(vectors)
        shown, clicks = self.evidence(item_ids)
        return prior * mean + clicks, prior * (1 - mean) + np.maximum(shown - clicks, 0.0)

    def means(self, item_ids: list[str], vectors: np.ndarray, fit: ContentFit) -> np.ndarray:
        """Posterior-mean CTR of each item."""
        alpha, beta = self.posterior(item_ids, vectors, fit)
        return alpha / (alpha + beta)

    def unsettled(self, item_ids: list[str]) -> np.ndarray:
        """Which items have been looked at fewer than `settle_after` times: those still explored."""
        shown, _ = self.evidence(item_ids)
        return shown < self.config.settle_after

    def choose(self, candidates: list[str], vectors: np.ndarray, slots: int, fit: ContentFit,
               rng: np.random.Generator) -> tuple[list[int], np.ndarray]:
        """Up to `slots` unsettled candidates with the highest Thompson draws: their indexes into
        `candidates` (`vectors` holds their vectors), and the draws."""
        if slots <= 0 or not candidates:
            return [], np.zeros(0)
        open_rows = np.flatnonzero(self.unsettled(candidates))
        if len(open_rows) == 0:
            return [], np.zeros(0)
        alpha, beta = self.posterior([candidates[r] for r in open_rows], vectors[open_rows], fit)
        draws = rng.beta(alpha, beta)
        best = np.argsort(-draws, kind="stable")[:slots]
        return [int(open_rows[r]) for r in best], draws[best]


def exploration_slots(k: int, weight: float, rng: np.random.Generator) -> int:
    """How many of `k` slots explore: `weight x k`, its fraction rounded up with that probability."""
    if weight <= 0:
        return 0
    expected = min(weight, 1.0) * k
    whole = math.floor(expected)
    return min(k, whole + int(rng.random() < expected - whole))


def explored_positions(k: int, n: int, rng: np.random.Generator) -> list[int]:
    """Where `n` explored items go in a list of `k`: distinct slots drawn at random, so an explored
    item is looked at as often as a list's average slot, not only its last."""
    return sorted(int(p) for p in rng.choice(k, size=min(n, k), replace=False))


def place(ranked: list, explored: list, k: int, rng: np.random.Generator) -> list:
    """A list of at most `k`: each explored item in a random slot (`explored_positions`). A ranked
    item in a chosen slot gives way and the others keep their places, as epsilon-greedy's picks
    take a slot's place; where the list has room, ranked items move down instead of leaving."""
    length = min(k, len(ranked) + len(explored))
    slots = explored_positions(length, len(explored), rng)
    spare = len(ranked) + len(slots) - length  # ranked items without room
    leaving = set([p for p in slots if p < len(ranked)][:spare])
    kept = iter([r for p, r in enumerate(ranked) if p not in leaving])
    picks = iter(explored)
    chosen = set(slots)
    return [next(picks) if p in chosen else next(kept) for p in range(length)]
