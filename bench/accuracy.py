"""Sequential accuracy (DESIGN.md protocol): full ranking, leave-one-out, on ML-1M partial and ML-100k.

    .venv/bin/python -m bench.accuracy [--datasets ml-1m,ml-100k] [--models pop,itemknn,ease,sasrec,dynrec,dynrec-id]
                                       [--reuse] [--epochs N] [--cut-users N] [--weak-order]

The ablation at convergence trains the full model without one modality each, with the defaults
(early stopping on validation): `--models dynrec-no-text,dynrec-no-image,dynrec-no-behaviour`.

Baselines are tuned on validation and refitted; SASRec early-stops on validation instead, and its
training figures go to training.json beside dynrec's. dynrec rows are trained with Ray Train from
configs/<dataset>.yaml on the dataset's files (not the live events a home's store may hold), with
early stopping on validation NDCG@10, and their test rows are the model with the item-item term
its training chose (dynrec.models.item_item; the model alone is in training.json); `--reuse`
takes a finished run's test metrics from <home>/artifacts/<run>/metrics.json instead of training
again (fitting the term for a run trained before it).
`--epochs N` trains every dynrec row for exactly N epochs with no time budget or early stop (the
modality ablation: equal work per variant, unaffected by other load on the machine); its rows and
runs are named `<model>@<N>ep`.

`--cut-users N` evaluates every row on a seeded sample of N of the dataset's users with all their
events and the whole catalogue, written as a source folder of its own (`<dataset>-<N>u` under
`<home>/cuts`): the defaults on a small, sparse dataset, such as a 610-user MovieLens release.
`--weak-order` deals each user's timestamps to their events in a seeded random order (row
`<dataset>-shuffled`): the defaults where the order says nothing, as in a review log.

Writes bench/results/accuracy.json as {dataset: {model: {hr@10, ndcg@10, mrr, coverage@10}}},
merging into the rows already there, and each dynrec run's training figures to
bench/results/training.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import write_results
from dynrec.config import DynrecConfig, SourceConfig
from dynrec.data import Interactions, leave_one_out, load_source
from dynrec.eval import ProtocolResult, SASRec, compare, format_table, leave_one_out_protocol

REPORTED = ("hr@10", "ndcg@10", "mrr", "coverage@10")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# dynrec rows: the model name -> the item modalities it fuses (None keeps the config's, i.e. all)
DYNREC_VARIANTS: dict[str, tuple[str, ...] | None] = {
    "dynrec": None,
    "dynrec-id": ("id",),
    "dynrec-id+text": ("id", "text"),
    "dynrec-id+image": ("id", "image"),
    "dynrec-id+behaviour": ("id", "behaviour"),
    # leave-one-out ablation at convergence: the full model without one modality, default settings
    "dynrec-no-text": ("id", "image", "behaviour"),
    "dynrec-no-image": ("id", "text", "behaviour"),
    "dynrec-no-behaviour": ("id", "text", "image"),
}


def dynrec_config(dataset: str, variant: str, epochs: int | None = None, source: SourceConfig | None = None) -> DynrecConfig:
    """The run's config: configs/<dataset>.yaml on the bundled dataset, or on `source` (a user cut)."""
    path = CONFIGS / f"{dataset}.yaml"
    config = DynrecConfig.load(path if path.exists() else None)
    config.source.dataset = dataset
    if source is not None:
        config.source = source
    # the protocol's data: the dataset's files, never the live events a home's store has taken
    # from serving or from other benchmarks (with them the splits, and so the rows, would differ)
    config.train.data = "source"
    if DYNREC_VARIANTS[variant] is not None:
        config.model.modalities = DYNREC_VARIANTS[variant]
    if epochs is not None:
        config.train.epochs, config.train.max_minutes, config.train.patience = epochs, 0.0, epochs
        config.train.run_name = f"{config.source.label}-{variant}@{epochs}ep"
    return config


def user_cut(config: DynrecConfig, users: int) -> DynrecConfig:
    """The config reading a seeded sample of `users` of its source's users (every event of theirs,
    the whole catalogue), written once as Parquet under `<home>/cuts/<label>-<users>u`."""
    label = f"{config.source.label}-{users}u"
    folder = config.home / "cuts" / label
    if not (folder / "events.parquet").is_file():
        dataset = load_source(config)
        everyone = np.unique(np.asarray(dataset.events["user_id"].to_pylist(), dtype=object))
        keep = pa.array(np.random.default_rng(0).choice(everyone, users, replace=False).tolist(), pa.string())
        users_table = dataset.users.filter(pc.is_in(dataset.users["user_id"], value_set=keep)) if dataset.users is not None else None
        _write_source(folder, dataset.items, dataset.events.filter(pc.is_in(dataset.events["user_id"], value_set=keep)), users_table)
    return dataclasses.replace(config, source=dataclasses.replace(config.source, uri=str(folder), name=label))


def weak_order(config: DynrecConfig) -> DynrecConfig:
    """The config reading its source with each user's timestamps dealt out to that user's events in
    a seeded random order (`<home>/cuts/<label>-shuffled`): the same users, items and counts, with
    an order that says nothing, as in a review log where the date of a review says little about
    what the reviewer bought next. The test and validation items become random picks of each
    user's history, where co-occurrence models such as EASE are strongest."""
    label = f"{config.source.label}-shuffled"
    folder = config.home / "cuts" / label
    if not (folder / "events.parquet").is_file():
        dataset = load_source(config)
        events = dataset.events
        users = pc.dictionary_encode(events["user_id"]).combine_chunks().indices.to_numpy()
        stamps = events["timestamp"].cast(pa.int64()).to_numpy()
        by_time = np.lexsort((stamps, users))  # each user's events in time order, users in blocks
        by_chance = np.lexsort((np.random.default_rng(0).random(len(users)), users))  # the same blocks, shuffled inside
        dealt = np.empty_like(stamps)
        dealt[by_chance] = stamps[by_time]
        column = pa.array(dealt, pa.int64()).cast(events.schema.field("timestamp").type)
        events = events.set_column(events.schema.get_field_index("timestamp"), "timestamp", column)
        _write_source(folder, dataset.items, events, dataset.users)
    return dataclasses.replace(config, source=dataclasses.replace(config.source, uri=str(folder), name=label))


def derived(config: DynrecConfig, cut_users: int = 0, shuffled: bool = False) -> tuple[DynrecConfig, SourceConfig | None]:
    """The config on the user cut and/or the order-free variant the flags ask for, and that
    derived source for the dynrec runs (None when the bundled dataset is read as it is)."""
    if cut_users:
        config = user_cut(config, cut_users)
    if shuffled:
        config = weak_order(config)
    return config, config.source if cut_users or shuffled else None


def _write_source(folder: Path, items: pa.Table, events: pa.Table, users: pa.Table | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(items, folder / "items.parquet")
    if users is not None:
        pq.write_table(users, folder / "users.parquet")
    pq.write_table(events, folder / "events.parquet")


def dynrec_run(config: DynrecConfig, reuse: bool) -> dict:
    """Final metrics of a training run: read back with `reuse`, else trained now."""
    from training.train import add_item_item, run_training

    saved = config.paths.run(config.run_name) / "metrics.json"
    if reuse and saved.exists():
        summary = json.loads(saved.read_text())
        # a run from before the item-item term: fitted now, as its training would have
        return summary if "item_item_weight" in summary else add_item_item(config)
    return run_training(config)


def sasrec_protocol(config: DynrecConfig) -> tuple[ProtocolResult, dict]:
    """SASRec through the protocol as `compare` runs it, keeping the fitted model's training figures."""
    fitted: list[SASRec] = []

    def make(_: object) -> SASRec:
        fitted.append(SASRec(config.sasrec))
        return fitted[-1]

    split = leave_one_out(Interactions.from_dataset(load_source(config)), config.data.min_interactions)
    result = leave_one_out_protocol(
        "sasrec", make, [None], split, k=config.eval.k, batch_size=config.eval.user_batch_size, progress=True
    )
    return result, fitted[-1].training_


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("dynrec.eval.sasrec").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-1m,ml-100k")
    parser.add_argument("--models", default="pop,itemknn,ease")
    parser.add_argument("--reuse", action="store_true", help="reuse finished dynrec runs instead of training")
    parser.add_argument("--epochs", type=int, help="train every dynrec row for exactly this many epochs")
    parser.add_argument("--cut-users", type=int, default=0, help="evaluate on a seeded sample of this many users")
    parser.add_argument("--weak-order", action="store_true",
                        help="deal each user's timestamps to their events at random (a seeded, order-free variant)")
    parser.add_argument("--config")
    args = parser.parse_args()
    config = DynrecConfig.load(args.config)
    models = args.models.split(",")
    unknown = [m for m in models if m.startswith("dynrec") and m not in DYNREC_VARIANTS]
    if unknown:
        parser.error(f"unknown dynrec variant(s) {unknown}; choose from {sorted(DYNREC_VARIANTS)}")
    baselines = [m for m in models if m not in DYNREC_VARIANTS]
    table: dict[str, dict[str, dict[str, float]]] = {}
    training: dict[str, dict[str, dict]] = {}
    for bundled in args.datasets.split(","):
        source, derived_source = derived(config.with_dataset(bundled), args.cut_users, args.weak_order)
        dataset = source.source.label
        rows = table.setdefault(dataset, {})
        others = [m for m in baselines if m != "sasrec"]
        results = compare(others, source) if others else []
        if "sasrec" in baselines:
            result, figures = sasrec_protocol(source)
            results.append(result)
            training.setdefault(dataset, {})["sasrec"] = {"run": f"sasrec-{dataset}", **figures}
        if results:
            print(format_table(dataset, results, config.eval.k))
            rows.update({r.model: {key: round(r.test[key], 6) for key in REPORTED} for r in results})
        for variant in (m for m in models if m in DYNREC_VARIANTS):
            run_config = dynrec_config(bundled, variant, args.epochs, derived_source)
            summary = dynrec_run(run_config, args.reuse)
            row_name = variant if args.epochs is None else f"{variant}@{args.epochs}ep"
            rows[row_name] = {key: round(summary[f"test_{key}"], 6) for key in REPORTED}
            training.setdefault(dataset, {})[row_name] = {
                "run": run_config.run_name,
                "modalities": list(run_config.model.modalities),
                "best_valid_ndcg@10": summary["best_ndcg@10"],
                "epochs": summary["epoch"],
                "wall_s": summary.get("wall_s"),
                "epoch_s_median": summary.get("epoch_s_median"),
                "samples_per_s_median": summary.get("samples_per_s_median"),
                "steps": summary.get("steps"),
                "best_step": summary.get("best_step"),
                "training_s": summary.get("training_s"),
                "best_s": summary.get("best_s"),
                "stopped_by": summary.get("stopped_by"),
                "item_item_weight": summary.get("item_item_weight"),
                "test_model_alone_ndcg@10": summary.get("test_model_alone_ndcg@10"),
            }
        print(f"\n{'model':<22} {'HR@10':>7} {'NDCG@10':>8} {'MRR':>7} {'cov@10':>7}")
        for model, row in rows.items():
            print(f"{model:<22} {row['hr@10']:>7.4f} {row['ndcg@10']:>8.4f} {row['mrr']:>7.4f} {row['coverage@10']:>7.3f}")
    print(f"\nwrote {write_results('accuracy', table, merge=True)}")
    if training:
        print(f"wrote {write_results('training', training, merge=True)}")


if __name__ == "__main__":
    main()
