"""Incremental user state: an event costs one step of the user model, not a re-encode of its window.

The user model (dynrec.models.user) is causal, so the states of a window's earlier events do not
change when an event is appended: a step needs only their keys and values in each layer (1 KB an
event at dim 64 and 2 layers) and the new event. `UserStates` keeps them for the users updated
most recently (an LRU) and runs `ModelRuntime.step_user`, whose cost hardly grows with the window
while a re-encode's grows with it (bench/user_update.py: bench/results/user_update.json). Its
result is the model's output over the whole window, as a full encode gives it (within float
rounding; tests/users/test_incremental.py).

Which window. Positions count from the window's first event, so a window that slides by one event
moves every position and no cache survives it. Instead a window keeps its first event while it
grows, and moves only in jumps, to a first event that depends on the history alone
(`window_start`): the whole history while it is shorter than `max_length` (nothing has been
dropped yet), else the history's entry with the smallest `anchor_key` among its oldest
`max_length // 2` (a stable hash, the same in every process). As events arrive, that entry stays
first until it is dropped from the history or a smaller key enters the oldest half, about once in
`max_length / 4` events (1 in 43 on ML-1M at 200); then the cache is rebuilt by one encode of the
new window. So a full history's window holds between `max_length // 2 + 1` and `max_length`
events (153 on average on ML-1M at 200), and since it is a function of the history, every replica,
restart and model embeds a user over the same window, cached or not.

What a cached row keeps is its event's item vector as it was when the event arrived: items are
re-fused as their behaviour changes, and a step does not revisit earlier rows (training too embeds
each history item as of its event's time). A rebuild (window moved, cache evicted, model switched)
takes the current vectors.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import islice

import numpy as np

# the graph's inputs for consecutive history entries, given the entry before them in the window
# (None at its start): (item vectors (T, dim), event type codes, gaps in seconds, values)
Inputs = Callable[[list, object], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

def event_features(entries: list, event_types: tuple[str, ...], before: tuple | None = None):
    """The user graph's per-event inputs besides the item vectors, for consecutive history entries
    (item, type, time, value): type codes (an unknown type: len(event_types)), gaps in seconds
    from the event before (`before` for the first; none at a window's start: 0), and values. One
    encoding for every caller (embedding, the incremental step, leave-one-out reasons)."""
    types = np.array([event_types.index(h[1]) if h[1] in event_types else len(event_types) for h in entries])
    times = np.array([h[2] for h in entries], dtype=np.float64)
    gaps = np.empty_like(times)  # np.diff, without its overhead on the one-event step
    gaps[:1] = 0.0 if before is None else times[:1] - float(before[2])
    np.subtract(times[1:], times[:-1], out=gaps[1:])
    np.maximum(gaps, 0.0, out=gaps)
    return types, gaps, np.array([h[3] for h in entries], dtype=np.float32)


def anchor_key(entry: Sequence) -> int:
    """A pseudo-random key of a history entry (item, event type, time, ...) that every process
    computes alike (hash() of a str is salted per process)."""
    return zlib.crc32(f"{entry[0]}\x1f{entry[1]}\x1f{int(entry[2])}".encode())


def anchor_range(max_length: int) -> int:
    """How many of a full history's oldest entries the window's first event is chosen among."""
    return max(1, max_length // 2)


def window_start(history: Sequence, max_length: int) -> int:
    """The index in `history` (oldest first, at most `max_length` entries) of the user's window's
    first event (module docstring): 0 while the history is shorter than `max_length`, else the
    entry with the smallest `anchor_key` among the oldest `anchor_range` (the earliest on a tie)."""
    if len(history) < max_length:
        return 0
    best, best_key = 0, None
    for index, entry in enumerate(islice(history, anchor_range(max_length))):
        key = anchor_key(entry)
        if best_key is None or key < best_key:
            best, best_key = index, key
    return best


class _Cache:
    """One user's window under one model: its events' keys and values, and which entries it covers."""

    __slots__ = ("embedding", "first", "first_key", "full", "last", "length", "past")

    def __init__(self, past: np.ndarray, length: int, first, full: bool, last, embedding: np.ndarray):
        self.past = past  # (layers, 2, rows, dim), rows >= length: the first `length` are the window's events
        self.length = length
        self.first, self.first_key, self.full = first, anchor_key(first), full  # full: the history was when cached
        self.last = last
        self.embedding = embedding


class UserStates:
    """The key/value caches of one model's user encoder (a cache belongs to the weights that made
    it), for at most `capacity` users: the most recently updated ones."""

    def __init__(self, max_length: int, capacity: int):
        self.max_length, self.capacity = max_length, capacity
        self._caches: OrderedDict[str, _Cache] = OrderedDict()
        self.steps = 0  # updates that stepped a cache
        self.rebuilds = 0  # updates that encoded the whole window (no cache, or the window moved)

    def __len__(self) -> int:
        return len(self._caches)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._caches

    @property
    def nbytes(self) -> int:
        return sum(cache.past.nbytes for cache in self._caches.values())

    def forget(self, user_id: str) -> None:
        self._caches.pop(user_id, None)

    def embed(self, runtime, user_id: str, history: Sequence, inputs: Inputs) -> np.ndarray:
        """The user's embedding over the window (`window_start`) of `history` (their entries, oldest
        first; the same objects from call to call, events appended at the end), under `runtime`'s
        model. Steps the user's cache over the entries appended since the last call when the window
        still starts where the cache does; else encodes the window once, and caches it."""
        cache = self._caches.get(user_id)
        new = self._appended(cache, history) if cache is not None else None
        if new is not None and self._still_first(cache, history, new):
            self._caches.move_to_end(user_id)
            if new:
                self._step(runtime, cache, history, new, inputs)
            return cache.embedding
        return self._rebuild(runtime, user_id, history, inputs)

    def _appended(self, cache: _Cache, history: Sequence) -> int | None:
        """How many entries follow the cache's last one (found by identity), or None when it is
        not among the newest `max_length`."""
        for new, entry in enumerate(islice(reversed(history), self.max_length)):
            if entry is cache.last:
                return new
        return None

    def _still_first(self, cache: _Cache, history: Sequence, new: int) -> bool:
        """Whether the window still starts at the cache's first entry, `new` entries later."""
        start = len(history) - cache.length - new
        if start < 0 or history[start] is not cache.first:
            return False  # dropped from the history
        if len(history) < self.max_length:
            return start == 0
        window = anchor_range(self.max_length)
        if not cache.full or new >= window:
            cache.full = window_start(history, self.max_length) == start  # from here on, the quick check holds
            return cache.full
        # the oldest entries were all there when the cache was made, and none was keyed below its
        # first; of those that entered the oldest `window` since, none may be either
        return all(anchor_key(history[i]) >= cache.first_key for i in range(window - new, window))

    def _step(self, runtime, cache: _Cache, history: Sequence, new: int, inputs: Inputs) -> None:
        entries = list(islice(reversed(history), new + 1))[::-1]  # with the one before, which starts the first gap
        embedding, present = runtime.step_user(*inputs(entries[1:], entries[0]), cache.past[:, :, : cache.length])
        end = cache.length + new
        if end > cache.past.shape[2]:
            layers, _, _, dim = cache.past.shape
            grown = np.empty((layers, 2, self._rows(end), dim), np.float32)
            grown[:, :, : cache.length] = cache.past[:, :, : cache.length]
            cache.past = grown
        cache.past[:, :, cache.length : end] = present
        cache.length, cache.last, cache.embedding = end, entries[-1], embedding
        self.steps += 1

    def _rebuild(self, runtime, user_id: str, history: Sequence, inputs: Inputs) -> np.ndarray:
        entries = list(history)[window_start(history, self.max_length) :]
        empty = np.zeros((runtime.user_layers, 2, 0, runtime.dim), np.float32)
        embedding, present = runtime.step_user(*inputs(entries, None), empty)
        self.rebuilds += 1
        self._caches.pop(user_id, None)
        if self.capacity > 0:
            layers, _, _, dim = present.shape
            past = np.empty((layers, 2, self._rows(len(entries)), dim), np.float32)
            past[:, :, : len(entries)] = present
            self._caches[user_id] = _Cache(past, len(entries), entries[0], len(history) >= self.max_length,
                                           entries[-1], embedding)
            while len(self._caches) > self.capacity:
                self._caches.popitem(last=False)
        return embedding

    def _rows(self, needed: int) -> int:
        """Rows to allocate for `needed` events: a power of two (room to grow), at most max_length."""
        return min(self.max_length, 1 << max(4, (needed - 1).bit_length()))
