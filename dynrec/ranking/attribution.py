"""Attribution: which recommendation a click or an impression answers, and at what position.

A Ranker gives every list it returns an id and keeps it (`RecommendationLog`) in the state store
for `exploration.recommendation_ttl_s`. Feedback that names a recommendation is checked against it
(`attribute`): the id must exist, belong to the same user and hold the item; the item's position
in the list travels with the stored event, so the bandit can weigh it (dynrec.items.feedback).
Anything else is refused row by row with the reason, instead of counting as evidence.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from typing import Callable

from dynrec.state.base import IssuedRecommendation, StateStore
from dynrec.users.shards import Event, Rejected


class RecommendationLog:
    """Issued recommendations, written to the store by a background thread every `flush_s`, so a
    request never waits on the write; a click that arrives before its list is written waits in
    `attribute` instead."""

    def __init__(self, store: StateStore, ttl_s: float, flush_s: float = 0.05):
        self.store, self.ttl_s, self.flush_s = store, ttl_s, flush_s
        self._pending: list[IssuedRecommendation] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._flush_loop, name="recommendation-log", daemon=True).start()

    def issue(self, user_id: str, item_ids: list[str], explored: list[bool]) -> str:
        """A new recommendation id for this list, queued for the store."""
        recommendation_id = uuid.uuid4().hex
        with self._lock:
            self._pending.append(IssuedRecommendation(recommendation_id, user_id, item_ids, explored, time.time()))
        return recommendation_id

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self.store.put_recommendations(batch, self.ttl_s)

    def _flush_loop(self) -> None:
        while True:
            time.sleep(self.flush_s)
            try:
                self.flush()
            except Exception as error:  # the store is briefly away: these ids stay unknown, feedback on them is refused
                print(f"recommendation log: could not write issued recommendations ({type(error).__name__}: {error})", flush=True)


def attribute(events: list[tuple[int, Event]], lookup: Callable[[str], IssuedRecommendation | None],
              wait_s: float = 1.0) -> tuple[list[tuple[int, Event]], list[Rejected]]:
    """The events with their positions filled in where they name a recommendation, and one
    rejection per event whose recommendation is unknown (or expired), was made for another user,
    or did not hold the item. An unknown id is looked up again for up to `wait_s`: a list issued a
    moment ago may still be on its way to the store."""
    kept, rejected, found = [], [], {}
    for index, event in events:
        if not event.recommendation_id:
            kept.append((index, event))
            continue
        issued = found.get(event.recommendation_id) or _patiently(lookup, event.recommendation_id, wait_s)
        if issued is None:
            rejected.append(Rejected(index, f"unknown or expired recommendation_id '{event.recommendation_id}'"))
            continue
        found[event.recommendation_id] = issued
        if issued.user_id != event.user_id:
            rejected.append(Rejected(index, f"recommendation '{event.recommendation_id}' was made for another user"))
        elif event.item_id not in issued.item_ids:
            rejected.append(Rejected(index, f"item '{event.item_id}' was not in recommendation '{event.recommendation_id}'"))
        else:
            kept.append((index, replace(event, position=issued.item_ids.index(event.item_id))))
    return kept, rejected


def _patiently(lookup: Callable[[str], IssuedRecommendation | None], recommendation_id: str, wait_s: float):
    deadline = time.monotonic() + wait_s
    while True:
        issued = lookup(recommendation_id)
        if issued is not None or time.monotonic() >= deadline:
            return issued
        time.sleep(0.02)
