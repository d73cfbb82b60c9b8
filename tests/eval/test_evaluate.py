import numpy as np
import pytest

from dynrec.eval import evaluate
from dynrec.eval.evaluate import ranked
from tests.conftest import make_interactions


class FixedScores:
    """A model that scores items by a fixed vector, whatever the user."""

    name = "fixed"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def fit(self, train):
        return self

    def score(self, histories, users):
        return np.tile(self.scores, (len(users), 1))


def test_history_is_masked_but_the_target_is_not():
    # user a has seen items 0 and 1 (the two best scored); the target 2 is next best -> rank 0
    # user b has seen item 2 before and it is also the target: it still counts, at rank 2
    inputs = make_interactions({"a": [(0, 1), (1, 2)], "b": [(2, 1), (4, 2)]}, n_items=5)
    model = FixedScores([0.9, 0.8, 0.7, 0.6, 0.5])
    result = evaluate(model, inputs, np.array([2, 2]), k=2)
    assert result["hr@2"] == pytest.approx(0.5)
    assert result["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert result["users"] == 2


def test_user_who_has_seen_every_item():
    # everything but the target is masked, so the target is first whatever its score
    inputs = make_interactions({"a": [(0, 1), (1, 2), (2, 3)]}, n_items=3)
    result = evaluate(FixedScores([0.9, 0.8, 0.0]), inputs, np.array([2]), k=1)
    assert result["hr@1"] == 1.0 and result["ndcg@1"] == 1.0
    assert result["coverage@1"] == pytest.approx(1 / 3)


def test_users_without_target_are_skipped_and_nan_scores_rank_last():
    inputs = make_interactions({"a": [(0, 1)], "b": [(1, 1)]}, n_items=4)
    result = evaluate(FixedScores([np.nan, 0.1, 0.2, 0.3]), inputs, np.array([-1, 0]), k=3)
    assert result["users"] == 1 and result["hr@3"] == 0.0


def test_batches_do_not_change_results(ml100k_split):
    model = FixedScores(ml100k_split.train.item_counts())
    one = evaluate(model, ml100k_split.train, ml100k_split.valid_targets, batch_size=10_000)
    many = evaluate(model, ml100k_split.train, ml100k_split.valid_targets, batch_size=37)
    assert one == many


def test_ranked_gives_each_target_users_rank_in_user_order():
    inputs = make_interactions({"a": [(0, 1), (1, 2)], "b": [(2, 1), (4, 2)], "c": [(3, 1)]}, n_items=5)
    users, ranks, top = ranked(FixedScores([0.9, 0.8, 0.7, 0.6, 0.5]), inputs, np.array([2, 2, -1]), k=2)
    assert users.tolist() == [0, 1] and ranks.tolist() == [0, 2]  # as in the masking test above
    assert top.tolist() == [[2, 3], [0, 1]]
