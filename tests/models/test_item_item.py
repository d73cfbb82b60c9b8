"""The item-item term (dynrec.ranking.item_item): the offline blend, its fit in training, and
the served term matching the blend it was chosen by."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dynrec.config import ItemItemConfig
from dynrec.eval.baselines import EASE, MostPopular
from dynrec.eval.evaluate import evaluate
from dynrec.models.item_item import Blend, fit_item_item, served_weights, sparsified, standardised, validation_ndcg
from dynrec.ranking.item_item import ItemItemWeights


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


def test_validation_ndcg_gives_the_protocols_figure_for_every_weight_in_one_pass(ml100k_split):
    split = ml100k_split
    popular, ease = MostPopular().fit(split.train), sparsified(EASE(200.0).fit(split.train), 50)
    by_weight = validation_ndcg(popular, ease, split.train, split.valid_targets, (0.0, 0.5, 2.0))
    for weight, figure in by_weight.items():
        assert figure == pytest.approx(evaluate(Blend(popular, ease, weight), split.train, split.valid_targets)["ndcg@10"], abs=1e-6)
    assert by_weight[2.0] > by_weight[0.0]


def test_fit_item_item_chooses_by_validation_tests_like_the_protocol_and_serves_weights_from_every_event(
        ml100k_split, ml100k_interactions):
    split, interactions = ml100k_split, ml100k_interactions
    popular = MostPopular().fit(split.train)
    config = ItemItemConfig(neighbours=30, weights=(0.0, 0.25, 1.0, 4.0))
    fit = fit_item_item(popular, split, interactions, interactions.item_ids, config)
    assert fit.weights.weight == max(fit.valid_ndcg, key=fit.valid_ndcg.get) and fit.weights.weight > 0
    refitted = sparsified(EASE(config.l2).fit(split.test_input), config.neighbours)
    blend = evaluate(Blend(popular, refitted, fit.weights.weight), split.test_input, split.test_targets)
    assert fit.test["ndcg@10"] == pytest.approx(blend["ndcg@10"], abs=1e-6)
    assert fit.test_alone["ndcg@10"] == pytest.approx(evaluate(popular, split.test_input, split.test_targets)["ndcg@10"])
    assert fit.test["ndcg@10"] > fit.test_alone["ndcg@10"]
    everything = sparsified(EASE(config.l2).fit(interactions), config.neighbours).weights_
    kept = fit.weights
    served = sp.csr_matrix((kept.data, kept.indices, kept.indptr), shape=everything.shape).toarray()
    assert np.array_equal(served != 0, everything != 0) and np.allclose(served, everything)
    assert fit.metrics()["item_item_weight"] == fit.weights.weight
    assert fit.metrics()["test_ndcg@10"] == fit.test["ndcg@10"]


def test_no_term_is_fitted_above_max_items_and_the_model_is_tested_alone(ml100k_split, ml100k_interactions):
    popular = MostPopular().fit(ml100k_split.train)
    fit = fit_item_item(popular, ml100k_split, ml100k_interactions, ml100k_interactions.item_ids, ItemItemConfig(max_items=100))
    assert fit.weights is None and fit.test == fit.test_alone and fit.metrics()["item_item_weight"] == 0.0


def test_served_weights_survive_a_save_and_load(ml100k_interactions, tmp_path):
    weights = served_weights(EASE(200.0).fit(ml100k_interactions), ml100k_interactions.item_ids, 0.25, 20)
    weights.save(tmp_path / "item_item.npz")
    loaded = ItemItemWeights.load(tmp_path / "item_item.npz")
    assert loaded.item_ids == list(ml100k_interactions.item_ids) and loaded.weight == 0.25
    assert all(np.array_equal(getattr(loaded, part), getattr(weights, part)) for part in ("indptr", "indices", "data"))
    assert ItemItemWeights.load(tmp_path / "none.npz") is None
