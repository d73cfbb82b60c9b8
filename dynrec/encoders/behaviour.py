"""Item behaviour statistics, the third item modality.

Every feature is computed "as of" a timestamp from events strictly before it, so training never
sees the future. Events can be added one at a time (the serving path); a snapshot of all items
is vectorised (the training path).
"""

from __future__ import annotations

import bisect

import numpy as np

from dynrec.config import BehaviourConfig

DAY = 86_400.0
# Combines (item, time) into one sortable int64 key; times stay below 2**34 s (year 2514).
_KEY_SPAN = np.int64(1) << 34


class BehaviourFeatures:
    """Per-item windowed counts, all-time count, mean value, time since last event, and age."""

    def __init__(self, n_items: int, created_at: np.ndarray | None = None, config: BehaviourConfig | None = None):
        self.config = config or BehaviourConfig()
        self.n_items = n_items
        # unknown creation time: the item's first event stands in for it
        self.created_at = np.full(n_items, -1, dtype=np.int64) if created_at is None else created_at.astype(np.int64)
        self._times: list[list[int]] = [[] for _ in range(n_items)]
        self._values: list[list[float]] = [[] for _ in range(n_items)]
        self._flat: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def dim(self) -> int:
        return len(self.config.windows_days) + 5

    @classmethod
    def from_events(
        cls,
        items: np.ndarray,
        timestamps: np.ndarray,
        values: np.ndarray,
        n_items: int,
        created_at: np.ndarray | None = None,
        config: BehaviourConfig | None = None,
    ) -> "BehaviourFeatures":
        features = cls(n_items, created_at, config)
        order = np.lexsort((timestamps, items))
        items, timestamps, values = items[order], timestamps[order], values[order]
        bounds = np.searchsorted(items, np.arange(n_items + 1))
        for item in range(n_items):
            lo, hi = bounds[item], bounds[item + 1]
            features._times[item] = timestamps[lo:hi].tolist()
            features._values[item] = values[lo:hi].tolist()
        return features

    def add_item(self, created_at: int = -1) -> int:
        """Register a new catalogue item; returns its index."""
        return int(self.add_items([created_at])[0])

    def add_items(self, created_at) -> np.ndarray:
        """Register new catalogue items (their creation times, -1 unknown); returns their indices."""
        n = len(created_at)
        self._times.extend([] for _ in range(n))
        self._values.extend([] for _ in range(n))
        self.created_at = np.append(self.created_at, np.asarray(created_at, np.int64))
        self.n_items += n
        self._flat = None
        return np.arange(self.n_items - n, self.n_items)

    def update(self, item: int, timestamp: int, value: float = 1.0) -> None:
        """Record one event; out-of-order events are inserted in time order."""
        times = self._times[item]
        at = bisect.bisect_right(times, timestamp)
        times.insert(at, int(timestamp))
        self._values[item].insert(at, float(value))
        self._flat = None

    def _flatten(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._flat is None:
            lengths = np.array([len(t) for t in self._times], dtype=np.int64)
            items = np.repeat(np.arange(self.n_items, dtype=np.int64), lengths)
            times = np.fromiter((t for ts in self._times for t in ts), dtype=np.int64, count=int(lengths.sum()))
            values = np.fromiter((v for vs in self._values for v in vs), dtype=np.float64, count=int(lengths.sum()))
            self._flat = (items * _KEY_SPAN + times, times, np.concatenate([[0.0], np.cumsum(values)]))
        return self._flat

    def snapshot(self, as_of: int) -> np.ndarray:
        """(n_items, dim) float32 features of every item from the events before `as_of`."""
        keys, times, value_sums = self._flatten()
        base = np.arange(self.n_items, dtype=np.int64) * _KEY_SPAN
        start = np.searchsorted(keys, base, side="left")
        end = np.searchsorted(keys, base + as_of, side="left")
        window_counts = [
            end - np.searchsorted(keys, base + max(as_of - int(days * DAY), 0), side="left")
            for days in self.config.windows_days
        ]
        total = end - start
        has = total > 0
        last = np.where(has, times[np.maximum(end - 1, 0)], as_of) if len(times) else np.full(self.n_items, as_of)
        first = np.where(has, times[np.minimum(start, len(times) - 1)] if len(times) else as_of, as_of)
        mean = np.where(has, (value_sums[end] - value_sums[start]) / np.maximum(total, 1), self.config.value_center)
        created = np.where(self.created_at >= 0, self.created_at, first)
        return self._assemble(window_counts, total, mean, as_of - last, as_of - created, has, no_history=~has)

    def item_features(self, item: int, as_of: int) -> np.ndarray:
        """(dim,) features of one item: the per-event serving path, no snapshot of the world."""
        times, values = self._times[item], self._values[item]
        end = bisect.bisect_left(times, as_of)
        window_counts = [
            np.array([end - bisect.bisect_left(times, max(as_of - int(days * DAY), 0))]) for days in self.config.windows_days
        ]
        has = end > 0
        mean = sum(values[:end]) / end if has else self.config.value_center
        last = times[end - 1] if has else as_of
        created = self.created_at[item] if self.created_at[item] >= 0 else (times[0] if has else as_of)
        return self._assemble(
            window_counts, np.array([end]), np.array([mean]), np.array([as_of - last]), np.array([as_of - created]),
            np.array([has]), no_history=np.array([not has]),
        )[0]

    def counts(self, as_of: int, days: float) -> tuple[np.ndarray, np.ndarray]:
        """Per item: events in the `days` before `as_of`, and all events before it. Two bisects per
        item, so it stays cheap while events arrive; `snapshot` flattens every event first (80-130
        ms for the 488k served ML-1M ratings, each time an event has arrived since the last one)."""
        cutoff = max(as_of - int(days * DAY), 0)
        recent = np.zeros(self.n_items, np.int64)
        total = np.zeros(self.n_items, np.int64)
        for item, times in enumerate(self._times):
            end = bisect.bisect_left(times, as_of)
            total[item] = end
            recent[item] = end - bisect.bisect_left(times, cutoff, 0, end)
        return recent, total

    def _assemble(self, window_counts, total, mean, since_last, age, has, no_history) -> np.ndarray:
        # with no history, "time since last event" is set to a year so it reads as long ago
        since_last_days = np.where(no_history, 365.0, np.maximum(since_last, 0) / DAY)
        columns = [np.log1p(c) for c in window_counts] + [
            np.log1p(total),
            (mean - self.config.value_center) / self.config.value_scale,
            np.log1p(since_last_days),
            np.log1p(np.maximum(age, 0) / DAY),
            has.astype(np.float64),
        ]
        return np.stack(columns, axis=1).astype(np.float32)


def latest_behaviour(
    interactions, created_at: np.ndarray, config: BehaviourConfig | None = None
) -> tuple["BehaviourFeatures", dict[str, np.ndarray], np.ndarray]:
    """Features of every item just after the last event (the "now" of a dataset), keyed by item
    id, plus the features of an item with no events, for items the events never mention."""
    features = BehaviourFeatures.from_events(
        interactions.items, interactions.timestamps, interactions.values, interactions.n_items, created_at, config
    )
    now = int(interactions.timestamps.max()) + 1 if len(interactions.timestamps) else 0
    snapshot = features.snapshot(now)
    empty = BehaviourFeatures(1, config=config).snapshot(now)[0]
    return features, dict(zip(interactions.item_ids.tolist(), snapshot)), empty


def time_bucket_edges(timestamps: np.ndarray, buckets: int) -> np.ndarray:
    """Snapshot times at event-time quantiles; edges[0] precedes every event."""
    quantiles = np.quantile(timestamps, np.linspace(0, 1, buckets + 1)[:-1]).astype(np.int64)
    quantiles[0] = timestamps.min()
    return np.unique(quantiles)


def bucket_of(timestamps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the last snapshot at or before each time (features from strictly earlier events)."""
    return np.maximum(np.searchsorted(edges, timestamps, side="right") - 1, 0)
