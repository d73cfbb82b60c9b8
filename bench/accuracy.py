"""Sequential accuracy (DESIGN.md protocol): full ranking, leave-one-out, on ML-1M partial and ML-100k.

    .venv/bin/python -m bench.accuracy [--datasets ml-1m,ml-100k] [--models pop,itemknn,ease]

Writes bench/results/accuracy.json as {dataset: {model: {hr@10, ndcg@10, mrr, coverage@10}}},
merging into rows already there so later models add to the same table.
"""

from __future__ import annotations

import argparse

from bench.common import write_results
from dynrec.config import DynrecConfig
from dynrec.eval import compare, format_table

REPORTED = ("hr@10", "ndcg@10", "mrr", "coverage@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="ml-1m,ml-100k")
    parser.add_argument("--models", default="pop,itemknn,ease")
    parser.add_argument("--config")
    args = parser.parse_args()
    config = DynrecConfig.load(args.config)
    models = args.models.split(",")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for dataset in args.datasets.split(","):
        results = compare(dataset, models, config)
        print(format_table(dataset, results, config.eval.k))
        table[dataset] = {r.model: {key: round(r.test[key], 6) for key in REPORTED} for r in results}
    path = write_results("accuracy", table, merge=True)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
