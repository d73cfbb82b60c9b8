"""`dynrec` command line: evaluation, dataset summaries, training, encoding, segments and the quickstart."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

from dynrec.config import DynrecConfig
from dynrec.data import (
    BUNDLED,
    DataFileNotFoundError,
    Interactions,
    LoadReport,
    load_source,
)


def _config(args: argparse.Namespace) -> DynrecConfig:
    config = DynrecConfig.load(args.config)
    if getattr(args, "data_dir", None):
        config.data.data_dir = args.data_dir
    if getattr(args, "dataset", None):
        config = config.with_dataset(args.dataset)
    for override in getattr(args, "set", None) or []:
        config = config.with_override(override)
    return config


def cmd_eval(args: argparse.Namespace) -> int:
    from dynrec.eval import compare, format_table

    config = _config(args)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    results = compare(models, config, progress=not args.no_progress) if models else []
    results += [trained_run(config, run.strip()) for run in (args.runs or "").split(",") if run.strip()]
    print(format_table(config.source.label, results, config.eval.k))
    if args.json:
        print(json.dumps({r.model: {**r.test, "best_param": r.best_param} for r in results}, indent=2))
    return 0


def trained_run(config, run: str):
    """A finished `dynrec train` run's test row, from <home>/artifacts/<run>/metrics.json (the
    model with its item-item term; `param` is the term's weight, `time` the run's wall time)."""
    from dynrec.eval import ProtocolResult

    saved = config.paths.run(run) / "metrics.json"
    if not saved.is_file():
        raise ValueError(f"no finished run '{run}': {saved} does not exist (train it with `dynrec train`)")
    metrics = json.loads(saved.read_text())
    test = {key.removeprefix("test_"): value for key, value in metrics.items() if key.startswith("test_")}
    return ProtocolResult(run, test, metrics.get("item_item_weight"), seconds=float(metrics.get("wall_s") or 0.0))


def cmd_data(args: argparse.Namespace) -> int:
    config = _config(args)
    started = time.perf_counter()
    report = LoadReport()
    dataset = load_source(config, report)
    loaded = time.perf_counter() - started
    interactions = Interactions.from_dataset(dataset)
    has_text = dataset.items["text"].drop_null()
    has_image = dataset.items["image"].drop_null()
    print(f"source    {dataset.name} (from {config.source.uri or config.data.data_dir})")
    print(f"items     {dataset.items.num_rows:,} ({len(has_text):,} with text, {len(has_image):,} with an image)")
    print(f"users     {dataset.users.num_rows:,} listed, {interactions.n_users:,} with events")
    print(f"events    {dataset.events.num_rows:,}")
    print(f"loaded in {loaded:.2f} s")
    for line in report.lines():
        print(f"  {line}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Load the configured source into the state store, the service's source of truth. Into a home
    that has served, changed items are encoded with the served model, so a running service shows
    them at once."""
    from dynrec.artifacts.prepare import import_encoder
    from dynrec.state.imports import import_source

    config = _config(args)
    report = LoadReport()
    summary = import_source(config, progress=not args.no_progress, report=report,
                            encode=import_encoder(config, progress=not args.no_progress))
    print(f"imported {config.source.label} into the {config.state.backend} store")
    for line in report.lines() + summary.lines():
        print(f"  {line}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Fine-tune the fusion and user models under Ray Train (local Ray unless one is running)."""
    from training.train import run_training

    config = _config(args)
    summary = run_training(config)
    print(f"\nbest validation NDCG@{config.eval.k}: {summary['best_ndcg@10']:.4f}")
    print(f"test NDCG@{config.eval.k}: {summary.get('test_ndcg@10', float('nan')):.4f}  HR@{config.eval.k}: {summary.get('test_hr@10', float('nan')):.4f}"
          f"  (item-item weight {summary.get('item_item_weight', 0.0):g}; the model alone: NDCG@{config.eval.k} "
          f"{summary.get(f'test_model_alone_ndcg@{config.eval.k}', float('nan')):.4f})")
    print(f"model: {summary['model_path']}")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """Batch-encode the catalogue with Ray Data (only items whose content or model changed)."""
    from training.encode_catalog import encode_catalog

    config = _config(args)
    summary = encode_catalog(config, items_path=args.items, model_path=args.model, output=args.output, full=args.full)
    print(
        f"\n{summary['items']:,} items: {summary['encoded']:,} encoded, {summary['reused']:,} unchanged "
        f"({summary['seconds']:.1f} s, model {summary['model_version']})\nwrote {summary['output']}"
    )
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    """Fit user segments on the served model's user embeddings; print profiles, plot them."""
    from dynrec.artifacts.prepare import ensure_artifacts
    from dynrec.items.catalog import Catalog
    from dynrec.models.model import load_model
    from dynrec.models.runtime import ModelRuntime
    from dynrec.segments import ItemInfo, fit_segments, plot_segments
    from dynrec.state import open_store
    from dynrec.users.sessions import UserSessions

    config = _config(args)
    artifacts = ensure_artifacts(config, progress=True)
    model, item_ids, _ = load_model(artifacts.model_path)
    catalog = Catalog.boot(config, artifacts, ModelRuntime(model, config.runtime), item_ids, open_store(config))
    users = UserSessions(config, catalog).export()
    items = {m.item_id: ItemInfo(m.title, m.categories, m.text) for m in catalog.meta}
    segmentation = fit_segments(users, items, config.segments)
    print(f"{segmentation.k} segments over {len(users.user_ids):,} users (silhouette {segmentation.silhouette:.3f})\n")
    for profile in segmentation.profiles:
        print(f"[{profile.segment_id}] {profile.label}  —  {profile.size:,} users")
        print(f"    categories: {', '.join(profile.top_categories)}")
        print(f"    top items:  {'; '.join(i['title'] for i in profile.top_items)}")
        print(f"    terms:      {', '.join(profile.terms)}")
    path = plot_segments(users, segmentation, args.plot)
    print(f"\nplot: {path}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Prepare artefacts, start the Serve graph locally, show sample requests, keep serving."""
    from dynrec_cli.quickstart import run

    return run(port=args.port, wait=not args.no_wait, config_path=args.config, train=not args.no_train,
               **({"user": args.user} if args.user else {}))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynrec", description=__doc__)
    parser.add_argument("--config", help="YAML or JSON config file (defaults are used for anything it leaves out)")
    parser.add_argument("--data-dir", help="dataset folder (overrides DYNREC_DATA_DIR and the config file)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_eval = sub.add_parser("eval", help="compare models on a dataset (full ranking, leave-one-out)")
    p_eval.add_argument("--dataset", choices=sorted(BUNDLED), help="a bundled example instead of the configured source")
    p_eval.add_argument("--models", default="pop,itemknn,ease", help="comma-separated: pop, itemknn, ease, sasrec")
    p_eval.add_argument("--runs", help="comma-separated names of finished `dynrec train` runs whose test rows to print too")
    p_eval.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p_eval.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_eval.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting")
    p_eval.set_defaults(func=cmd_eval)

    p_data = sub.add_parser("data", help="load the configured source, summarise it and report unusable rows")
    p_data.add_argument("--dataset", choices=sorted(BUNDLED), help="a bundled example instead of the configured source")
    p_data.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting, e.g. source.uri=./shop")
    p_data.set_defaults(func=cmd_data)

    p_import = sub.add_parser("import", help="load the configured source into the state store (idempotent: re-run to resume)")
    p_import.add_argument("--dataset", choices=sorted(BUNDLED), help="a bundled example instead of the configured source")
    p_import.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting, e.g. state.backend=redis")
    p_import.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p_import.set_defaults(func=cmd_import)

    p_train = sub.add_parser("train", help="fine-tune the models with Ray Train (checkpoints kept, resumable)")
    p_train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting, e.g. train.epochs=5")
    p_train.set_defaults(func=cmd_train)

    p_encode = sub.add_parser("encode", help="batch-encode the catalogue into item embeddings with Ray Data")
    p_encode.add_argument("--items", help="items Parquet (default: the config's dataset)")
    p_encode.add_argument("--model", help="trained model.pt (default: the config's run artefact)")
    p_encode.add_argument("--output", help="embeddings Parquet (default: <home>/embeddings/<run>/)")
    p_encode.add_argument("--full", action="store_true", help="re-encode every item, not only changed ones")
    p_encode.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting")
    p_encode.set_defaults(func=cmd_encode)

    p_segments = sub.add_parser("segments", help="fit user segments, print their profiles and plot them (PNG)")
    p_segments.add_argument("--plot", default="segments.png", help="where to write the 2-D plot (default segments.png)")
    p_segments.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting, e.g. segments.k=6")
    p_segments.set_defaults(func=cmd_segments)

    p_quick = sub.add_parser("quickstart", help="the README's main job: start the service and show it working")
    p_quick.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p_quick.add_argument("--no-wait", action="store_true", help="stop after the sample requests instead of serving on")
    p_quick.add_argument("--user", help="the user whose recommendations it shows (default: 42)")
    p_quick.add_argument("--no-train", action="store_true",
                         help="serve the bootstrap model only: no background training (and model switch) while serving")
    p_quick.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataFileNotFoundError, FileNotFoundError, ValueError) as exc:  # SourceError is a ValueError
        print(f"dynrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
