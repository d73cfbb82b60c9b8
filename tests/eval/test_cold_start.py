import numpy as np
import pytest

from dynrec.data import cold_item_split
from dynrec.eval.cold_start import case_histories, content_knn_scores, random_expectation, rank_metrics


def test_case_histories_hold_exactly_the_earlier_training_events(ml100k_interactions):
    split = cold_item_split(ml100k_interactions, fraction=0.1, seed=3)
    histories, kept = case_histories(split)
    assert histories.n_users == len(kept) and np.all(split.case_history_lengths[kept] > 0)
    for row in range(0, len(kept), 211):
        case = kept[row]
        start = split.train.indptr[split.case_users[case]]
        expected = split.train.items[start : start + split.case_history_lengths[case]]
        assert np.array_equal(histories.sequence(row), expected)
        assert histories.timestamps[histories.indptr[row + 1] - 1] < split.case_timestamps[case]


def test_random_expectation_is_exact():
    expected = random_expectation(20, k=10)
    assert expected["hr@10"] == pytest.approx(0.5)
    assert expected["ndcg@10"] == pytest.approx(sum(1 / np.log2(r + 2) for r in range(10)) / 20)


def test_rank_metrics_and_content_knn_by_hand(ml100k_interactions):
    scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.3]])
    result = rank_metrics(scores, np.array([1, 2]), k=1)
    assert result["hr@1"] == pytest.approx(0.5)  # row 1 is all ties: the target loses them
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    from tests.conftest import make_interactions

    histories = make_interactions({"a": [(0, 1)], "b": [(0, 1), (1, 2)]}, 4)
    knn = content_knn_scores(histories, vectors, np.array([2, 3]))
    assert knn[0] == pytest.approx([np.sqrt(0.5), 1.0])
    assert knn[1] == pytest.approx([1.0, np.sqrt(0.5)])
