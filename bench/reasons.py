"""Do reasons name what drives the score? A leave-one-out check of the cited history item.

    DYNREC_HOME=<a home that has served ML-1M> .venv/bin/python -m bench.reasons [--users 500]

In-process on the served model. For each of `--users` users with at least 20 events, the top
result (seen items excluded, exploration and new-item slots off) and the history item its reason
cites (dynrec.ranking.ranker.cited). The user is re-embedded twice from their whole window: once
without the cited event, once without a random other event among the ones a reason may cite. The
reason is faithful when removing the cited event lowers the result's score more. Results where no
history item is close enough to cite ("fits your history as a whole") are counted apart.

Writes bench/results/reasons.json: `faithful_share` (of the results with a cited item), `users`,
`uncited_share`, and the median score drops, at the configured `serving.reason_min_z` and, under
`by_min_z`, at the `--sweep` values (more citations, less faithful); prints a table.
"""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np
from tqdm import tqdm

from bench.common import machine, write_results
from deployments.common import load_served
from dynrec.ranking.bandit import ExplorationSettings
from dynrec.ranking.ranker import Filters, cited, liked, recommend
from dynrec.state import open_store
from dynrec.users.sessions import UserRecord, UserSessions


def faithfulness(catalog, sessions, chosen, candidates: int, rng) -> dict:
    """The leave-one-out check (module docstring) over `chosen` users, at the catalogue's current
    `serving.reason_min_z`."""
    faithful, uncited, cited_drops, random_drops = 0, 0, [], []
    for user_id in tqdm(chosen, desc=f"users (min z {catalog.config.serving.reason_min_z:g})"):
        view = sessions.view(str(user_id))
        top = recommend(catalog, view, 1, Filters(), True, candidates, 0.0, new_item_slots=0,
                        exploration=ExplorationSettings(0.0, 1.0, 1))[0].item_id
        entry = cited(catalog, [top], view)[0]
        others = [h for h in view.recent if h != entry and h[0] in catalog and liked(catalog, h)]
        if entry is None or not others:
            uncited += 1
            continue
        other = others[rng.integers(len(others))]
        history = list(sessions.users[str(user_id)].history)
        windows = [history] + [[h for i, h in enumerate(history) if i != len(history) - 1 - history[::-1].index(e)]
                               for e in (entry, other)]
        records = [UserRecord(str(user_id), deque(w, maxlen=sessions.max_length)) for w in windows]
        _, *inputs = sessions._batch(records, catalog)
        full, without_cited, without_other = catalog.runtime.embed_users(*inputs)
        item = catalog.vectors([top])[0]
        cited_drops.append(float((full - without_cited) @ item))
        random_drops.append(float((full - without_other) @ item))
        faithful += cited_drops[-1] > random_drops[-1]
    measured = len(cited_drops)
    return {"faithful_share": faithful / measured if measured else None, "measured": measured,
            "uncited_share": uncited / len(chosen),
            "median_score_drop_cited": float(np.median(cited_drops)) if cited_drops else None,
            "median_score_drop_random": float(np.median(random_drops)) if random_drops else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--sweep", default="1,0", help="other serving.reason_min_z values to measure beside the configured one")
    args = parser.parse_args()
    served = load_served(threads=2)
    catalog = served.catalog(open_store(served.config))
    sessions = UserSessions(served.config, catalog)
    rng = np.random.default_rng(0)
    eligible = sorted(u for u, r in sessions.users.items() if len(r.history) >= 20)
    chosen = rng.choice(eligible, min(args.users, len(eligible)), replace=False)
    configured = served.config.serving.reason_min_z
    by_min_z = {}
    for min_z in [configured] + [float(z) for z in args.sweep.split(",") if z]:
        catalog.config.serving.reason_min_z = min_z
        by_min_z[f"{min_z:g}"] = faithfulness(catalog, sessions, chosen, served.config.serving.candidates, np.random.default_rng(0))
    headline = by_min_z[f"{configured:g}"]
    results = {**headline, "users": len(chosen), "reason_min_z": configured, "by_min_z": by_min_z,
               "model_version": catalog.model_version, "machine": machine()}
    path = write_results("reasons", results)
    print(f"\n{'min z':>6} {'faithful':>9} {'cited':>6} {'uncited share':>14}")
    for min_z, r in by_min_z.items():
        print(f"{min_z:>6} {r['faithful_share'] or 0:>9.3f} {r['measured']:>6} {r['uncited_share']:>14.3f}")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
