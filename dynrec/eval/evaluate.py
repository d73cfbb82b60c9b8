"""Full-ranking evaluation: every item is ranked, the user's known history is masked.

`ranked` gives each user's target rank and `evaluate` the metrics over one set of targets.
`leave_one_out_protocol` tunes a model's one hyper-parameter on validation, refits on train +
validation, and reports test metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from dynrec.data.interactions import Interactions
from dynrec.data.splits import LeaveOneOutSplit
from dynrec.eval import metrics
from dynrec.eval.recommender import Recommender


def ranked(
    model: Recommender,
    inputs: Interactions,
    targets: np.ndarray,
    *,
    k: int = 10,
    batch_size: int = 512,
    progress: bool = False,
    description: str = "evaluating",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank all items for every user with a target (>= 0), masking the user's `inputs` history:
    those users, each one's target rank (0 = first) and top-`k` items.

    The target itself is never masked, so a user who had already seen it still counts.
    """
    users = np.flatnonzero(targets >= 0)
    history = inputs.to_csr()
    ranks, tops = [], []
    for start in tqdm(range(0, len(users), batch_size), desc=description, disable=not progress, leave=False):
        batch = users[start : start + batch_size]
        batch_targets = targets[batch]
        scores = np.nan_to_num(model.score(inputs, batch).astype(np.float32, copy=True), nan=-np.inf)
        rows = np.arange(len(batch))
        target_scores = scores[rows, batch_targets]
        seen = history[batch].tocoo()
        scores[seen.row, seen.col] = -np.inf
        scores[rows, batch_targets] = target_scores
        ranks.append(metrics.target_ranks(scores, batch_targets))
        tops.append(metrics.top_k(scores, k))
    rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    top = np.concatenate(tops) if tops else np.zeros((0, k), dtype=np.int64)
    return users, rank, top


def evaluate(
    model: Recommender,
    inputs: Interactions,
    targets: np.ndarray,
    *,
    k: int = 10,
    batch_size: int = 512,
    item_embeddings: np.ndarray | None = None,
    progress: bool = False,
    description: str = "evaluating",
) -> dict[str, float]:
    """The metrics of `ranked`'s full ranking, averaged over the users with a target."""
    users, rank, top = ranked(model, inputs, targets, k=k, batch_size=batch_size, progress=progress, description=description)
    result = {
        f"hr@{k}": metrics.hit_rate(rank, k),
        f"ndcg@{k}": metrics.ndcg(rank, k),
        "mrr": metrics.mrr(rank),
        f"recall@{k}": metrics.recall_at_k(top, targets[users]),
        f"coverage@{k}": metrics.coverage(top, inputs.n_items),
        f"novelty@{k}": metrics.novelty(top, inputs.item_counts(), inputs.n_users),
        "users": int(len(users)),
    }
    if item_embeddings is not None:
        result[f"diversity@{k}"] = metrics.intra_list_diversity(top, item_embeddings)
    return result


@dataclass
class ProtocolResult:
    model: str
    test: dict[str, float]
    best_param: Any
    valid_ndcg: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def leave_one_out_protocol(
    name: str,
    make_model: Callable[[Any], Recommender],
    grid: Sequence[Any],
    split: LeaveOneOutSplit,
    *,
    k: int = 10,
    batch_size: int = 512,
    progress: bool = False,
) -> ProtocolResult:
    """Pick the grid value with the best validation NDCG@k, refit on train + validation, test."""
    started = time.perf_counter()
    valid_ndcg: dict[str, float] = {}
    best_param, best_score = grid[0], -1.0
    if len(grid) > 1:
        for param in tqdm(grid, desc=f"{name}: tuning", disable=not progress, leave=False):
            model = make_model(param).fit(split.train)
            score = evaluate(model, split.train, split.valid_targets, k=k, batch_size=batch_size)[f"ndcg@{k}"]
            valid_ndcg[str(param)] = score
            if score > best_score:
                best_param, best_score = param, score
    model = make_model(best_param).fit(split.test_input)
    test = evaluate(
        model, split.test_input, split.test_targets, k=k, batch_size=batch_size, progress=progress, description=f"{name}: test"
    )
    return ProtocolResult(name, test, best_param, valid_ndcg, time.perf_counter() - started)
