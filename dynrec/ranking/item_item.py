"""The item-item term: what users who had a user's items also had, added to the model's scores.

A sequence model reads the order of a history; where the order says little (a review log, or
ML-100k with each user's timestamps dealt out at random) what co-occurs in histories predicts the
held-out item better: there EASE (Steck, WWW 2019) scored 0.146 NDCG@10 against dynrec's 0.110
alone, and dynrec with this term 0.148 (the order-free row of bench/results/accuracy.json). Where
the order carries the signal (ML-1M) the term still adds 4% (0.193 to 0.201).

Training (`dynrec.models.item_item.fit_item_item`) fits EASE on the training events, keeps each
item's `item_item.neighbours` weights of largest magnitude, and picks the weight the term is added at by
validation NDCG@10 (0, the model alone, where the term does not help). The served weights are
refitted on every event and saved beside the model (`ITEM_ITEM_FILE`), so they are published,
fetched and swapped with it. Ranking adds `weight` times the user's EASE score over their seen
items, standardised over the catalogue, to the model's standardised score (`ItemItemTerm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ITEM_ITEM_FILE = "item_item.npz"  # beside the model's checkpoint


@dataclass
class ItemItemWeights:
    """Each trained item's kept EASE weights as a CSR matrix (row: the item a user had, columns:
    the items it speaks for, sorted within a row), over `item_ids`, and the `weight` the term is
    added at."""

    item_ids: list[str]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    weight: float

    def save(self, path: Path) -> None:
        temp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(temp, item_ids=np.array(self.item_ids, dtype=str), indptr=self.indptr, indices=self.indices,
                 data=self.data, weight=np.float64(self.weight))
        temp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "ItemItemWeights | None":
        """The weights saved at `path`; None when the model has none (trained before the term, or
        on a catalogue above `item_item.max_items`)."""
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as saved:
            return cls(saved["item_ids"].tolist(), saved["indptr"], saved["indices"], saved["data"], float(saved["weight"]))


class ItemItemTerm:
    """The served weights over a catalogue: per user, each item's term (`weight` times its
    standardised EASE score over the trained items) from the items the user has had."""

    def __init__(self, weights: ItemItemWeights, catalogued: dict[str, int] | None = None):
        """`catalogued`: the catalogue's items (by id); trained items missing from it (a model
        trained on files with items the store lacks) are never put forward."""
        self.weight = weights.weight
        self.item_ids = weights.item_ids
        self.position = {item_id: i for i, item_id in enumerate(weights.item_ids)}
        self.indptr, self.indices, self.data = weights.indptr, weights.indices, weights.data
        self.absent = [p for i, p in self.position.items() if catalogued is not None and i not in catalogued]
        self._last: tuple[set[str], UserItemItem | None] | None = None

    def scores(self, seen: set[str]) -> np.ndarray | None:
        """The user's raw EASE scores over the trained items (None when none of `seen` is one)."""
        rows = np.array([self.position[i] for i in seen if i in self.position], dtype=np.int64)
        if not len(rows):
            return None
        starts, lengths = self.indptr[rows], self.indptr[rows + 1] - self.indptr[rows]
        # every kept entry of those rows, gathered at once: each row's start, plus 0..length-1
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        entries = np.repeat(starts, lengths) + offsets
        return np.bincount(self.indices[entries], weights=self.data[entries], minlength=len(self.item_ids))

    def between(self, had: list[str], items: list[str]) -> np.ndarray:
        """(len(had), len(items)): the kept weight from each item a user had to each item (0 where
        none is kept); every id must be a trained one."""
        columns = np.array([self.position[i] for i in items], dtype=np.int64)
        weights = np.zeros((len(had), len(columns)), np.float32)
        for row, item_id in enumerate(had):
            span = slice(self.indptr[self.position[item_id]], self.indptr[self.position[item_id] + 1])
            kept = self.indices[span]  # sorted
            at = np.minimum(np.searchsorted(kept, columns), max(len(kept) - 1, 0))
            found = kept[at] == columns if len(kept) else np.zeros(len(columns), bool)
            weights[row, found] = self.data[span][at[found]]
        return weights

    def for_user(self, seen: set[str]) -> "UserItemItem | None":
        """The user's term; None when it adds nothing (no seen item is a trained one, or a weight of
        0). A request asks twice (ranking, then reasons) with the same view's `seen`: the last
        answer is kept for that very set (views are copies, never changed in place)."""
        last = self._last
        if last is not None and last[0] is seen:
            return last[1]
        raw = self.scores(seen) if self.weight else None
        spread = float(raw.std()) if raw is not None else 0.0
        mine = UserItemItem(self, self.weight * (raw - raw.mean()) / spread, self.weight * -raw.mean() / spread) if spread > 0 else None
        self._last = (seen, mine)
        return mine


@dataclass
class UserItemItem:
    """One user's term: `by_position` over the term's trained items, and `unsupported`, the term of
    an item none of the user's items speak for (and of items the weights do not know)."""

    term: ItemItemTerm
    by_position: np.ndarray
    unsupported: float

    def of(self, item_ids: list[str]) -> np.ndarray:
        position = self.term.position
        return np.array([self.by_position[position[i]] if i in position else self.unsupported for i in item_ids])

    def top(self, k: int, exclude: set[str], allowed=None) -> list[str]:
        """The up-to-k items with the largest term, not in `exclude`, that `allowed(item_id)`
        admits (None: all), best first (items the user's items do not speak for never count)."""
        position = self.term.position
        dropped = [position[i] for i in exclude if i in position] + self.term.absent  # seen items rank high: skipped here
        supported = np.setdiff1d(np.flatnonzero(self.by_position > self.unsupported), dropped)
        order = supported[np.argsort(-self.by_position[supported], kind="stable")]
        if allowed is None:
            return [self.term.item_ids[p] for p in order[:k]]
        found: list[str] = []
        for position in order:
            item_id = self.term.item_ids[position]
            if allowed(item_id):
                found.append(item_id)
                if len(found) == k:
                    break
        return found
