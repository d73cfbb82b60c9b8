"""Attribution: which recommendation a click answers, and at what position.

A Ranker gives every list it returns an id and keeps it (`RecommendationLog`) in the state store
for `exploration.recommendation_ttl_s`, together with the impressions it served itself: one per
young item still being explored by the bandit, at its position, whether the bandit chose it or
its relevance did (the service knows what it showed; clients need not post impressions). Feedback that names a recommendation is checked against it (`attribute`): the id
must exist, belong to the same user and hold the item. Then the item's position travels with the
stored event, so the bandit can weigh it (dynrec.items.feedback). Anything else is stored as an
ordinary, unattributed event, which never updates the bandit; the events response lists which
events were attributed. A client's own `impression` events are never attributed: the service
already counted what it served.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from typing import Callable

from dynrec.state.base import IssuedRecommendation, StateStore, StoredEvent
from dynrec.users.shards import Event


class RecommendationLog:
    """Issued recommendations, written to the store by a background thread every `flush_s`, so a
    request never waits on the write; a click that arrives before its list is written waits in
    `attribute` instead."""

    def __init__(self, store: StateStore, ttl_s: float, flush_s: float = 0.05):
        self.store, self.ttl_s, self.flush_s = store, ttl_s, flush_s
        self._pending: list[IssuedRecommendation] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._flush_loop, name="recommendation-log", daemon=True).start()

    def issue(self, user_id: str, item_ids: list[str], counted: list[bool]) -> str:
        """A new recommendation id for this list, queued for the store with an impression of each
        item flagged in `counted`."""
        recommendation_id = uuid.uuid4().hex
        with self._lock:
            self._pending.append(IssuedRecommendation(recommendation_id, user_id, item_ids, counted, time.time()))
        return recommendation_id

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self.store.put_recommendations(batch, self.ttl_s)
            served = [StoredEvent(item_id, int(r.ts), 1.0, "impression", r.user_id, r.recommendation_id, position=p)
                      for r in batch for p, (item_id, shown) in enumerate(zip(r.item_ids, r.counted)) if shown]
            if served:
                self.store.add_events(served)

    def _flush_loop(self) -> None:
        while True:
            time.sleep(self.flush_s)
            try:
                self.flush()
            except Exception as error:  # the store is briefly away: these ids stay unknown, feedback on them is refused
                print(f"recommendation log: could not write issued recommendations ({type(error).__name__}: {error})", flush=True)


def attribute(events: list[tuple[int, Event]], lookup: Callable[[str], IssuedRecommendation | None],
              wait_s: float = 1.0) -> tuple[list[tuple[int, Event]], list[int]]:
    """The events, each attributed (its position filled in) when the recommendation it names was
    issued to its user and held its item, else stripped of the id; and the request indexes of the
    attributed ones. Unknown ids are looked up again until `wait_s` after the call began (one
    deadline for the whole batch, each id looked up once): a list issued a moment ago may still be
    on its way to the store. Impressions are never attributed (module docstring)."""
    kept, attributed, found = [], [], {}
    deadline = time.monotonic() + wait_s
    for index, event in events:
        issued = None
        if event.recommendation_id and event.event_type != "impression":
            if event.recommendation_id not in found:
                found[event.recommendation_id] = _patiently(lookup, event.recommendation_id, deadline)
            issued = found[event.recommendation_id]
        if issued is None or issued.user_id != event.user_id or event.item_id not in issued.item_ids:
            kept.append((index, replace(event, recommendation_id=None, position=None)))
            continue
        kept.append((index, replace(event, position=issued.item_ids.index(event.item_id))))
        attributed.append(index)
    return kept, attributed


def _patiently(lookup: Callable[[str], IssuedRecommendation | None], recommendation_id: str, deadline: float):
    while True:
        issued = lookup(recommendation_id)
        if issued is not None or time.monotonic() >= deadline:
            return issued
        time.sleep(0.02)
