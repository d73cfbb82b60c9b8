"""bench/accuracy.py's derived sources: the order-free variant keeps every user's events and times
and only deals the times out again."""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict

from bench.accuracy import weak_order
from dynrec.config import DynrecConfig
from dynrec.data import load_source


def per_user(events) -> dict[str, list[tuple[int, str]]]:
    rows = defaultdict(list)
    stamps = events["timestamp"].cast("int64").to_pylist()
    for user, item, stamp in zip(events["user_id"].to_pylist(), events["item_id"].to_pylist(), stamps):
        rows[user].append((stamp, item))
    return {user: sorted(pairs) for user, pairs in rows.items()}


def test_weak_order_deals_each_users_own_times_to_their_events_at_random(data_dir):
    config = DynrecConfig.load(None).with_dataset("ml-100k")
    shuffled = weak_order(config)
    assert shuffled.source.label == "ml-100k-shuffled"
    before, after = per_user(load_source(config).events), per_user(load_source(shuffled).events)

    assert before.keys() == after.keys()
    for user in before:
        assert Counter(i for _, i in before[user]) == Counter(i for _, i in after[user])
        assert sorted(t for t, _ in before[user]) == sorted(t for t, _ in after[user])
    # the last item (the protocol's test item) is a different one for most users
    moved = sum(before[u][-1][1] != after[u][-1][1] for u in before)
    assert moved > 0.8 * len(before)
    # seeded: written afresh, the variant is the same
    shutil.rmtree(shuffled.source.uri)
    assert per_user(load_source(weak_order(config)).events) == after
