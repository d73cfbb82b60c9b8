"""Does each modality pay for itself? Paired per-user test differences of the trained ablation runs.

    .venv/bin/python -m bench.ablation [--datasets ml-100k,ml-1m]

Reads the models that `python -m bench.accuracy --models dynrec,dynrec-no-text,dynrec-no-image,
dynrec-no-behaviour` trained (to early stopping, default settings) under the same DYNREC_HOME,
ranks the test split with each (DESIGN.md's full-ranking protocol), and compares every
leave-one-out variant with the full model user by user: the full model's NDCG@10 minus the
variant's, for each test user, with a 95% bootstrap interval over users. A modality pays for
itself when its interval lies above zero. Pairing removes the users' own spread, but with one
held-out item per user two models still disagree user by user, so on ML-100k's 943 users the
interval stays about +-0.01 wide. Runs that are missing are skipped; a run whose ranking
here does not reproduce its own recorded test figure (it learnt from other data) stops the bench.

Writes bench/results/ablation.json and ablation.png (the differences with their intervals).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.accuracy import dynrec_config
from bench.common import RESULTS_DIR, write_results
from dynrec.encoders.behaviour import time_bucket_edges
from dynrec.eval.evaluate import ranked
from dynrec.eval.metrics import ndcg_per_user
from dynrec.models.inputs import prepare_inputs
from dynrec.models.model import load_model
from dynrec.models.training import SequenceScorer

LEFT_OUT = {"dynrec-no-text": "text", "dynrec-no-image": "image", "dynrec-no-behaviour": "behaviour"}


def user_ndcg(dataset: str, variant: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(test targets, each test user's NDCG@10) under a variant's trained model; None when it was
    not trained. Raises when the ranking does not reproduce the run's own recorded test NDCG@10:
    the run then saw other data than the dataset's files (a run trained on a store's live events)."""
    config = dynrec_config(dataset, variant)
    path = config.paths.model(config.run_name)
    if not path.is_file():
        return None
    model, _, recorded = load_model(path)
    inputs = prepare_inputs(config, progress=False)
    split = inputs.split
    edges = time_bucket_edges(split.train.timestamps, config.behaviour.time_buckets)
    scorer = SequenceScorer(model.eval(), inputs.catalogue, inputs.created_at, config, edges)
    users, ranks, _ = ranked(scorer, split.test_input, split.test_targets, k=config.eval.k)
    ndcg = ndcg_per_user(ranks, config.eval.k)
    if abs(float(ndcg.mean()) - recorded.get("test_ndcg@10", np.nan)) > 1e-6:
        raise ValueError(f"{path}: test NDCG@10 {ndcg.mean():.4f} on {dataset}'s files, but the run recorded "
                         f"{recorded.get('test_ndcg@10')}: it was trained on other data; train it again")
    return split.test_targets[users], ndcg


def paired_difference(full: np.ndarray, variant: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of full - variant over the same users, with a percentile bootstrap 95% interval."""
    difference = full - variant
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), (resamples, len(difference)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"full_ndcg@10": float(full.mean()), "variant_ndcg@10": float(variant.mean()),
            "gain": float(difference.mean()), "gain_ci95": [float(low), float(high)],
            "users_better": int((difference > 0).sum()), "users_worse": int((difference < 0).sum()),
            "users": int(len(difference))}


def plot(results: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{dataset}: {modality}", r) for dataset, by in results.items() for modality, r in by.items()]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.6))
    for y, (label, r) in enumerate(rows):
        low, high = r["gain_ci95"]
        colour = "tab:green" if low > 0 else "tab:red" if high < 0 else "tab:grey"
        ax.errorbar(r["gain"], y, xerr=[[r["gain"] - low], [high - r["gain"]]], fmt="o", color=colour, capsize=4)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("test NDCG@10: full model minus the model without it (95% interval over users)")
    ax.set_title("What each modality adds, at convergence (paired by user)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    args = parser.parse_args()
    results: dict[str, dict[str, dict]] = {}
    for dataset in args.datasets.split(","):
        full = user_ndcg(dataset, "dynrec")
        if full is None:
            print(f"{dataset}: no trained full model; run `python -m bench.accuracy --datasets {dataset} --models dynrec`")
            continue
        for variant, modality in LEFT_OUT.items():
            other = user_ndcg(dataset, variant)
            if other is None:
                continue
            if not np.array_equal(full[0], other[0]):
                raise ValueError(f"{dataset}: {variant} was tested on other users or items than the full model")
            results.setdefault(dataset, {})[modality] = {"run": dynrec_config(dataset, variant).run_name,
                                                         **paired_difference(full[1], other[1])}
    print(f"\n{'dataset':<9} {'without':<10} {'full':>7} {'without':>8} {'gain':>8} {'95% interval':>20} {'better/worse':>13}")
    for dataset, by in results.items():
        for modality, r in by.items():
            low, high = r["gain_ci95"]
            print(f"{dataset:<9} {modality:<10} {r['full_ndcg@10']:>7.4f} {r['variant_ndcg@10']:>8.4f} {r['gain']:>+8.4f} "
                  f"{f'[{low:+.4f}, {high:+.4f}]':>20} {r['users_better']:>6}/{r['users_worse']:<6}")
    if results:
        path = write_results("ablation", results, merge=True)
        plot(json.loads(path.read_text()), RESULTS_DIR / "ablation.png")  # every dataset measured so far
        print(f"\nwrote {path} and {RESULTS_DIR / 'ablation.png'}")


if __name__ == "__main__":
    main()
