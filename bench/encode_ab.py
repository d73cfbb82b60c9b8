"""The Ray Data encoding job of two or more checkouts against the plain loop, interleaved: a change
to the job measured beside the code before it, on the same machine in the same hour.

    .venv/bin/python -m bench.encode_ab --checkouts ../before . [--repeats 3] [--copies 1] [--results NAME]

Each repeat runs the plain loop (bench.encode's, on the fast paths) from the first checkout, then
the job (`encode_catalog`, full) from each checkout in turn. Every run is a fresh process with its
own Ray cluster, so no run finds another's imports, workers or Ray Data helper actors warm (the
job's figure in bench.encode, whose repeats share one cluster, is a little kinder). Items: ML-1M,
or `--copies` copies of it; the model is untrained, of the configured shape (fusion costs the
same whatever its weights). Writes bench/results/NAME.json (every time, each checkout's median and
its ratio to the loop's median) and prints a table. Run it alone: the ratios are only as good as
the machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import machine, write_results
from bench.encode import CONFIG, untrained_model
from dynrec.config import DynrecConfig

# Runs inside a checkout; uses only functions that every checkout since the Ray Data job's first
# version has, so an older checkout needs no copy of this file.
ONE_RUN = """
import json, os, sys, tempfile
from dataclasses import replace
from pathlib import Path
import pyarrow.parquet as pq
from bench.encode import catalogue_inputs, copied_catalogue, plain_ort_loop
from dynrec.config import DynrecConfig
from dynrec.items.encoding import batch_of
from dynrec.models.model import load_model
from training.encode_catalog import behaviour_snapshot, encode_catalog

mode, config_path, model_path, copies = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
config = DynrecConfig.load(config_path)
fast = replace(config, runtime=replace(config.runtime, precision="auto"))
dataset, _, _ = catalogue_inputs(config)
items = copied_catalogue(dataset.items, copies) if copies > 1 else dataset.items
if mode == "loop":
    behaviour, default = behaviour_snapshot(config)
    item_index = {item_id: i for i, item_id in enumerate(load_model(model_path)[1])}
    seconds = plain_ort_loop(fast, model_path, batch_of(items), item_index, behaviour, default)
else:
    import ray
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as folder:
        pq.write_table(items, Path(folder) / "items.parquet")
        seconds = encode_catalog(fast, Path(folder) / "items.parquet", model_path, Path(folder) / "out.parquet",
                                 full=True)["seconds"]
    ray.shutdown()
print("RESULT " + json.dumps({"seconds": seconds, "items": items.num_rows}))
"""


def one_run(checkout: Path, mode: str, config: str, model: Path, copies: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(checkout), "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", ONE_RUN, mode, config, str(model), str(copies)],
                          cwd=checkout, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{mode} in {checkout} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])["seconds"]


def label(checkout: Path) -> str:
    """The checkout's folder and commit, which name its figures in the results."""
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{checkout.name}@{commit.stdout.strip() or 'no-git'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkouts", nargs="+", required=True, help="checkout folders; the first also runs the loop")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=1, help="copies of the ML-1M catalogue")
    parser.add_argument("--results", default="encode_ab")
    args = parser.parse_args()
    checkouts = [Path(c).resolve() for c in args.checkouts]
    model = untrained_model(DynrecConfig.load(args.config))
    loop: list[float] = []
    jobs: dict[str, list[float]] = {label(c): [] for c in checkouts}
    for repeat in range(args.repeats):
        loop.append(one_run(checkouts[0], "loop", args.config, model, args.copies))
        for checkout in checkouts:
            jobs[label(checkout)].append(one_run(checkout, "job", args.config, model, args.copies))
        print(f"repeat {repeat}: loop {loop[-1]:.1f} s, " + ", ".join(f"{c} {s[-1]:.1f} s" for c, s in jobs.items()), flush=True)
    results = {
        "machine": machine(), "copies": args.copies, "repeats": args.repeats, "plain_fast_s": loop,
        "jobs": {c: {"ray_data_s": s, "median_s": statistics.median(s),
                     "ray_data_vs_plain": statistics.median(loop) / statistics.median(s)} for c, s in jobs.items()},
    }
    path = write_results(args.results, results)
    print(f"\n{'checkout':<40} {'median s':>9} {'vs loop':>8}")
    print(f"{'(plain loop)':<40} {statistics.median(loop):>9.1f} {1.0:>8.3f}")
    for checkout, figures in results["jobs"].items():
        print(f"{checkout[-40:]:<40} {figures['median_s']:>9.1f} {figures['ray_data_vs_plain']:>8.3f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
