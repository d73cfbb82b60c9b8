import dataclasses

import numpy as np
import pytest

from dynrec.config import SASRecConfig
from dynrec.eval import MostPopular, SASRec, evaluate

# short sequences, few epochs and a larger step keep a fit on ML-100k within seconds on 2 cores
SHORT = SASRecConfig(
    max_length=30, learning_rate=3e-3, eval_every_steps=40, patience_steps=1000, max_epochs=10, max_minutes=0.0
)


@pytest.fixture(scope="module")
def trained(ml100k_split):
    return SASRec(SHORT).fit(ml100k_split.test_input)


def test_sasrec_loss_falls_and_validation_beats_popularity(trained, ml100k_split):
    popular = evaluate(MostPopular().fit(ml100k_split.train), ml100k_split.train, ml100k_split.valid_targets)
    assert trained.epoch_losses_[-1] < trained.epoch_losses_[0] - 0.3
    assert trained.training_["best_valid_ndcg@10"] > 1.3 * popular["ndcg@10"]


def test_sasrec_early_stops_on_the_splits_validation_items(trained, ml100k_split):
    """Fitted on train + validation, it holds out each user's last event: the split's validation item."""
    valid = evaluate(trained, ml100k_split.train, ml100k_split.valid_targets)["ndcg@10"]
    assert valid == pytest.approx(trained.training_["best_valid_ndcg@10"], abs=1e-6)
    figures = trained.training_
    assert figures["stopped_by"] == "epochs" and figures["epochs"] == SHORT.max_epochs
    assert figures["best_step"] % SHORT.eval_every_steps == 0 or figures["best_step"] == figures["steps"]


def test_sasrec_test_ranking_beats_popularity(trained, ml100k_split):
    split = ml100k_split
    popular = evaluate(MostPopular().fit(split.test_input), split.test_input, split.test_targets)["ndcg@10"]
    assert evaluate(trained, split.test_input, split.test_targets)["ndcg@10"] > 1.2 * popular


def test_sasrec_scores_read_the_newest_history(trained, ml100k_split):
    """The validation item, added to the input, changes what is ranked first (a causal model reads it)."""
    users = np.arange(50)
    before = trained.score(ml100k_split.train, users)
    after = trained.score(ml100k_split.test_input, users)
    assert before.shape == after.shape == (50, ml100k_split.train.n_items) and after.dtype == np.float32
    assert (before.argmax(axis=1) != after.argmax(axis=1)).mean() > 0.3


def test_sasrec_is_deterministic_and_stops_at_the_wall_clock_cap(ml100k_split):
    config = dataclasses.replace(SHORT, max_length=20, max_epochs=1, eval_every_steps=4)
    first, second = (SASRec(config).fit(ml100k_split.train) for _ in range(2))
    users = np.arange(20)
    assert np.array_equal(first.score(ml100k_split.train, users), second.score(ml100k_split.train, users))
    capped = SASRec(dataclasses.replace(config, max_epochs=100, max_minutes=1e-6)).fit(ml100k_split.train)
    assert capped.training_["stopped_by"] == "budget" and capped.training_["steps"] == 1
