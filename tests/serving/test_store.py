"""The item store's log on a real SQLite file: order, hides, behaviour events, durability."""

import numpy as np

from dynrec.serving.store import ItemChange, ItemStore


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

    last = writer.add_events([("a", 100, 5.0), ("b", 101, 1.0)])
    writer.close()
    reopened = ItemStore(path)
    assert reopened.latest() == (seqs[-1], last)
    assert [(item, ts, value) for _, item, ts, value in reopened.events(0)] == [("a", 100, 5.0), ("b", 101, 1.0)]
