"""An item's behaviour over time (impressions, clicks, ratings, views... per hour or per day), and
where it stands with exploration, for the inspector's item page.

The store's event log is read into three compact arrays (item, event type, time: 14 bytes an
event, so ML-1M's million events take 14 MB), a page at a time, once; later reads start where
the last one stopped. One item's series is then a mask over those arrays and a bincount per event
type. The arrays carry no user ids, so when a user is erased (the store deletes their events) the
next read starts again from the log's beginning: an erased user's events stop counting at once,
for the price of one full read after each erasure.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dynrec.state import StateStore

if TYPE_CHECKING:
    from dynrec.items.catalog import Catalog

BUCKETS = {"hour": 3600, "day": 86400}


@dataclass
class ActivitySeries:
    """Events of one item by type, in `buckets` consecutive UTC-aligned buckets of `bucket_s`
    seconds starting at `start`, the last one holding the item's newest event (or now)."""

    item_id: str
    bucket_s: int
    start: int
    counts: dict[str, list[int]]  # event type -> events in each bucket, oldest first
    totals: dict[str, int]  # event type -> every logged event of the item, whenever
    first_event: int | None
    last_event: int | None


class EventTimeline:
    def __init__(self, store: StateStore, page: int = 50_000):
        self.store, self.page = store, page
        self.item_codes: dict[str, int] = {}
        self.type_names: list[str] = []
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (item code, type code, ts)
        self._read = 0  # the event-log sequence number read up to
        self._erased: int | None = None  # how many users the store had erased at the last read
        self._lock = threading.Lock()

    def _code(self, codes: dict[str, int], name: str) -> int:
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(codes)
        return code

    def sync(self) -> None:
        """Read the events logged since the last read, a page at a time (all of them again after
        an erasure)."""
        erased = len(self.store.erased_users())
        if erased != self._erased:
            self._erased, self._read, self._chunks = erased, 0, []
        type_codes = {name: i for i, name in enumerate(self.type_names)}
        while True:
            rows = self.store.event_page(self._read, self.page)
            if not rows:
                break
            self._chunks.append((
                np.fromiter((self._code(self.item_codes, r[1]) for r in rows), np.int32, len(rows)),
                np.fromiter((self._code(type_codes, r[2]) for r in rows), np.int16, len(rows)),
                np.fromiter((r[3] for r in rows), np.int64, len(rows)),
            ))
            self._read = rows[-1][0]
            if len(rows) < self.page:
                break
        self.type_names = sorted(type_codes, key=type_codes.get)
        if len(self._chunks) > 1:
            self._chunks = [tuple(np.concatenate(parts) for parts in zip(*self._chunks))]

    def series(self, item_id: str, bucket_s: int, buckets: int, now: int) -> ActivitySeries:
        """The item's events per bucket over the `buckets` buckets ending with its newest event
        (with `now` when it has none), and its totals."""
        with self._lock:
            self.sync()
            code = self.item_codes.get(item_id)
            if code is None or not self._chunks:
                types, times = np.zeros(0, np.int16), np.zeros(0, np.int64)
            else:
                items, all_types, all_times = self._chunks[0]
                mine = items == code
                types, times = all_types[mine], all_times[mine]
            names = self.type_names
        last = int(times.max()) if len(times) else None
        end = (now if last is None else last) // bucket_s + 1  # the bucket after the newest one
        start = end - buckets
        slots = times // bucket_s - start
        inside = (slots >= 0) & (slots < buckets)
        counts, totals = {}, {}
        for code in np.unique(types):
            of_type = types == code
            counts[names[code]] = np.bincount(slots[inside & of_type], minlength=buckets).tolist()
            totals[names[code]] = int(of_type.sum())
        return ActivitySeries(item_id, bucket_s, int(start * bucket_s), counts, totals,
                              int(times.min()) if len(times) else None, last)


@dataclass
class ExplorationStatus:
    """An item as exploration sees it: whether it may take an explored slot now, and the attributed
    feedback the exploration policy learns its click-through rate from."""

    explorable: bool  # visible and created within `max_age_days`: the pool explored slots are drawn from
    max_age_days: float
    shown: int  # impressions attributed to a recommendation that held the item (explored or not)
    clicks: int  # clicks attributed the same way


def exploration_status(catalog: Catalog, item_id: str, max_age_days: float, now: float) -> ExplorationStatus:
    """The item's place in exploration by the catalogue's own test (`created_since`), as ranking applies it."""
    shown, clicks = catalog.feedback.shown_and_clicked(item_id)
    explorable = item_id in catalog.created_since(now - max_age_days * 86400)
    return ExplorationStatus(explorable, max_age_days, shown, clicks)
