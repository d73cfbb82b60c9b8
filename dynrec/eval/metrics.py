"""Ranking metrics, vectorised over users (no Python loop per item).

`ranks` are 0-based positions of each user's held-out item in the full ranking.
"""

from __future__ import annotations

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target; every other item with an equal score counts as ahead of it.

    That is the pessimistic tie rule: a tie is never broken in the target's favour.
    """
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    ahead = (scores > target_scores) | (scores == target_scores)
    ahead[rows, targets] = False
    return ahead.sum(axis=1)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k best items, ties broken by lower item index; -1 pads rows with
    fewer than k rankable (finite-scored) items."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    finite = np.isfinite(np.take_along_axis(scores, order, axis=1))
    return np.where(finite, order, -1)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg_per_user(ranks: np.ndarray, k: int) -> np.ndarray:
    """With one relevant item the ideal DCG is 1, so NDCG is 1/log2(rank+2) inside the cut-off."""
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def ndcg(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ndcg_per_user(ranks, k))) if len(ranks) else 0.0


def mrr(ranks: np.ndarray) -> float:
    return float(np.mean(1.0 / (ranks + 1.0))) if len(ranks) else 0.0


def recall_at_k(top: np.ndarray, targets: np.ndarray) -> float:
    """Mean fraction of each user's relevant items found in their top-k.

    `targets` is (users, t) item indices padded with -1 (a 1-D array means one target per user).
    """
    targets = targets.reshape(len(targets), -1)
    valid = targets >= 0
    found = ((top[:, :, None] == targets[:, None, :]) & (top[:, :, None] >= 0)).any(axis=1) & valid
    counts = valid.sum(axis=1)
    has = counts > 0
    return float(np.mean(found.sum(axis=1)[has] / counts[has])) if has.any() else 0.0


def coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    shown = np.unique(top[top >= 0])
    return len(shown) / n_items if n_items else 0.0


def intra_list_diversity(top: np.ndarray, item_embeddings: np.ndarray) -> float:
    """Mean pairwise cosine distance inside each list (lists with fewer than two items are skipped)."""
    norms = np.linalg.norm(item_embeddings, axis=1, keepdims=True)
    unit = item_embeddings / np.where(norms > 0, norms, 1.0)
    valid = top >= 0
    vectors = unit[np.where(valid, top, 0)] * valid[:, :, None]
    similarity = np.einsum("uid,ujd->uij", vectors, vectors)
    n = valid.sum(axis=1)
    pairs = n * (n - 1)
    off_diagonal = similarity.sum(axis=(1, 2)) - np.einsum("uii->u", similarity)
    keep = pairs > 0
    return float(np.mean(1.0 - off_diagonal[keep] / pairs[keep])) if keep.any() else 0.0


def novelty(top: np.ndarray, item_counts: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(p(i)) of recommended items, p(i) = share of users who had item i.

    Items nobody had are given one pseudo-count so the figure stays finite.
    """
    valid = top >= 0
    if not valid.any():
        return 0.0
    p = np.maximum(item_counts, 1) / max(n_users, 1)
    return float(np.mean(-np.log2(p[top[valid]])))
