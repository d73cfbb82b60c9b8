import numpy as np
import pytest

from dynrec.data import cold_item_split, leave_one_out
from dynrec.data import Interactions
from tests.conftest import make_interactions, tiny_dataset


def test_events_are_ordered_by_time_then_item_index():
    # two events in the same second: the lower item index comes first, whatever the input order
    dataset = tiny_dataset(["x", "y", "z"], [("u", "z", 20), ("u", "y", 10), ("u", "x", 20)])
    assert Interactions.from_dataset(dataset).sequence(0).tolist() == [1, 0, 2]


def test_leave_one_out_holds_out_last_two():
    interactions = make_interactions({"a": [(0, 1), (1, 2), (2, 3), (3, 4)], "b": [(4, 5), (5, 6)], "c": [(1, 1), (2, 1), (3, 1)]}, 6)
    split = leave_one_out(interactions)
    assert list(split.train.user_ids) == ["a", "c"]  # b has fewer than 3 interactions
    assert split.train.sequence(0).tolist() == [0, 1]
    assert split.valid_targets.tolist() == [2, 2]
    assert split.test_targets.tolist() == [3, 3]
    assert split.test_input.sequence(0).tolist() == [0, 1, 2]


def test_leave_one_out_has_no_leakage(ml100k_interactions, ml100k_split):
    full, split = ml100k_interactions, ml100k_split
    assert split.train.n_users == full.n_users == 943  # every ML-100k user has >= 20 ratings
    last_train_time = np.maximum.reduceat(split.train.timestamps, split.train.indptr[:-1])
    valid_time = split.test_input.timestamps[split.test_input.indptr[1:] - 1]
    test_time = full.timestamps[full.indptr[1:] - 1]
    assert np.array_equal(split.test_targets, full.items[full.indptr[1:] - 1])
    assert np.all(last_train_time <= valid_time) and np.all(valid_time <= test_time)
    assert not np.any(split.test_targets == split.valid_targets)
    assert split.train.n_events + 2 * split.train.n_users == 100_000


def test_leave_one_out_is_deterministic(ml100k_interactions):
    first, second = leave_one_out(ml100k_interactions), leave_one_out(ml100k_interactions)
    assert np.array_equal(first.test_targets, second.test_targets)
    assert np.array_equal(first.train.items, second.train.items)


def test_cold_item_split_removes_new_items_and_uses_only_the_past(ml100k_interactions):
    interactions = ml100k_interactions
    split = cold_item_split(interactions, fraction=0.1, seed=7)
    interacted = int((interactions.item_counts() > 0).sum())
    assert len(split.new_items) == round(0.1 * interacted)
    assert not np.isin(split.train.items, split.new_items).any()
    assert np.isin(split.case_items, split.new_items).all()
    # one case per (user, new item) pair: the first interaction
    pairs = set(zip(split.case_users.tolist(), split.case_items.tolist()))
    assert len(pairs) == len(split.case_users)
    # the history handed to the model ends strictly before the case's time
    for case in range(0, len(split.case_users), 97):
        user, length = split.case_users[case], split.case_history_lengths[case]
        start = split.train.indptr[user]
        history_times = split.train.timestamps[start : start + length]
        assert np.all(history_times < split.case_timestamps[case])
        following = split.train.timestamps[start + length : split.train.indptr[user + 1]]
        assert np.all(following >= split.case_timestamps[case])


def test_cold_item_split_is_seeded(ml100k_interactions):
    a = cold_item_split(ml100k_interactions, seed=1)
    b = cold_item_split(ml100k_interactions, seed=1)
    c = cold_item_split(ml100k_interactions, seed=2)
    assert np.array_equal(a.new_items, b.new_items)
    assert not np.array_equal(a.new_items, c.new_items)


def test_invalid_split_settings_are_rejected(ml100k_interactions):
    with pytest.raises(ValueError):
        leave_one_out(ml100k_interactions, min_interactions=2)
    with pytest.raises(ValueError):
        cold_item_split(ml100k_interactions, fraction=1.5)


def test_building_the_matrix_leaves_the_sequences_in_time_order(ml100k_interactions):
    before = ml100k_interactions.items.copy()
    matrix = ml100k_interactions.to_csr()
    assert matrix.nnz == 100_000
    assert np.array_equal(ml100k_interactions.items, before)
