"""The item store's log on a real SQLite file: order, hides, behaviour events, durability."""

import numpy as np

from dynrec.serving.store import ItemChange, ItemStore, StoredEvent


def change(item_id: str, seed: int) -> ItemChange:
    rng = np.random.default_rng(seed)
    return ItemChange(0, item_id, False, {"title": item_id.title(), "categories": ["Drama"]},
                      rng.standard_normal(384).astype(np.float32), True, np.zeros(1280, np.float32), False,
                      rng.standard_normal(16).astype(np.float32), "v1")


def test_changes_come_back_in_order_from_any_reader_and_survive_reopening(tmp_path):
    path = tmp_path / "items.sqlite"
    writer = ItemStore(path)
    first, second = change("a", 0), change("b", 1)
    seqs = [writer.put_item(first), writer.put_item(second), writer.hide("a")]
    assert seqs == sorted(seqs) and writer.latest() == (seqs[-1], 0)

    reader = ItemStore(path)  # another replica's connection
    changes = reader.item_changes(0)
    assert [(c.item_id, c.hidden) for c in changes] == [("a", False), ("b", False), ("a", True)]
    np.testing.assert_array_equal(changes[0].embedding, first.embedding)
    np.testing.assert_array_equal(changes[1].text_vec, second.text_vec)
    assert changes[0].record == {"title": "A", "categories": ["Drama"]} and changes[0].model_version == "v1"
    assert [c.item_id for c in reader.item_changes(seqs[0])] == ["b", "a"]  # only what is newer

    last = writer.add_events([StoredEvent("a", 100, 5.0), StoredEvent("b", 101, 1.0, "click", "u1", "rec-1")])
    writer.close()
    reopened = ItemStore(path)
    assert reopened.latest() == (seqs[-1], last)
    assert [event for _, event in reopened.events(0)] == [
        ("a", 100, 5.0, "rating", None, None), ("b", 101, 1.0, "click", "u1", "rec-1")
    ]


def test_an_older_event_table_gains_the_new_columns_and_keeps_its_rows(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE item_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,"
               " ts INTEGER NOT NULL, value REAL NOT NULL)")
    db.execute("INSERT INTO item_events (item_id, ts, value) VALUES ('a', 5, 4.0)")
    db.commit()
    db.close()
    store = ItemStore(path)
    store.add_events([StoredEvent("b", 6, 1.0, "impression", "u", "r")])
    assert [event for _, event in store.events(0)] == [("a", 5, 4.0, "rating", None, None), ("b", 6, 1.0, "impression", "u", "r")]
