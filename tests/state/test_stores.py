"""Both state stores (real SQLite, real Redis): order, hides, events, snapshots, erasure, and
that an acknowledged write survives a crash."""

import numpy as np
import pytest

from dynrec.config import DynrecConfig
from dynrec.state import ItemChange, StoredEvent, open_store


def change(item_id: str, seed: int) -> ItemChange:
    rng = np.random.default_rng(seed)
    return ItemChange(0, item_id, False, {"title": item_id.title(), "categories": ["Drama"]},
                      rng.standard_normal(384).astype(np.float32), True, np.zeros(1280, np.float32), False,
                      rng.standard_normal(16).astype(np.float32), "v1", rng.standard_normal(400).astype(np.float32))


def test_changes_come_back_in_order_from_any_reader_and_survive_a_crash(open_backend):
    open_store_, crash = open_backend
    writer = open_store_()
    first, second = change("a", 0), change("b", 1)
    seqs = [writer.put_item(first), writer.put_item(second), writer.hide("a")]
    assert seqs == sorted(seqs) and writer.latest() == (seqs[-1], 0)
    last = writer.add_events([StoredEvent("a", 100, 5.0), StoredEvent("b", 101, 1.0, "click", "u1", "rec-1")])
    crash()

    reader = open_store_()  # another replica's connection, after the crash
    changes = reader.item_changes(0)
    assert [(c.item_id, c.hidden) for c in changes] == [("a", False), ("b", False), ("a", True)]
    np.testing.assert_array_equal(changes[0].embedding, first.embedding)
    np.testing.assert_array_equal(changes[1].text_vec, second.text_vec)
    np.testing.assert_array_equal(changes[1].content_vec, second.content_vec)
    assert changes[0].record == {"title": "A", "categories": ["Drama"]} and changes[0].model_version == "v1"
    assert [c.item_id for c in reader.item_changes(seqs[0])] == ["b", "a"]  # only what is newer
    assert [event for _, event in reader.events(0)] == [
        ("a", 100, 5.0, "rating", None, None, None, None), ("b", 101, 1.0, "click", "u1", "rec-1", None, None)
    ]
    assert reader.latest() == (seqs[-1], last)
    assert [event.item_id for _, event in reader.events(last - 1)] == ["b"]


def test_snapshots_replace_whole_and_erasure_removes_only_that_users_events(open_backend):
    open_store_, crash = open_backend
    store = open_store_()
    assert store.load_snapshot("users-0-of-1") is None
    store.save_snapshot("users-0-of-1", 7, b"first")
    store.save_snapshot("users-0-of-1", 9, b"second" * 1000)
    store.add_events([StoredEvent("a", 1, 1.0, "view", "alice"), StoredEvent("b", 2, 1.0, "view", "bob"),
                      StoredEvent("c", 3, 1.0, "click", "alice", "rec")])
    assert store.erase_user("alice") == 2
    crash()
    store = open_store_()
    assert store.load_snapshot("users-0-of-1") == (9, b"second" * 1000)
    assert [(e.item_id, e.user_id) for _, e in store.events(0)] == [("b", "bob")]
    assert store.erase_user("alice") == 0


def test_keyed_snapshots_change_only_the_entries_named_and_survive_a_crash(open_backend):
    open_store_, crash = open_backend
    store = open_store_()
    assert store.load_snapshot_entries("users-0-of-1") is None
    store.save_snapshot_entries("users-0-of-1", 3, b"h1", {"alice": b"a1", "bob": b"b1", "carol": b"c1"})
    store.save_snapshot_entries("users-0-of-1", 5, b"h2", {"bob": b"b2" * 1000, "dave": b"d1"}, removed=["alice"])
    store.save_snapshot_entries("users-1-of-2", 4, b"other", {"erin": b"e1"})
    crash()
    store = open_store_()
    assert store.load_snapshot_entries("users-0-of-1") == (5, b"h2", {"bob": b"b2" * 1000, "carol": b"c1", "dave": b"d1"})
    store.save_snapshot_entries("users-0-of-1", 6, b"h3", {"carol": b"c2"}, whole=True)
    assert store.load_snapshot_entries("users-0-of-1") == (6, b"h3", {"carol": b"c2"})
    assert store.load_snapshot_entries("users-1-of-2") == (4, b"other", {"erin": b"e1"})


def test_an_older_sqlite_event_table_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    import sqlite3

    from dynrec.state.sqlite import SqliteStore

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE item_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,"
               " ts INTEGER NOT NULL, value REAL NOT NULL)")
    db.execute("INSERT INTO item_events (item_id, ts, value) VALUES ('a', 5, 4.0)")
    db.commit()
    db.close()
    store = SqliteStore(path)
    store.add_events([StoredEvent("b", 6, 1.0, "impression", "u", "r")])
    assert [event for _, event in store.events(0)] == [("a", 5, 4.0, "rating", None, None, None, None),
                                                       ("b", 6, 1.0, "impression", "u", "r", None, None)]


def test_sqlite_request_path_reads_answer_while_a_write_holds_the_store(tmp_path):
    """What is new and the log's tail are read without queueing behind a write in flight: a
    UserState snapshot (19 MB on ML-1M, and its fsync) held the store for 0.2 s while the user
    lookup, which runs on the replica's event loop, waited for it."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from dynrec.state.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "state.sqlite")
    seq = store.put_item(change("a", 0))
    pool = ThreadPoolExecutor(1)
    with store._lock:  # a write in flight on the store's connection
        answers = [pool.submit(store.latest), pool.submit(store.item_changes, 0), pool.submit(store.events, 0)]
        done, _ = wait(answers, timeout=10)
    pool.shutdown()
    assert len(done) == 3
    assert answers[0].result() == (seq, 0) and [c.item_id for c in answers[1].result()] == ["a"] and answers[2].result() == []


def test_redis_erasure_reads_the_users_own_list_and_scans_only_what_came_before_the_lists(redis_server):
    """Events written before the per-user lists existed (the old script: stream and counter only)
    are still erased, by a scan of that part; newer ones come from the user's list."""
    import json

    import redis

    from dynrec.state.redis import RedisStore

    client = redis.Redis.from_url(redis_server.url)
    for seq, (item, user) in enumerate([("a", "alice"), ("b", "bob")], start=1):
        entry = {k: v for k, v in StoredEvent(item, seq, 1.0, "view", user)._asdict().items() if k != "key"}
        client.xadd("old:item_events", {"entry": json.dumps(entry)}, id=f"{seq}-1")
        client.set("old:event_seq", seq)
    store = RedisStore(redis_server.url, namespace="old")
    store.add_events([StoredEvent("c", 3, 1.0, "view", "alice"), StoredEvent("d", 4, 1.0, "view", "bob")])
    assert client.lrange("old:user-events:alice", 0, -1) == [b"3"]  # only what came after the lists
    assert store.erase_user("alice") == 2
    assert [(e.item_id, e.user_id) for _, e in store.events(0)] == [("b", "bob"), ("d", "bob")]
    assert not client.exists("old:user-events:alice")
    assert RedisStore(redis_server.url, namespace="old")._user_index_from == 2  # set once, not moved by a reopen

    fresh = RedisStore(redis_server.url, namespace="new")
    assert fresh._user_index_from == 0  # a new store never scans
    fresh.add_events([StoredEvent("a", 1, 1.0, "view", "alice"), StoredEvent("b", 2, 1.0, "view", "bob")])
    assert fresh.erase_user("alice") == 1 and [e.user_id for _, e in fresh.events(0)] == ["bob"]


def test_open_store_picks_the_backend_and_rejects_unknown_ones(tmp_path, redis_server):
    def config(**state):
        return DynrecConfig.from_dict({"home": str(tmp_path), "state": state})

    assert type(open_store(config())).__name__ == "SqliteStore"
    assert type(open_store(config(backend="redis", redis_url=redis_server.url))).__name__ == "RedisStore"
    with pytest.raises(ValueError, match="sqlite or redis"):
        open_store(config(backend="etcd"))


def test_keyed_events_are_stored_once_and_users_and_erasures_persist(open_backend):
    open_store_, crash = open_backend
    store = open_store_()
    first = store.add_events([StoredEvent("a", 1, 1.0, "view", "u1", None, 11), StoredEvent("b", 2, 1.0, "view", "u1", None, 12)])
    again = store.add_events([StoredEvent("a", 1, 1.0, "view", "u1", None, 11), StoredEvent("c", 3, 1.0, "view", "u2", None, 13),
                              StoredEvent("d", 4, 1.0, "view", "u2"), StoredEvent("d", 4, 1.0, "view", "u2")])
    assert (first, again) == (2, 5)  # k1 skipped; unkeyed (live) events always append
    store.put_users({"u1": {"age": "25"}, "u2": {}})
    assert store.erase_user("u1") == 2
    crash()
    store = open_store_()
    assert [e.item_id for _, e in store.events(0)] == ["c", "d", "d"]
    assert store.users() == {"u2": {}} and store.erased_users() == {"u1"}
    assert store.put_items([change("x", 0), change("y", 1)]) == 2 and [c.item_id for c in store.item_changes(0)] == ["x", "y"]


def test_issued_recommendations_are_kept_until_they_expire_and_events_keep_their_position(open_backend):
    import time

    from dynrec.state import IssuedRecommendation

    open_store_, crash = open_backend
    store = open_store_()
    store.put_recommendations([IssuedRecommendation("r1", "u1", ["a", "b"], [False, True], 1.0)], ttl_s=60)
    store.put_recommendations([IssuedRecommendation("short", "u1", ["a"], [False], 1.0)], ttl_s=0.2)
    store.add_events([StoredEvent("b", 5, 1.0, "click", "u1", "r1", position=1), StoredEvent("a", 6, 1.0, "view", "u1")])
    time.sleep(0.4)
    crash()
    store = open_store_()
    assert store.recommendation("r1") == IssuedRecommendation("r1", "u1", ["a", "b"], [False, True], 1.0)
    assert store.recommendation("short") is None and store.recommendation("never") is None
    assert [(e.recommendation_id, e.position) for _, e in store.events(0)] == [("r1", 1), (None, None)]


def test_erasing_a_user_erases_the_recommendations_issued_to_them(open_backend):
    from dynrec.state import IssuedRecommendation

    open_store_, _ = open_backend
    store = open_store_()
    store.put_recommendations([IssuedRecommendation("mine", "u1", ["a"], [False], 1.0),
                               IssuedRecommendation("theirs", "u2", ["a"], [False], 1.0)], ttl_s=60)
    store.erase_user("u1")
    assert store.recommendation("mine") is None and store.recommendation("theirs") is not None


def test_attributed_events_come_back_with_their_positions_and_nothing_else(open_backend):
    store = open_backend[0]()
    last = store.add_events([StoredEvent("a", 1, 1.0, "impression", "u", "rec", position=2),
                             StoredEvent("a", 2, 1.0, "click", "u", "rec", position=2),
                             StoredEvent("b", 3, 1.0, "click", "u", None),  # names no recommendation
                             StoredEvent("c", 4, 5.0, "rating", "u", "rec", position=0),  # not feedback
                             StoredEvent("d", 5, 1.0, "impression", "u", "rec")])
    assert store.attributed_events(last, ("impression", "click")) == [("a", "impression", 2), ("a", "click", 2), ("d", "impression", None)]
    assert store.attributed_events(last - 4, ("impression", "click")) == [("a", "impression", 2)]
