"""Item ID vectors that start from co-occurrence: items that follow each other start close, and an
untrained model so started already ranks users' next items far above a random start."""

import numpy as np
import pytest

from dynrec.config import DynrecConfig, TrainConfig
from dynrec.models.item_init import cooccurrence_factors
from dynrec.models.training import SequenceTrainer
from tests.conftest import make_interactions


def test_items_that_follow_each_other_start_closer_than_items_that_never_meet():
    # items 0-3 are watched in a run by some users, 4-7 by others; 8 is watched alone
    runs = {f"a{u}": [(i, 10 * i + u) for i in (0, 1, 2, 3)] for u in range(6)}
    runs |= {f"b{u}": [(i, 10 * i + u) for i in (4, 5, 6, 7)] for u in range(6)}
    runs["loner"] = [(8, 1)]
    factors = cooccurrence_factors(make_interactions(runs, 9), dim=4)
    cosine = factors @ factors.T
    assert np.allclose(np.linalg.norm(factors[:8], axis=1), 1.0, atol=1e-5)
    assert cosine[0, 1] > 0.9 and cosine[4, 5] > 0.9
    assert abs(cosine[0, 4]) < 0.1
    assert np.isfinite(factors[8]).all() and np.linalg.norm(factors[8]) > 0  # a random start, as before


def test_nothing_that_co_occurs_falls_back_to_random_rows():
    factors = cooccurrence_factors(make_interactions({"u": [(0, 1)], "v": [(1, 2)]}, 2), dim=8)
    assert factors.shape == (2, 8) and np.isfinite(factors).all()
    with pytest.raises(ValueError, match="item_init"):
        TrainConfig(item_init="svd")


def test_an_untrained_model_started_from_cooccurrence_ranks_next_items_far_better(ml100k, ml100k_split):
    """Step 0, no training at all, on ML-100k's validation items: the co-occurrence start is what
    lets a few epochs (the quickstart's bootstrap model) serve far better than popularity."""
    n = ml100k_split.train.n_items
    from dynrec.models.model import Catalogue

    catalogue = Catalogue.from_arrays(np.zeros((n, 4)), np.zeros(n, bool), np.zeros((n, 3)), np.zeros(n, bool))
    created_at = ml100k.items["created_at"].cast("int64").fill_null(-1).to_numpy()
    scores = {}
    for init in ("random", "cooccurrence"):
        config = DynrecConfig()
        config.model.modalities, config.model.dim, config.model.max_length = ("id",), 32, 50
        config.train.item_init = init
        scores[init] = SequenceTrainer(config, ml100k_split, catalogue, created_at).validate()["ndcg@10"]
    assert scores["cooccurrence"] > 2 * scores["random"]
    assert scores["cooccurrence"] > 0.03  # above ML-100k's popularity level (0.025 on test)
