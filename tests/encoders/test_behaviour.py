import numpy as np
import pytest

from dynrec.config import BehaviourConfig
from dynrec.encoders.behaviour import DAY, BehaviourFeatures, bucket_of, time_bucket_edges


@pytest.fixture(scope="module")
def events(ml100k_interactions):
    i = ml100k_interactions
    return i.items, i.timestamps, i.values, i.n_items


def test_snapshot_never_sees_the_future(events):
    items, times, values, n = events
    cut = int(np.median(times))
    full = BehaviourFeatures.from_events(items, times, values, n).snapshot(cut)
    past = times < cut
    only_past = BehaviourFeatures.from_events(items[past], times[past], values[past], n).snapshot(cut)
    assert np.array_equal(full, only_past)
    # and an event exactly at the cut is not counted either
    item = int(items[0])
    before = BehaviourFeatures.from_events(items, times, values, n)
    snapshot = before.snapshot(cut)[item].copy()
    before.update(item, cut, 5.0)
    assert np.array_equal(before.snapshot(cut)[item], snapshot)


def test_counts_match_the_snapshot_after_updates(events):
    items, times, values, n = events
    features = BehaviourFeatures.from_events(items, times, values, n)
    as_of = int(times.max()) + 1
    features.update(int(items[0]), as_of - 5, 4.0)
    features.update(int(items[1]), int(times.min()), 1.0)  # an old one, inserted in time order
    recent, total = features.counts(as_of, 7.0)
    snapshot = features.snapshot(as_of)
    week = features.config.windows_days.index(7.0)
    assert np.allclose(np.log1p(recent), snapshot[:, week])
    assert np.allclose(np.log1p(total), snapshot[:, len(features.config.windows_days)])
    assert recent.sum() > 0 and total.sum() == len(items) + 2


def test_features_by_hand():
    config = BehaviourConfig(windows_days=(1.0, 7.0), value_center=3.0, value_scale=2.0)
    t0 = 1_000_000_000
    features = BehaviourFeatures(2, created_at=np.array([t0 - 10 * int(DAY), -1]), config=config)
    for offset_days, value in [(0, 5.0), (5, 4.0), (6.5, 3.0)]:
        features.update(0, t0 + int(offset_days * DAY), value)
    row = features.snapshot(t0 + 7 * int(DAY))[0]
    counts_1d, counts_7d, total, mean, since_last, age, has = row
    assert np.isclose(counts_1d, np.log1p(1)) and np.isclose(counts_7d, np.log1p(3)) and np.isclose(total, np.log1p(3))
    assert np.isclose(mean, (4.0 - 3.0) / 2.0)
    assert np.isclose(since_last, np.log1p(0.5)) and np.isclose(age, np.log1p(17)) and has == 1.0
    empty = features.snapshot(t0)[1]
    assert empty[-1] == 0.0 and empty[2] == 0.0


def test_incremental_updates_equal_a_batch_build(events):
    items, times, values, n = events
    head = 60_000
    incremental = BehaviourFeatures.from_events(items[:head], times[:head], values[:head], n)
    for item, time, value in zip(items[head:], times[head:], values[head:]):
        incremental.update(int(item), int(time), float(value))
    batch = BehaviourFeatures.from_events(items, times, values, n)
    as_of = int(times.max()) + 1
    assert np.allclose(incremental.snapshot(as_of), batch.snapshot(as_of))
    for item in (0, 49, 1000):
        assert np.allclose(incremental.item_features(item, as_of), batch.snapshot(as_of)[item], atol=1e-6)


def test_new_items_can_be_added():
    features = BehaviourFeatures(1)
    index = features.add_item(created_at=100)
    features.update(index, 150, 1.0)
    assert features.snapshot(200).shape == (2, features.dim)
    assert features.snapshot(200)[1, -1] == 1.0


def test_buckets_use_only_earlier_snapshots(events):
    _, times, _, _ = events
    edges = time_bucket_edges(times, 8)
    buckets = bucket_of(times, edges)
    assert np.all(edges[buckets] <= times)
    assert buckets.min() == 0 and buckets.max() == len(edges) - 1
