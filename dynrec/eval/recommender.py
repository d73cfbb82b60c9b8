"""The one small interface every model in the comparison table implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from dynrec.data.interactions import Interactions


class Recommender(Protocol):
    name: str

    def fit(self, train: Interactions) -> "Recommender":
        """Learn from the training interactions; returns self."""
        ...

    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        """Scores over all items, (len(users), n_items) float32, for the given users' histories."""
        ...
