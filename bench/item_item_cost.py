"""What the item-item term costs a Ranker: `recommend` for 10 results with the term and without it.

    .venv/bin/python -m bench.item_item_cost [--users 300] [--rounds 5] [--weight W]

Builds a home of its own in a temporary folder: ML-100k imported into the store, the bootstrap
model, and its item-item term fitted by the training job's own step (training.train.add_item_item;
`--weight` forces the term's weight instead of the one validation picks, 0 being no term). Then
in-process, on one ONNX Runtime thread as a Ranker replica runs: `recommend` (seen items excluded,
no diversity, exploration or new-item slots) for `--users` users, the two settings alternating
over `--rounds` rounds; per round the median ms. Writes bench/results/item_item_cost.json and
prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine, write_results
from dynrec.artifacts.prepare import ensure_artifacts
from dynrec.config import DynrecConfig, default_data_dir
from dynrec.ranking.ranker import Filters, recommend
from dynrec.state.imports import import_source
from training.train import add_item_item


def prepared_home(folder: Path, weight: float | None) -> tuple[Path, dict]:
    """The config file of a served ML-100k home with a bootstrap model and its term; the term's figures."""
    path = folder / "dynrec.yaml"
    path.write_text(f"home: {folder / 'home'}\nsource: {{dataset: ml-100k}}\n"
                    f"train: {{run_name: ml-100k-bootstrap}}\ndata: {{data_dir: {default_data_dir()}}}\n")
    config = DynrecConfig.load(path)
    import_source(config, progress=False)
    ensure_artifacts(config, progress=True)
    if weight is not None:
        config = dataclasses.replace(config, item_item=dataclasses.replace(config.item_item, weights=(weight,)))
    return path, add_item_item(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--weight", type=float, help="force the term's weight (default: validation's choice)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path, fitted = prepared_home(Path(folder), args.weight)
        os.environ["DYNREC_CONFIG"] = str(path)
        from deployments.common import load_served
        from dynrec.users.sessions import UserSessions

        served = load_served(threads=1)
        catalog = served.catalog()
        term = catalog.item_item
        sessions = UserSessions(served.config, catalog)
        views = [sessions.view(str(u)) for u in range(1, args.users + 1)]
        rounds: dict[str, list[float]] = {"with_term_ms": [], "without_term_ms": []}
        for _ in range(args.rounds):
            for name, setting in (("with_term_ms", term), ("without_term_ms", None)):
                catalog.item_item = setting
                times = []
                for view in views:
                    started = time.perf_counter()
                    recommend(catalog, view, 10, Filters(), True, served.config.serving.candidates, 0.0, 0)
                    times.append(1000 * (time.perf_counter() - started))
                rounds[name].append(statistics.median(times))
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    result = {
        "machine": machine(), "users": args.users, "rounds": args.rounds,
        "item_item_weight": fitted["item_item_weight"], "rounds_ms": rounds, **medians,
        "ratio": medians["with_term_ms"] / medians["without_term_ms"],
        "load_average": os.getloadavg()[0],
    }
    print(f"{'recommend, 10 results':<24} {'with the term':>14} {'without':>9} {'ratio':>6}")
    print(f"{'median ms':<24} {medians['with_term_ms']:>14.2f} {medians['without_term_ms']:>9.2f} {result['ratio']:>6.2f}")
    print(f"wrote {write_results('item_item_cost', result)}")


if __name__ == "__main__":
    main()
