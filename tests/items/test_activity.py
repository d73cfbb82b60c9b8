"""An item's behaviour over time: events bucketed by hour or day and by type, the window ending
with the item's newest event, read from the store page by page and then only past the last read;
and what the item page shows beside it, from a real catalogue: the item's text, its place in
exploration, and how far the catalogue has read the store (the health page's lag)."""

import time

from dynrec.items.activity import BUCKETS, EventTimeline, exploration_status
from dynrec.state import ItemChange, StoredEvent
from dynrec.state.sqlite import SqliteStore

DAY, HOUR = BUCKETS["day"], BUCKETS["hour"]
MIDNIGHT = 1_700_006_400  # 2023-11-15 00:00 UTC: a day starts here


def event(item_id: str, ts: int, event_type: str, user: str = "u") -> StoredEvent:
    return StoredEvent(item_id, ts, 1.0, event_type, user)


def test_events_are_counted_per_day_and_type_up_to_the_newest(tmp_path):
    store = SqliteStore(tmp_path / "state.sqlite")
    store.add_events([
        event("film", MIDNIGHT - 40 * DAY, "rating"),  # before the window: in the totals only
        event("film", MIDNIGHT + 10, "impression"), event("film", MIDNIGHT + 20, "impression"), event("film", MIDNIGHT + 30, "click"),
        event("film", MIDNIGHT + DAY + 5, "rating"),
        event("film", MIDNIGHT + 3 * DAY + 7, "impression"),
        event("other", MIDNIGHT + 9 * DAY, "click"),  # another item's events never count, however new
    ])
    timeline = EventTimeline(store, page=2)  # four pages: the read resumes where each stopped
    series = timeline.series("film", DAY, 5, now=MIDNIGHT + 100 * DAY)
    assert series.bucket_s == DAY and series.start == MIDNIGHT - DAY  # the newest event's day is the last of five
    assert series.counts == {"impression": [0, 2, 0, 0, 1], "click": [0, 1, 0, 0, 0], "rating": [0, 0, 1, 0, 0]}
    assert series.totals == {"impression": 3, "click": 1, "rating": 2}
    assert series.first_event == MIDNIGHT - 40 * DAY and series.last_event == MIDNIGHT + 3 * DAY + 7

    hourly = timeline.series("film", HOUR, 3, now=0)
    assert hourly.start == MIDNIGHT + 3 * DAY - 2 * HOUR and hourly.counts == {"impression": [0, 0, 1], "click": [0, 0, 0],
                                                                             "rating": [0, 0, 0]}


def test_events_logged_after_a_read_are_counted_by_the_next(tmp_path):
    store = SqliteStore(tmp_path / "state.sqlite")
    store.add_events([event("film", MIDNIGHT, "view")])
    timeline = EventTimeline(store)
    assert timeline.series("film", DAY, 2, now=0).counts == {"view": [0, 1]}
    store.add_events([event("film", MIDNIGHT + 60, "view"), event("film", MIDNIGHT + DAY, "click")])
    later = timeline.series("film", DAY, 2, now=0)
    assert later.counts == {"view": [2, 0], "click": [0, 1]} and later.totals == {"view": 2, "click": 1}


def test_an_erased_users_events_stop_counting_at_once(tmp_path):
    store = SqliteStore(tmp_path / "state.sqlite")
    store.add_events([event("film", MIDNIGHT, "view", "keeps"), event("film", MIDNIGHT + 5, "view", "leaves"),
                      event("film", MIDNIGHT + 9, "click", "leaves")])
    timeline = EventTimeline(store)
    assert timeline.series("film", DAY, 1, now=0).totals == {"view": 2, "click": 1}
    store.erase_user("leaves")
    store.add_events([event("film", MIDNIGHT + 60, "view", "keeps")])
    after = timeline.series("film", DAY, 1, now=0)
    assert after.totals == {"view": 2} and after.counts == {"view": [2]}


def test_an_item_without_events_gets_an_empty_window_ending_now(tmp_path):
    store = SqliteStore(tmp_path / "state.sqlite")
    timeline = EventTimeline(store)
    empty = timeline.series("quiet", DAY, 7, now=MIDNIGHT + 5)
    assert empty.start == MIDNIGHT - 6 * DAY and empty.counts == {} and empty.totals == {}
    assert empty.first_event is None and empty.last_event is None
    store.add_events([event("film", MIDNIGHT, "view")])
    assert timeline.series("quiet", DAY, 7, now=MIDNIGHT + 5).totals == {}


def test_the_item_page_reads_text_exploration_and_the_catalogues_position(served, fill, tmp_path):
    store = fill(SqliteStore(tmp_path / "state.sqlite"))
    catalog = served.catalog(store)
    source = catalog.row[catalog.ids[0]]
    now = time.time()
    store.put_item(ItemChange(0, "fresh", False, {"title": "Fresh", "text": "A new arrival.", "created_at": int(now)},
                              catalog.text[source], True, catalog.image[source], False, catalog.vector(catalog.ids[0]),
                              catalog.model_version))
    store.add_events([StoredEvent("fresh", int(now), 1.0, "impression", "u1", "rec-1", position=0),
                      StoredEvent("fresh", int(now), 1.0, "impression", "u2", "rec-2", position=3),
                      StoredEvent("fresh", int(now), 1.0, "click", "u2", "rec-2", position=3),
                      StoredEvent("fresh", int(now), 1.0, "click", "u3")])  # names no list: not the bandit's
    assert catalog.positions[1] < store.latest()[1]  # the store is ahead until the catalogue syncs
    catalog.sync(force=True)
    assert catalog.positions == store.latest()
    assert catalog.describe("fresh").text == "A new arrival." and catalog.describe(catalog.ids[0]).text == ""
    fresh = exploration_status(catalog, "fresh", 30, now)
    assert fresh.explorable and (fresh.shown, fresh.clicks) == (2, 1)  # the click that named no list is not counted
    assert not exploration_status(catalog, "fresh", 30, now + 31 * 86400).explorable  # past max_age_days
    imported = exploration_status(catalog, catalog.ids[0], 30, now)  # ML-100k's films are decades old
    assert not imported.explorable and (imported.shown, imported.clicks) == (0, 0)
    store.hide("fresh")
    catalog.sync(force=True)
    assert not exploration_status(catalog, "fresh", 30, now).explorable
