"""Do reasons name what drives the score? A leave-one-out check of the cited history event.

    DYNREC_HOME=<a home that has served ML-1M> .venv/bin/python -m bench.reasons [--users 500]

In-process on the served model, with the served rule (dynrec.ranking.ranker.cited: a leave-one-out
over the newest `serving.reason_window` events). For each of `--users` users with at least 20
events, the top `--results` results (seen items excluded, exploration and new-item slots off) and
the history event each one's reason cites. The user is then re-embedded from their whole kept
history (up to `model.max_length` events) without the cited event, and without a random other
event among the ones a reason may cite (the liked events among the newest
`serving.reason_history`): the reason is faithful when removing the cited event lowers the
result's score more. `faithful_share_any_event` draws the other event from the whole kept history
instead, any type; `faithful_share_top1` counts the top result alone. Results whose reason cites
nothing ("Fits your history as a whole") are counted apart (`uncited_share`).

The Ranker's cost of it: `recommend` for 10 results, with the view as the shard sends it (with
the re-embeddings the shard makes as events arrive, a ReasonBasis), with that view but no basis
(the Ranker re-embeds the user per request, as it did before), and with its window left empty
(what `reason_window` 0 sends: no re-embedding, nothing cited), alternated over `--timed` users
and `--repeats` rounds, on one ONNX Runtime thread as a Ranker replica runs; medians in ms (the
machine's load average is recorded beside them). Beside them, the shard's cost of a basis, per user.

Writes bench/results/reasons.json: the figures above at the configured settings and, under
`sweep`, with one setting changed at a time (`--sweep`); prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import numpy as np
from tqdm import tqdm

from bench.common import machine, write_results
from deployments.common import load_served
from dynrec.ranking.bandit import ExplorationSettings
from dynrec.ranking.ranker import Filters, cited, leave_one_out_inputs, liked, recommend
from dynrec.state import open_store
from dynrec.users.sessions import UserSessions

NO_EXPLORATION = ExplorationSettings(0.0, 1.0, 1)


def faithfulness(catalog, sessions, chosen, results: int, candidates: int, rng) -> dict:
    """The leave-one-out check (module docstring) over `chosen` users, at the current settings."""
    serving = catalog.config.serving
    faithful, faithful_any, top1, top1_cases, uncited, cases = 0, 0, 0, 0, 0, 0
    cited_drops, other_drops = [], []
    for user_id in tqdm(chosen, desc="users", leave=False):
        view = sessions.view(str(user_id))
        ids = [r.item_id for r in recommend(catalog, view, results, Filters(), True, candidates, 0.0, new_item_slots=0,
                                            exploration=NO_EXPLORATION)]
        history = [e for e in sessions.users[str(user_id)].history if e[0] in catalog]
        citable = [p for p in range(max(len(history) - serving.reason_history, 0), len(history)) if liked(catalog, history[p])]
        measured, removed = [], []
        for rank, (item_id, entry) in enumerate(zip(ids, cited(catalog, ids, view))):
            cases += 1
            position = next((p for p in reversed(range(len(history))) if history[p] == entry), None)
            others = [p for p in citable if p != position]
            if entry is None or position is None or not others:
                uncited += 1
                continue
            anything = [p for p in range(len(history)) if p != position]
            measured.append((rank, item_id))
            removed += [position, others[rng.integers(len(others))], anything[rng.integers(len(anything))]]
        if not measured:
            continue
        embeddings = catalog.runtime.embed_users(*leave_one_out_inputs(catalog, history, removed))
        drops = (embeddings[0] - embeddings[1:]) @ catalog.vectors([i for _, i in measured]).T
        for m, (rank, _) in enumerate(measured):
            by_cited, by_other, by_any = drops[3 * m : 3 * m + 3, m]
            cited_drops.append(float(by_cited))
            other_drops.append(float(by_other))
            faithful += by_cited > by_other
            faithful_any += by_cited > by_any
            if rank == 0:
                top1_cases += 1
                top1 += by_cited > by_other
    n = len(cited_drops)
    return {"faithful_share": faithful / n if n else None, "faithful_share_any_event": faithful_any / n if n else None,
            "faithful_share_top1": top1 / top1_cases if top1_cases else None, "measured": n,
            "uncited_share": uncited / cases if cases else None,
            "median_score_drop_cited": float(np.median(cited_drops)) if n else None,
            "median_score_drop_random": float(np.median(other_drops)) if n else None}


def ranker_cost(catalog, sessions, timed, candidates: int, repeats: int) -> dict:
    """Median ms of a 10-result `recommend` with the shard's view (its reason basis made, as the
    UserState shard makes it), with that view's basis left out (the Ranker re-embeds the user
    itself, as it did before shards made them), and with its window left empty, alternated
    (module docstring); and the shard's ms per user to make the bases (`UserSessions.explain_all`)."""
    for record in sessions.users.values():
        record.reasons = None  # made again under the settings being measured
    started = time.perf_counter()
    made = sessions.explain_all()
    shard_ms = 1000 * (time.perf_counter() - started) / max(made, 1)
    views = [sessions.view(str(u)) for u in timed]
    variants = {"with_reasons": views, "reasons_made_in_ranker": [dataclasses.replace(v, reasons=None) for v in views],
                "without_reasons": [dataclasses.replace(v, window=[], reasons=None) for v in views]}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for row in range(len(views)):
            for name, given in variants.items():
                started = time.perf_counter()
                recommend(catalog, given[row], 10, Filters(), True, candidates, 0.0, new_item_slots=0, exploration=NO_EXPLORATION)
                times[name].append(1000 * (time.perf_counter() - started))
    medians = {f"ranker_ms_{name}": statistics.median(t) for name, t in times.items()}
    return {**medians, "ranker_ms_added": medians["ranker_ms_with_reasons"] - medians["ranker_ms_without_reasons"],
            "shard_ms_reason_basis_per_user": shard_ms}


def measure(catalog, sessions, chosen, args, candidates: int) -> dict:
    return {**faithfulness(catalog, sessions, chosen, args.results, candidates, np.random.default_rng(0)),
            **ranker_cost(catalog, sessions, chosen[: args.timed], candidates, args.repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--results", type=int, default=10, help="results per user whose reasons are checked")
    parser.add_argument("--timed", type=int, default=100, help="users whose requests are timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", default="reason_window=20,50,200;reason_candidates=4,20;reason_min_drop=0,0.05",
                        help="serving settings to measure one at a time beside the configured ones")
    args = parser.parse_args()
    served = load_served(threads=1)  # a Ranker replica's one thread: what the cost figures are for
    catalog = served.catalog(open_store(served.config))
    sessions = UserSessions(served.config, catalog)
    serving = served.config.serving  # the one object the sessions' views and `cited` both read
    rng = np.random.default_rng(0)
    eligible = sorted(u for u, r in sessions.users.items() if len(r.history) >= 20)
    chosen = list(rng.choice(eligible, min(args.users, len(eligible)), replace=False))
    configured = {name: getattr(serving, name) for name in ("reason_window", "reason_candidates", "reason_min_drop")}
    headline = measure(catalog, sessions, chosen, args, serving.candidates)
    sweep = {}
    for setting in filter(None, args.sweep.split(";")):
        name, values = setting.split("=")
        for value in values.split(","):
            setattr(serving, name, type(configured[name])(float(value)))
            sweep[f"{name}={value}"] = measure(catalog, sessions, chosen, args, serving.candidates)
        setattr(serving, name, configured[name])
    results = {**headline, "users": len(chosen), "results_per_user": args.results, **configured, "sweep": sweep,
               "model_version": catalog.model_version, "machine": machine(), "load_average": os.getloadavg()}
    path = write_results("reasons", results)
    print(f"\n{'setting':<22} {'faithful':>8} {'any event':>9} {'top 1':>6} {'cited':>6} {'uncited':>8} {'ms with':>8} {'in ranker':>9} {'without':>8}")
    for label, r in {"configured": headline, **sweep}.items():
        print(f"{label:<22} {r['faithful_share'] or 0:>8.3f} {r['faithful_share_any_event'] or 0:>9.3f} "
              f"{r['faithful_share_top1'] or 0:>6.3f} {r['measured']:>6} {r['uncited_share']:>8.3f} "
              f"{r['ranker_ms_with_reasons']:>8.2f} {r['ranker_ms_reasons_made_in_ranker']:>9.2f} {r['ranker_ms_without_reasons']:>8.2f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
