"""How long loading a dataset into the canonical Arrow tables takes (median of repeated runs).

    .venv/bin/python -m bench.data_load [--repeats 5]

Writes bench/results/data_load.json.
"""

from __future__ import annotations

import argparse

from bench.common import machine, median_seconds, write_results
from dynrec.config import DynrecConfig
from dynrec.data import Interactions, load_bundled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data_dir = DynrecConfig().data.data_dir
    results = {"machine": machine(), "repeats": args.repeats}
    print(f"{'dataset':<8} {'load (s, median)':>17} {'+ index (s)':>12} {'events':>9}")
    for name in ("ml-1m", "ml-100k"):
        load_s, _ = median_seconds(lambda: load_bundled(name, data_dir), args.repeats)
        dataset = load_bundled(name, data_dir)
        index_s, _ = median_seconds(lambda: Interactions.from_dataset(dataset), args.repeats)
        results[name] = {"load_s": round(load_s, 3), "index_s": round(index_s, 3), "events": dataset.events.num_rows}
        print(f"{name:<8} {load_s:>17.3f} {index_s:>12.3f} {dataset.events.num_rows:>9,}")
    print(f"wrote {write_results('data_load', results)}")


if __name__ == "__main__":
    main()
