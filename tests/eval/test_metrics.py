import math

import numpy as np
import pytest

from dynrec.eval import metrics


def test_target_rank_counts_ties_against_the_target():
    scores = np.array([[0.9, 0.5, 0.5, 0.1], [0.2, 0.2, 0.2, 0.2]])
    # row 0: target 2 ties with item 1 (lower index) -> rank 2, never 1
    # row 1: all tied -> the target goes after all three others
    assert metrics.target_ranks(scores, np.array([2, 0])).tolist() == [2, 3]


def test_top_k_breaks_ties_by_item_index_and_pads_masked_rows():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [-np.inf, 0.3, -np.inf, -np.inf]])
    assert metrics.top_k(scores, 3).tolist() == [[1, 0, 2], [1, -1, -1]]


def test_rank_metrics_by_hand():
    ranks = np.array([0, 1, 4, 20])
    assert metrics.hit_rate(ranks, 5) == pytest.approx(3 / 4)
    assert metrics.ndcg(ranks, 5) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 0) / 4)
    assert metrics.mrr(ranks) == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 21) / 4)
    assert metrics.hit_rate(np.array([], dtype=int), 10) == 0.0
    assert metrics.ndcg_per_user(ranks, 5) == pytest.approx([1, 1 / math.log2(3), 1 / math.log2(6), 0])


def test_recall_with_several_targets():
    top = np.array([[3, 1, 7], [2, 5, -1]])
    targets = np.array([[1, 9, -1], [4, -1, -1]])
    assert metrics.recall_at_k(top, targets) == pytest.approx((1 / 2 + 0) / 2)
    assert metrics.recall_at_k(top, np.array([7, 5])) == pytest.approx(1.0)


def test_coverage_novelty_and_diversity_by_hand():
    top = np.array([[0, 1], [0, 2]])
    assert metrics.coverage(top, n_items=4) == pytest.approx(3 / 4)
    counts = np.array([4, 2, 1, 0])
    expected = (-math.log2(4 / 4) - math.log2(2 / 4) - math.log2(4 / 4) - math.log2(1 / 4)) / 4
    assert metrics.novelty(top, counts, n_users=4) == pytest.approx(expected)
    embeddings = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
    # list 0: orthogonal -> distance 1; list 1: identical direction -> distance 0
    assert metrics.intra_list_diversity(top, embeddings) == pytest.approx(0.5)
