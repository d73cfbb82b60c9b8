"""Evaluation: metrics, the full-ranking protocol, baselines and the comparison table."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dynrec.config import DynrecConfig
from dynrec.data import Interactions, leave_one_out, load_source
from dynrec.eval.baselines import EASE, ItemKNN, MostPopular
from dynrec.eval.evaluate import ProtocolResult, evaluate, leave_one_out_protocol
from dynrec.eval.recommender import Recommender
from dynrec.eval.sasrec import SASRec


def baseline_registry(config: DynrecConfig) -> dict[str, tuple[Callable[[Any], Recommender], Sequence[Any]]]:
    """Model name -> (factory taking the tuned hyper-parameter, grid to tune it over)."""
    return {
        "pop": (lambda _: MostPopular(), [None]),
        "itemknn": (ItemKNN, list(config.baselines.knn_neighbours)),
        "ease": (EASE, list(config.baselines.ease_lambdas)),
        "sasrec": (lambda _: SASRec(config.sasrec), [None]),
    }


def compare(models: Sequence[str], config: DynrecConfig, progress: bool = True) -> list[ProtocolResult]:
    """Load the configured source, split it leave-one-out, and run each named model through the protocol."""
    registry = baseline_registry(config)
    unknown = [m for m in models if m not in registry]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(registry)}")
    interactions = Interactions.from_dataset(load_source(config))
    split = leave_one_out(interactions, config.data.min_interactions)
    results = []
    for name in models:
        factory, grid = registry[name]
        results.append(
            leave_one_out_protocol(
                name, factory, grid, split, k=config.eval.k, batch_size=config.eval.user_batch_size, progress=progress
            )
        )
    return results


def format_table(dataset: str, results: Sequence[ProtocolResult], k: int = 10) -> str:
    header = f"{'dataset':<8} {'model':<10} {'HR@' + str(k):>7} {'NDCG@' + str(k):>8} {'MRR':>7} {'cov@' + str(k):>7} {'param':>8} {'time':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        t = r.test
        param = "-" if r.best_param is None else f"{r.best_param:g}"
        lines.append(
            f"{dataset:<8} {r.model:<10} {t[f'hr@{k}']:>7.4f} {t[f'ndcg@{k}']:>8.4f} {t['mrr']:>7.4f} "
            f"{t[f'coverage@{k}']:>7.3f} {param:>8} {r.seconds:>6.1f}s"
        )
    return "\n".join(lines)


__all__ = [
    "EASE",
    "ItemKNN",
    "MostPopular",
    "ProtocolResult",
    "Recommender",
    "SASRec",
    "baseline_registry",
    "compare",
    "evaluate",
    "format_table",
    "leave_one_out_protocol",
]
