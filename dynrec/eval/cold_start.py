"""The cold-item protocol: rank each case's new item among all new items, from content only."""

from __future__ import annotations

import numpy as np

from dynrec.data.interactions import Interactions
from dynrec.data.splits import ColdItemSplit
from dynrec.eval import metrics


def case_histories(split: ColdItemSplit) -> tuple[Interactions, np.ndarray]:
    """One pseudo-user per case whose events are the user's training events before the case.

    Cases with no earlier history are left out; the second value holds the kept case indices.
    """
    keep = np.flatnonzero(split.case_history_lengths > 0)
    lengths = split.case_history_lengths[keep]
    starts = split.train.indptr[split.case_users[keep]]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.repeat(starts, lengths) + offsets
    train = split.train
    histories = Interactions(
        np.array([str(i) for i in keep], dtype=object),
        train.item_ids,
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        train.items[positions],
        train.timestamps[positions],
        train.values[positions],
        train.event_types[positions],
        train.event_type_names,
    )
    return histories, keep


def rank_metrics(scores: np.ndarray, target_columns: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of each row's target column among the candidate columns (ties pessimistic)."""
    ranks = metrics.target_ranks(scores, target_columns)
    return {f"hr@{k}": metrics.hit_rate(ranks, k), f"ndcg@{k}": metrics.ndcg(ranks, k)}


def random_expectation(n_candidates: int, k: int = 10) -> dict[str, float]:
    """Exact expected HR@k and NDCG@k when the target's rank is uniform over the candidates."""
    ranks = np.arange(n_candidates)
    return {f"hr@{k}": metrics.hit_rate(ranks, k), f"ndcg@{k}": metrics.ndcg(ranks, k)}


def content_knn_scores(histories: Interactions, item_vectors: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Cosine between each history's mean item vector and every candidate's vector."""
    unit = item_vectors / np.maximum(np.linalg.norm(item_vectors, axis=1, keepdims=True), 1e-12)
    # the sparse history matrix sums the vectors without gathering one per event
    sums = np.asarray(histories.to_csr() @ unit)
    profiles = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return profiles @ unit[candidates].T
