import numpy as np
import pytest

from dynrec.config import DynrecConfig
from dynrec.eval import EASE, ItemKNN, MostPopular, compare, evaluate, leave_one_out_protocol
from tests.conftest import make_interactions


def test_ease_weights_have_zero_diagonal_and_solve_the_closed_form():
    train = make_interactions({"a": [(0, 1), (1, 2)], "b": [(1, 1), (2, 2)], "c": [(0, 1), (2, 2), (3, 3)]}, 4)
    model = EASE(l2=1.0).fit(train)
    assert np.allclose(np.diag(model.weights_), 0.0)
    gram = train.to_csr().T @ train.to_csr()
    gram = gram.toarray() + np.eye(4)
    # stationarity of min ||X - XB||^2 + λ||B||^2 s.t. diag(B)=0: off-diagonal of (G+λI)B - G vanishes
    residual = gram @ model.weights_ - (gram - np.eye(4))
    off_diagonal = residual - np.diag(np.diag(residual))
    assert np.allclose(off_diagonal, 0.0, atol=1e-5)


def test_itemknn_keeps_at_most_k_neighbours_per_item(ml100k_split):
    model = ItemKNN(neighbours=5).fit(ml100k_split.train)
    per_item = np.diff(model.similarity_.tocsc().indptr)
    assert per_item.max() <= 5
    assert np.allclose(model.similarity_.diagonal(), 0.0)


def test_most_popular_scores_training_counts(ml100k_split):
    model = MostPopular().fit(ml100k_split.train)
    scores = model.score(ml100k_split.train, np.array([0, 1]))
    assert np.array_equal(scores[0], ml100k_split.train.item_counts()) and np.array_equal(scores[0], scores[1])


def test_ease_and_itemknn_beat_popularity_on_ml100k(ml100k_split):
    results = {
        name: evaluate(model.fit(ml100k_split.train), ml100k_split.train, ml100k_split.valid_targets)["ndcg@10"]
        for name, model in [("pop", MostPopular()), ("itemknn", ItemKNN(100)), ("ease", EASE(200.0))]
    }
    assert results["ease"] > 1.5 * results["pop"]
    assert results["itemknn"] > results["pop"]


def test_protocol_tunes_on_validation_and_reports_test(ml100k_split):
    result = leave_one_out_protocol("ease", EASE, [10.0, 200.0], ml100k_split)
    assert set(result.valid_ndcg) == {"10.0", "200.0"}
    assert result.valid_ndcg[str(result.best_param)] == max(result.valid_ndcg.values())
    assert 0.0 < result.test["ndcg@10"] <= result.test["hr@10"] <= 1.0


def test_compare_rejects_unknown_models():
    with pytest.raises(ValueError, match="unknown model"):
        compare(["pop", "sasrec-from-the-future"], DynrecConfig().with_dataset("ml-100k"), progress=False)
