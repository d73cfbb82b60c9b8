"""A UserState shard rebooted from its snapshot plus the log matches the one that crashed, on both
state stores; without a snapshot it boots from the store's events alone; erased users stay erased."""

import pickle
import threading

import numpy as np

from dynrec.users import sessions as sessions_module
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Erasure, Event

SNAPSHOT = "users-0-of-1"


def events_for(catalog, user_id: str, start: int, count: int) -> list[Event]:
    return [Event(user_id, catalog.ids[(start + 7 * n) % len(catalog.ids)], "rating", 900_000_000 + start + n, 4.0)
            for n in range(count)]


def assert_same_users(before, after, users):
    for user in users:
        old, new = before.view(user), after.view(user)
        assert new.recent == old.recent and new.seen == old.seen
        np.testing.assert_allclose(new.embedding, old.embedding, atol=1e-5)


def test_rebooted_users_equal_the_ones_before_the_restart(served, fill, open_backend):
    open_store_, crash = open_backend
    store = fill(open_store_())
    catalog = served.catalog(store)
    before = UserSessions(served.config, catalog, SNAPSHOT)
    assert before.replayed == 0  # no snapshot yet: every user came from the store's events
    users = ["1", "2", "brand-new", "erase-me"]
    for n, user in enumerate(users):
        before.record(store, events_for(catalog, user, 10 * n, 5))
    before.save_snapshot(store, SNAPSHOT)
    for n, user in enumerate(users):  # after the snapshot: only the log has these
        before.record(store, events_for(catalog, user, 100 + 10 * n, 3))
    assert before.erase(store, "erase-me", SNAPSHOT) == Erasure(known=True, events_erased=8)
    for n, user in enumerate(users[:3]):  # after the erasure's fresh snapshot
        before.record(store, events_for(catalog, user, 200 + 10 * n, 3))
    crash()

    store = open_store_()
    after = UserSessions(served.config, served.catalog(store), SNAPSHOT)
    assert after.replayed == 9  # three users' three events after the snapshot; the erased user's are gone
    assert_same_users(before, after, ("1", "2", "brand-new", "5"))
    assert after.view("erase-me").embedding is None and after.describe("erase-me") is None
    # an imported user who asked to be forgotten does not come back, from the store or a re-import
    before.erase(store, "3", SNAPSHOT)
    fill(store)
    again = UserSessions(served.config, served.catalog(store), SNAPSHOT)
    assert again.describe("3") is None and again.describe("4") is not None
    without_snapshot = UserSessions(served.config, served.catalog(store))
    assert without_snapshot.describe("3") is None
    assert_same_users(again, without_snapshot, ("1", "2", "brand-new", "4"))


class Vanished:
    """A class a snapshot entry was pickled with, removed by the time the next version of the code reads it."""


def test_a_snapshot_written_by_code_whose_classes_have_changed_is_rebuilt_from_the_events(served, fill, open_backend,
                                                                                           monkeypatch):
    open_store_, _ = open_backend
    store = fill(open_store_())
    catalog = served.catalog(store)
    before = UserSessions(served.config, catalog, SNAPSHOT)
    before.record(store, events_for(catalog, "1", 0, 5))
    before.save_snapshot(store, SNAPSHOT)
    seq, header, _ = store.load_snapshot_entries(SNAPSHOT)
    store.save_snapshot_entries(SNAPSHOT, seq, header, {"2": pickle.dumps(Vanished())})
    monkeypatch.delattr(f"{__name__}.Vanished")
    after = UserSessions(served.config, served.catalog(store), SNAPSHOT)
    assert after.replayed == 0  # booted from the store's events, as without a snapshot
    assert_same_users(before, after, ("1", "2", "3"))


class RecordingStore:
    """The store, with each keyed snapshot write's changed and removed entries noted."""

    def __init__(self, store):
        self.store, self.writes = store, []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def save_snapshot_entries(self, name, seq, header, changed, removed=(), whole=False):
        self.writes.append((set(changed), set(removed), whole))
        self.store.save_snapshot_entries(name, seq, header, changed, removed, whole)


def test_a_snapshot_writes_only_the_users_changed_or_forgotten_since_the_last(served, fill, open_backend):
    open_store_, crash = open_backend
    store = RecordingStore(fill(open_store_()))
    catalog = served.catalog(store.store)
    sessions = UserSessions(served.config, catalog, SNAPSHOT)
    everyone = set(sessions.users)
    sessions.save_snapshot(store, SNAPSHOT)
    sessions.record(store, events_for(catalog, "1", 0, 4))
    sessions.save_snapshot(store, SNAPSHOT)
    sessions.erase(store, "2", SNAPSHOT)
    sessions.save_snapshot(store, SNAPSHOT)  # nothing changed since
    assert store.writes == [(everyone, set(), True), ({"1"}, set(), False), (set(), {"2"}, False), (set(), set(), False)]
    crash()

    rebooted = UserSessions(served.config, served.catalog(open_store_()), SNAPSHOT)
    assert rebooted.replayed == 0 and set(rebooted.users) == everyone - {"2"}
    assert_same_users(sessions, rebooted, ("1", "3", "4"))


def test_events_applied_while_a_snapshot_is_pickled_do_not_wait_and_are_replayed_once(served, fill, open_backend, monkeypatch):
    """The users are copied under the shard's lock and pickled after it: an event applied while
    the entries are pickled goes through at once, stays out of the snapshot (whose sequence number
    is older), and a reboot replays it exactly once."""
    open_store_, crash = open_backend
    store = fill(open_store_())
    catalog = served.catalog(store)
    sessions = UserSessions(served.config, catalog, SNAPSHOT)
    sessions.record(store, events_for(catalog, "1", 0, 4))
    copied, release = threading.Event(), threading.Event()
    pickled_entries = sessions_module.pickled_entries

    def held(states):
        copied.set()
        release.wait(30)
        return pickled_entries(states)

    monkeypatch.setattr(sessions_module, "pickled_entries", held)
    writer = threading.Thread(target=sessions.save_snapshot, args=(store, SNAPSHOT))
    writer.start()
    try:
        assert copied.wait(30)
        applied = threading.Thread(target=sessions.record, args=(store, events_for(catalog, "1", 50, 3)))
        applied.start()
        applied.join(10)
        assert not applied.is_alive()  # the lock is free while the entries are pickled
    finally:
        release.set()
        writer.join(30)
    crash()

    rebooted = UserSessions(served.config, served.catalog(open_store_()), SNAPSHOT)
    assert rebooted.replayed == 3
    assert_same_users(sessions, rebooted, ("1", "2"))
