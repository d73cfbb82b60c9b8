"""Per-user event sequences over integer item indices: what models and evaluation consume.

Item indices follow the order of the catalogue table; user indices follow the ids' natural order
(numeric when every id is a number). Each user's events are sorted by time, ties broken by item
index, so every split and model sees the same deterministic order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from dynrec.data.dataset import Dataset


def natural_order(ids: np.ndarray) -> np.ndarray:
    """Sorted ids: numerically when all are integers, else lexicographically."""
    ids = np.asarray(ids, dtype=object)
    if all(isinstance(i, str) and i.isdigit() for i in ids):
        return ids[np.argsort(ids.astype(np.int64), kind="stable")]
    return np.sort(ids)


@dataclass(frozen=True)
class Interactions:
    user_ids: np.ndarray  # (n_users,) object: index -> external id
    item_ids: np.ndarray  # (n_items,) object: index -> external id, catalogue order
    indptr: np.ndarray  # (n_users + 1,) int64: user u's events are [indptr[u], indptr[u+1])
    items: np.ndarray  # (n_events,) int32 item index
    timestamps: np.ndarray  # (n_events,) int64 unix seconds
    values: np.ndarray  # (n_events,) float32 (ratings; 1.0 where an event has no value)
    event_types: np.ndarray  # (n_events,) int16 index into event_type_names
    event_type_names: tuple[str, ...] = ("rating",)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def user_of_event(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_users), self.lengths)

    def position_in_sequence(self) -> np.ndarray:
        return np.arange(self.n_events) - np.repeat(self.indptr[:-1], self.lengths)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def to_csr(self, users: np.ndarray | None = None) -> sp.csr_matrix:
        """Binary user x item matrix (rows = `users`, or all users)."""
        # scipy keeps the index arrays it is given and sum_duplicates sorts them in place: pass
        # copies, or every call would reorder this object's time-ordered sequences
        matrix = sp.csr_matrix(
            (np.ones(self.n_events, dtype=np.float32), self.items.copy(), self.indptr.copy()),
            shape=(self.n_users, self.n_items),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix if users is None else matrix[users]

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)

    def _with_events(self, keep: np.ndarray) -> "Interactions":
        counts = np.bincount(self.user_of_event()[keep], minlength=self.n_users)
        return Interactions(
            self.user_ids,
            self.item_ids,
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            self.items[keep],
            self.timestamps[keep],
            self.values[keep],
            self.event_types[keep],
            self.event_type_names,
        )

    def truncate(self, keep_counts: np.ndarray) -> "Interactions":
        """Keep the first `keep_counts[u]` events of every user u."""
        return self._with_events(self.position_in_sequence() < np.repeat(keep_counts, self.lengths))

    def without_items(self, item_mask: np.ndarray) -> "Interactions":
        """Drop every event whose item is flagged in the boolean `item_mask` (n_items,)."""
        return self._with_events(~item_mask[self.items])

    def select_users(self, user_mask: np.ndarray) -> "Interactions":
        """Keep only the flagged users (re-indexed in the same order)."""
        keep = user_mask[self.user_of_event()]
        lengths = self.lengths[user_mask]
        return Interactions(
            self.user_ids[user_mask],
            self.item_ids,
            np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            self.items[keep],
            self.timestamps[keep],
            self.values[keep],
            self.event_types[keep],
            self.event_type_names,
        )

    @classmethod
    def from_dataset(cls, dataset: Dataset, exclude_types: tuple[str, ...] = ()) -> "Interactions":
        """Every event but those of `exclude_types` (serving leaves out impressions: a showing is
        not an interaction)."""
        item_ids = np.asarray(dataset.items["item_id"].to_pylist(), dtype=object)
        events = dataset.events
        if exclude_types:
            events = events.filter(pc.invert(pc.is_in(events["event_type"], value_set=pa.array(exclude_types, pa.string()))))
        item_index = pc.index_in(events["item_id"], value_set=dataset.items["item_id"]).fill_null(-1).to_numpy()
        unknown = item_index < 0
        if unknown.any():
            sample = events["item_id"].filter(unknown).to_pylist()[:5]
            raise ValueError(f"{dataset.name}: {int(unknown.sum())} events name items not in the catalogue, e.g. {sample}")
        user_ids = natural_order(pc.unique(events["user_id"]).to_numpy(zero_copy_only=False))
        user_index = pc.index_in(events["user_id"], value_set=pa.array(user_ids.tolist(), pa.string())).to_numpy()
        items = item_index.astype(np.int32)
        users = user_index.astype(np.int64)
        timestamps = events["timestamp"].cast("int64").to_numpy()
        values = events["value"].fill_null(1.0).to_numpy().astype(np.float32)
        type_names = tuple(sorted(pc.unique(events["event_type"]).to_pylist()))
        event_types = pc.index_in(events["event_type"], value_set=pa.array(type_names, pa.string())).to_numpy()
        order = np.lexsort((items, timestamps, users))
        counts = np.bincount(users, minlength=len(user_ids))
        return cls(
            user_ids,
            item_ids,
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            items[order],
            timestamps[order],
            values[order],
            event_types[order].astype(np.int16),
            type_names,
        )
