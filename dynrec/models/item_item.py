"""Fitting the item-item term at the end of training (dynrec.ranking.item_item serves it).

`fit_item_item` chooses the weight the term is added at on validation, reports the protocol's test
metrics with it, and fits the served weights on every event; `Blend` is the blended model as the
offline protocol ranks with it. Kept apart from the serving side, which must not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from dynrec.config import ItemItemConfig
from dynrec.data.interactions import Interactions
from dynrec.data.splits import LeaveOneOutSplit
from dynrec.eval import metrics
from dynrec.eval.baselines import EASE
from dynrec.eval.evaluate import evaluate
from dynrec.eval.recommender import Recommender
from dynrec.ranking.item_item import ItemItemWeights


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row to mean 0 and standard deviation 1, so two models' scores add on one scale."""
    scores = scores.astype(np.float64)
    return (scores - scores.mean(axis=1, keepdims=True)) / (scores.std(axis=1, keepdims=True) + 1e-9)


class Blend:
    """`Recommender` whose scores are a model's plus `weight` times an item-item model's, each
    standardised per user over the catalogue: what ranking serves, for the offline protocol."""

    def __init__(self, model: Recommender, item_item: Recommender, weight: float, name: str = "dynrec"):
        self.model, self.item_item, self.weight, self.name = model, item_item, weight, name

    def fit(self, train: Interactions) -> "Blend":
        return self

    def score(self, histories: Interactions, users: np.ndarray) -> np.ndarray:
        own = standardised(self.model.score(histories, users))
        if self.weight:
            own += self.weight * standardised(self.item_item.score(histories, users))
        return own.astype(np.float32)


def sparsified(model: EASE, neighbours: int) -> EASE:
    """`model` keeping only each item's `neighbours` weights of largest magnitude (0 keeps them
    all): n x neighbours numbers instead of n x n. The negative weights count: keeping the largest
    positive ones only cost the order-free ML-100k blend 0.149 -> 0.135 at 200 neighbours,
    against 0.147 by magnitude."""
    if not neighbours or neighbours >= model.weights_.shape[1]:
        return model
    weights = model.weights_
    dropped = np.argpartition(-np.abs(weights), neighbours, axis=1)[:, neighbours:]
    kept = EASE(model.l2)
    kept.weights_ = weights.copy()
    np.put_along_axis(kept.weights_, dropped, 0.0, axis=1)
    return kept


def served_weights(model: EASE, item_ids: list[str], weight: float, neighbours: int) -> ItemItemWeights:
    """`model`'s `neighbours` largest weights per item, as ranking reads them."""
    matrix = sp.csr_matrix(sparsified(model, neighbours).weights_)
    matrix.eliminate_zeros()
    return ItemItemWeights(list(item_ids), matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32),
                           matrix.data.astype(np.float32), float(weight))


def validation_ndcg(model: Recommender, item_item: Recommender, inputs: Interactions, targets: np.ndarray,
                    weights: tuple[float, ...], k: int = 10, batch_size: int = 512) -> dict[float, float]:
    """NDCG@k of `Blend(model, item_item, w)` for every w in `weights`, from one pass that scores
    each user once with both models (as `dynrec.eval.evaluate.ranked` ranks: full catalogue,
    the user's `inputs` history masked, the target kept)."""
    users = np.flatnonzero(targets >= 0)
    history = inputs.to_csr()
    totals = np.zeros(len(weights))
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        rows, batch_targets = np.arange(len(batch)), targets[batch]
        own = standardised(model.score(inputs, batch))
        other = standardised(item_item.score(inputs, batch))
        seen = history[batch].tocoo()
        for i, weight in enumerate(weights):
            scores = np.nan_to_num(own + weight * other, nan=-np.inf)
            target_scores = scores[rows, batch_targets]
            scores[seen.row, seen.col] = -np.inf
            scores[rows, batch_targets] = target_scores
            totals[i] += metrics.ndcg(metrics.target_ranks(scores, batch_targets), k) * len(batch)
    return {w: float(t / max(len(users), 1)) for w, t in zip(weights, totals)}


@dataclass
class ItemItemFit:
    """What training learns about the term: the served weights (None: not fitted), the validation
    NDCG@10 per weight, and the test metrics of the model with the chosen term and alone."""

    weights: ItemItemWeights | None
    valid_ndcg: dict[float, float]
    test: dict[str, float]
    test_alone: dict[str, float]

    def metrics(self, k: int = 10) -> dict[str, float | dict]:
        """The figures a run records (metrics.json): `test_*` are what ranking serves."""
        return {
            **{f"test_{key}": value for key, value in self.test.items()},
            "item_item_weight": self.weights.weight if self.weights is not None else 0.0,
            f"item_item_valid_ndcg@{k}": {str(w): v for w, v in self.valid_ndcg.items()},
            f"test_model_alone_ndcg@{k}": self.test_alone[f"ndcg@{k}"],
        }


def fit_item_item(model: Recommender, split: LeaveOneOutSplit, interactions: Interactions, item_ids: list[str],
                  config: ItemItemConfig, k: int = 10) -> ItemItemFit:
    """Choose the term's weight for the trained `model` on validation (EASE fitted on the training
    events), report test metrics as the protocol does (EASE refitted on train + validation), and
    fit the served weights on every event (`interactions`, whose items are `item_ids`). Above
    `config.max_items` items nothing is fitted and the model is tested alone."""
    alone = evaluate(model, split.test_input, split.test_targets, k=k)
    if interactions.n_items > config.max_items or not any(config.weights):
        return ItemItemFit(None, {}, alone, alone)
    on_train = sparsified(EASE(config.l2).fit(split.train), config.neighbours)
    valid = validation_ndcg(model, on_train, split.train, split.valid_targets, config.weights, k)
    weight = max(config.weights, key=lambda w: (valid[w], -w))  # the smallest weight among equals
    test = alone
    if weight:
        refitted = sparsified(EASE(config.l2).fit(split.test_input), config.neighbours)
        test = evaluate(Blend(model, refitted, weight), split.test_input, split.test_targets, k=k)
    served = served_weights(EASE(config.l2).fit(interactions), item_ids, weight, config.neighbours)
    return ItemItemFit(served, valid, test, alone)


