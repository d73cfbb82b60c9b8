"""Deterministic evaluation splits (the protocols in DESIGN.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.data.interactions import Interactions


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Per user: the last event (by time, then item index) is test, the second-last validation.

    `train` is the input and the history mask for validation; `test_input` (train plus the
    validation event) is both for test.
    """

    train: Interactions
    test_input: Interactions
    valid_targets: np.ndarray  # (n_users,) item index
    test_targets: np.ndarray  # (n_users,) item index


def leave_one_out(interactions: Interactions, min_interactions: int = 3) -> LeaveOneOutSplit:
    if min_interactions < 3:
        raise ValueError("leave-one-out needs at least 3 interactions per user (train, validation, test)")
    kept = interactions.select_users(interactions.lengths >= min_interactions)
    last = kept.indptr[1:] - 1
    return LeaveOneOutSplit(
        train=kept.truncate(kept.lengths - 2),
        test_input=kept.truncate(kept.lengths - 1),
        valid_targets=kept.items[last - 1].astype(np.int64),
        test_targets=kept.items[last].astype(np.int64),
    )


@dataclass(frozen=True)
class ColdItemSplit:
    """A seeded fraction of the interacted items is 'new': all their events leave training.

    Each user's first event with a new item is a test case. Its input history is the user's
    training events strictly before that event's time (`train` truncated to `case_history_lengths`).
    """

    new_items: np.ndarray  # sorted item indices
    train: Interactions
    case_users: np.ndarray
    case_items: np.ndarray
    case_timestamps: np.ndarray
    case_history_lengths: np.ndarray  # number of the user's train events before the case


def cold_item_split(interactions: Interactions, fraction: float = 0.1, seed: int = 0) -> ColdItemSplit:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    interacted = np.flatnonzero(interactions.item_counts() > 0)
    rng = np.random.default_rng(seed)
    new_items = np.sort(rng.choice(interacted, size=max(1, round(fraction * len(interacted))), replace=False))
    is_new = np.zeros(interactions.n_items, dtype=bool)
    is_new[new_items] = True
    train = interactions.without_items(is_new)

    users = interactions.user_of_event()
    new_events = np.flatnonzero(is_new[interactions.items])
    # events are sorted per user by time, so the first occurrence of each (user, item) is the first interaction
    _, first = np.unique(users[new_events] * interactions.n_items + interactions.items[new_events], return_index=True)
    cases = new_events[first]
    cases = cases[np.lexsort((interactions.items[cases], interactions.timestamps[cases], users[cases]))]
    case_users = users[cases]
    case_timestamps = interactions.timestamps[cases]

    # train events strictly before each case's time: search within the user's slice of train
    train_users = train.user_of_event()
    key_span = np.int64(1) << 34  # above any unix-second timestamp, so (user, time) orders as one key
    train_keys = train_users.astype(np.int64) * key_span + train.timestamps
    case_keys = case_users.astype(np.int64) * key_span + case_timestamps
    history_lengths = np.searchsorted(train_keys, case_keys, side="left") - train.indptr[case_users]
    return ColdItemSplit(
        new_items=new_items,
        train=train,
        case_users=case_users,
        case_items=interactions.items[cases].astype(np.int64),
        case_timestamps=case_timestamps,
        case_history_lengths=history_lengths.astype(np.int64),
    )
