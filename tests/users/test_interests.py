"""Long-term interests (dynrec.users.interests) on the served ML-100k model's real item vectors:
clustering, decay, incremental updates against a rebuild, a new taste displacing a faded one, low
ratings, and a shard keeping them through events and snapshots.

The bootstrap model's item space is weakly organised by genre, so each "taste" here is a group of
items close together in it: the items nearest to a seed item, the seeds far apart."""

import dataclasses
import pickle

import numpy as np
import pytest

from dynrec.state.sqlite import SqliteStore
from dynrec.users.interests import ItemSpace, UserInterests, interests_of, unit_rows
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Event

TASTE = 30  # items per taste


@pytest.fixture(scope="module")
def space(served, ml100k, tmp_path_factory):
    """The served model's item space, on a catalogue booted from its own store."""
    from dynrec.state.imports import import_dataset

    store = SqliteStore(tmp_path_factory.mktemp("interests") / "state.db")
    import_dataset(ml100k, store, progress=False)
    return ItemSpace.of(served.catalog(store))


@pytest.fixture(scope="module")
def tastes(space):
    """Three disjoint groups of TASTE items, each the nearest to a seed: the first seed is item 1,
    the next ones the items farthest from the seeds before them."""
    ids = space.catalog.ids
    unit = unit_rows(space.vectors(ids))
    seeds = [0]
    for _ in range(2):
        seeds.append(int(np.argmin((unit @ unit[seeds].T).max(axis=1))))
    groups = [[ids[r] for r in np.argsort(-(unit @ unit[seed]), kind="stable")[:TASTE]] for seed in seeds]
    assert len(set().union(*groups)) == 3 * TASTE
    return groups


def settings_of(served, **changes):
    return dataclasses.replace(served.config.interests, **changes)


def kept_sets(interests: UserInterests) -> set[frozenset]:
    return {frozenset(i.items) for i in interests.interests}


def test_two_tastes_give_one_interest_each_with_its_share_of_the_history(served, space, tastes):
    a, b, _ = tastes
    settings = settings_of(served, k=2, half_life_events=0)
    interests = UserInterests.from_history(a + b, space, settings)
    assert kept_sets(interests) == {frozenset(a), frozenset(b)}
    assert interests.shares(settings) == pytest.approx([0.5, 0.5])
    # with decay, the recent taste weighs more: each of b's 30 events is 2**(30 / 20) times an a event
    decayed = settings_of(served, k=2, half_life_events=20)
    shares = dict(zip((frozenset(i.items) for i in UserInterests.from_history(a + b, space, decayed).interests),
                      UserInterests.from_history(a + b, space, decayed).shares(decayed)))
    assert shares[frozenset(b)] == pytest.approx(1 / (1 + 0.5 ** (TASTE / 20)))
    assert sum(shares.values()) == pytest.approx(1.0)


def test_events_one_at_a_time_find_what_a_rebuild_from_the_whole_history_finds(served, space, tastes):
    a, b, _ = tastes
    settings = settings_of(served, k=2)
    history = [item for pair in zip(a, b) for item in pair]  # the two tastes interleaved
    stepped = UserInterests((), 0, space.model_version)
    for item in history:
        stepped = stepped.updated(item, space, settings)
    rebuilt = UserInterests.from_history(history, space, settings)
    assert stepped.events == rebuilt.events == len(history)
    assert kept_sets(stepped) == kept_sets(rebuilt) == {frozenset(a), frozenset(b)}
    order = [sorted(kept_sets(x), key=lambda s: min(s)) for x in (stepped, rebuilt)]
    assert order[0] == order[1]
    by_items = [{frozenset(i.items): share for i, share in zip(x.interests, x.shares(settings))} for x in (stepped, rebuilt)]
    assert by_items[0] == pytest.approx(by_items[1], abs=1e-6)
    assert np.allclose(sorted(stepped.directions().tolist()), sorted(rebuilt.directions().tolist()), atol=1e-5)


def test_a_new_taste_takes_the_place_of_one_that_faded(served, space, tastes):
    a, b, c = tastes
    settings = settings_of(served, k=2, half_life_events=10)
    interests = UserInterests.from_history(a[:20] + b + b, space, settings)  # a, then 60 events of b
    assert min(interests.shares(settings)) < settings.min_share  # a has faded
    for item in c[:5]:
        interests = interests.updated(item, space, settings)
    assert kept_sets(interests) == {frozenset(b), frozenset(c[:5])}
    # while both tastes hold a real share, a far event joins the nearest interest instead
    steady = settings_of(served, k=2, half_life_events=0)
    joined = UserInterests.from_history(a + b, space, steady).updated(c[0], space, steady)
    assert len(joined.interests) == 2 and frozenset([c[0]]) not in kept_sets(joined)


def test_a_low_rating_is_not_an_interest(served, space, tastes):
    a, b, _ = tastes
    history = [(i, "rating", n, 5.0) for n, i in enumerate(a)] + [(i, "rating", 100 + n, 1.0) for n, i in enumerate(b)]
    interests = interests_of(space, history, served.config.interests)
    assert interests.events == TASTE and set().union(*kept_sets(interests)) == set(a)


def test_a_rebase_rebuilds_each_direction_from_its_kept_items(served, space, tastes):
    a, b, _ = tastes
    settings = settings_of(served, k=2, half_life_events=0)
    interests = UserInterests.from_history(a + b, space, settings)
    moved = ItemSpace(space.catalog, space.centre + 0.5)  # another centre: every centred vector changes
    rebased = interests.rebased(moved)
    assert np.allclose(rebased.directions(), UserInterests.from_history(a + b, moved, settings).directions(), atol=1e-5)
    assert not np.allclose(rebased.directions(), interests.directions(), atol=1e-2)


def test_labels_name_the_categories_the_kept_items_carry_most(served, space, tastes):
    a, b, _ = tastes
    settings = settings_of(served, k=2, half_life_events=0)
    catalog = space.catalog
    summaries = UserInterests.from_history(a[:20] + b, space, settings).summaries(
        settings, lambda i: catalog.item(i).categories, lambda i: catalog.item(i).title)
    assert [s.share for s in summaries] == pytest.approx([0.6, 0.4])  # the largest first
    for summary, group in zip(summaries, (b, a[:20])):
        counts = {}
        for item in group:
            for category in catalog.item(item).categories:
                counts[category] = counts.get(category, 0) + 1
        assert counts[summary.top_categories[0]] == max(counts.values())
        assert summary.label.startswith(" & ".join(summary.top_categories[:2]) + ", like “")
        assert any(f"“{catalog.item(i).title}”" in summary.label for i in group)


def test_a_shard_moves_interests_with_events_and_keeps_them_through_snapshots(served, fill, tmp_path, tastes):
    store = fill(SqliteStore(tmp_path / "state.db"))
    catalog = served.catalog(store)
    sessions = UserSessions(served.config, catalog, "users-0-of-1")
    before = sessions.describe("1").interests
    assert before and sum(i.share for i in before) == pytest.approx(1.0)
    assert [i.share for i in before] == sorted((i.share for i in before), reverse=True)
    new = [i for i in tastes[2] if i not in sessions.users["1"].seen][:20]
    liked_before = sessions.users["1"].interests.events
    sessions.record(store, [Event("1", item, "rating", 2_000_000_000 + n, 5.0) for n, item in enumerate(new)])
    sessions.record(store, [Event("1", new[0], "rating", 2_000_000_100, 1.0)])  # a low rating moves nothing
    moved = sessions.users["1"].interests
    assert moved.events == liked_before + len(new)
    assert set(new) <= set().union(*kept_sets(moved))  # the newest events are among the heaviest kept
    sessions.save_snapshot(store, "users-0-of-1")
    restarted = UserSessions(served.config, catalog, "users-0-of-1")
    assert restarted.describe("1").interests == sessions.describe("1").interests
    # a snapshot of the previous layout (a moving-average profile in the interests' place) is not read:
    # the shard rebuilds from the store, as a first start does
    seq, header, entries = store.load_snapshot_entries("users-0-of-1")
    history, seen, embedding, _, events, attributes = pickle.loads(entries["1"])
    old = {"version": 2, "model_version": pickle.loads(header)["model_version"],
           "users": {"1": pickle.dumps((history, seen, embedding, embedding, events, attributes))}}
    store.save_snapshot("old-layout", seq, pickle.dumps(old))
    rebuilt = UserSessions(served.config, catalog, "old-layout")
    assert isinstance(rebuilt.users["1"].interests, UserInterests)
    assert rebuilt.describe("1").interests == UserSessions(served.config, catalog).describe("1").interests
    assert len(rebuilt.users) > 1  # every user, not only the one in that snapshot


def test_views_carry_the_interests_only_when_ranking_uses_them(served, fill, tmp_path):
    store = fill(SqliteStore(tmp_path / "state.db"))
    catalog = served.catalog(store)
    assert UserSessions(served.config, catalog).view("1").interests is None
    config = dataclasses.replace(served.config, interests=settings_of(served, retrieval=True))
    view = UserSessions(config, catalog).view("1")
    assert view.interests.shape == (len(view.interest_shares), catalog.dim)
    assert np.allclose(np.linalg.norm(view.interests, axis=1), 1.0) and view.interest_shares.sum() == pytest.approx(1.0)
    assert len(view.interest_shares) <= config.interests.k
