"""Feedback is attributed only to a recommendation the service issued, to that user, holding
that item; the item's position travels with it; the service counts the impressions it served."""

import threading
import time

from dynrec.items.feedback import FeedbackCounts
from dynrec.ranking.attribution import RecommendationLog, attribute
from dynrec.state.sqlite import SqliteStore
from dynrec.users.shards import Event


def test_feedback_naming_an_issued_recommendation_gets_its_position_and_anything_else_is_unattributed(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    log = RecommendationLog(store, ttl_s=60, flush_s=0.3)
    issued = log.issue("u1", ["10", "20", "30"], [False, False, True])
    events = [(0, Event("u1", "30", "click", 1, recommendation_id=issued)),
              (1, Event("u1", "99", "click", 1, recommendation_id=issued)),  # not in that list
              (2, Event("u2", "20", "click", 1, recommendation_id=issued)),  # another user's list
              (3, Event("u1", "20", "click", 1, recommendation_id="made-up")),
              (4, Event("u1", "20", "impression", 1, recommendation_id=issued)),  # the service counted it already
              (5, Event("u1", "20", "view", 1))]  # names none: kept as it is
    events += [(6 + n, Event("u1", "20", "click", 1, recommendation_id=f"made-up-{n}")) for n in range(20)]
    started = time.monotonic()
    kept, attributed = attribute(events, store.recommendation, wait_s=2.0)  # the log writes it 0.3 s later
    # waited for the background write, then until one deadline for all 21 made-up ids, not 2 s each
    assert 0.2 < time.monotonic() - started < 4.0
    assert attributed == [0]
    assert [(i, e.recommendation_id, e.position) for i, e in kept][:6] == [
        (0, issued, 2), (1, None, None), (2, None, None), (3, None, None), (4, None, None), (5, None, None)]
    assert all(e.recommendation_id is None for _, e in kept[6:])
    # the list's explored item was served at position 2: the service logged that impression itself
    assert [(e.event_type, e.item_id, e.recommendation_id, e.position) for _, e in store.events(0)] == [
        ("impression", "30", issued, 2)]


def test_an_impression_low_in_the_list_counts_less_than_one_at_the_top():
    counts = FeedbackCounts()
    counts.record("top", "impression", position=0)
    counts.record("unplaced", "impression")
    assert counts.evidence("top") == (1.0, 0) and counts.evidence("unplaced") == (1.0, 0)
    for _ in range(2):
        counts.record("low", "impression", position=9)
    looked_at, clicks = counts.evidence("low")
    assert abs(looked_at - 2 / 3.4594316186372973) < 1e-9 and clicks == 0  # 1 / log2(11) each
    assert counts.shown_and_clicked("low") == (2, 0)  # what reasons report: the times shown, as counted
    counts.record("low", "click", position=9)
    assert counts.evidence("low") == (1.0, 1)  # a click counts as looked at, whatever the slot


def test_the_log_writes_in_the_background_without_blocking_the_issuer(tmp_path):
    class SlowStore(SqliteStore):
        def put_recommendations(self, issued, ttl_s):
            time.sleep(0.5)
            super().put_recommendations(issued, ttl_s)

    store = SlowStore(tmp_path / "state.db")
    log = RecommendationLog(store, ttl_s=60, flush_s=0.01)
    log.issue("u1", ["1"], [False])
    time.sleep(0.05)  # the writer is now inside the slow write
    started = time.monotonic()
    second = log.issue("u1", ["2"], [False])
    assert time.monotonic() - started < 0.05
    deadline = time.monotonic() + 5
    while store.recommendation(second) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.recommendation(second) is not None
    assert threading.active_count() >= 2
