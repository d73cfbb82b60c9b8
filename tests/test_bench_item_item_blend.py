"""bench/item_item_blend.py's blend: weight 0 ranks as the model alone, a weight adds the
item-item model's standardised scores."""

from __future__ import annotations

import numpy as np

from bench.item_item_blend import Blend, sparsified, standardised
from dynrec.eval.baselines import EASE, MostPopular
from dynrec.eval.evaluate import evaluate


def test_standardised_rows_have_mean_zero_and_unit_spread():
    rows = standardised(np.array([[1.0, 2.0, 3.0, 10.0], [5.0, 5.0, 6.0, 4.0]]))
    assert np.allclose(rows.mean(axis=1), 0.0)
    assert np.allclose(rows.std(axis=1), 1.0, atol=1e-6)


def test_blend_weight_zero_keeps_the_models_ranking_and_a_weight_adds_the_item_item_scores(ml100k_split):
    split = ml100k_split
    popular, ease = MostPopular().fit(split.train), EASE(200.0).fit(split.train)

    def ndcg(model) -> float:
        return evaluate(model, split.train, split.valid_targets)["ndcg@10"]

    assert ndcg(Blend(popular, ease, 0.0)) == ndcg(popular)
    users = np.arange(5)
    expected = standardised(popular.score(split.train, users)) + 0.5 * standardised(ease.score(split.train, users))
    assert np.allclose(Blend(popular, ease, 0.5).score(split.train, users), expected, atol=1e-5)
    # EASE is far better than popularity on ML-100k, so adding it must lift the ranking
    assert ndcg(Blend(popular, ease, 1.0)) > 1.2 * ndcg(popular)


def test_sparsified_keeps_each_items_weights_of_largest_magnitude_only(ml100k_split):
    ease = EASE(200.0).fit(ml100k_split.train)
    kept = sparsified(ease, 20).weights_
    assert ((kept != 0).sum(axis=1) <= 20).all()
    for row in (0, 50, 500):
        weights = ease.weights_[row]
        largest = weights[np.argsort(-np.abs(weights))[:20]]
        assert np.allclose(np.sort(kept[row][kept[row] != 0]), np.sort(largest[largest != 0]))
    assert (kept < 0).any()  # EASE's negative weights are among what is kept
    assert sparsified(ease, 0) is ease
