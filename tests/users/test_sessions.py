"""User sessions in-process (ML-100k, bootstrap model): what a user's view carries to ranking, and
that a lookup does not queue behind a batch that is still being written."""

import threading
import time

from dynrec.state.sqlite import SqliteStore
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Event


class SlowStore(SqliteStore):
    """A store whose event writes take a second (a slow disk), and say when one has begun."""

    def __init__(self, path):
        super().__init__(path)
        self.writing = threading.Event()

    def add_events(self, events):
        self.writing.set()
        time.sleep(1.0)
        return super().add_events(events)


def test_a_view_carries_the_newest_events_reasons_cite_and_the_whole_window_length(served, fill, tmp_path):
    # its own store: the HTTP tests erase users from the served one
    sessions = UserSessions(served.config, served.catalog(fill(SqliteStore(tmp_path / "state.db"))))
    cited = served.config.serving.reason_history
    history = sessions.users["1"].history  # ML-100k user 1 rated 272 films; the window keeps max_length
    view = sessions.view("1")
    assert view.history_length == len(history) == served.config.model.max_length
    assert len(view.recent) == cited and view.recent == list(reversed(history))[:cited]  # newest first
    item = next(i for i in sessions.catalog.ids if i not in view.seen)
    sessions.apply([Event("1", item, "rating", 2_000_000_000, 5.0)])
    after = sessions.view("1")
    assert after.recent[0][0] == item and item in after.seen and after.history_length == len(history)


def test_a_lookup_does_not_wait_for_a_batch_being_written(served, fill, tmp_path):
    fill(SqliteStore(tmp_path / "state.db")).close()
    store = SlowStore(tmp_path / "state.db")
    catalog = served.catalog(store)
    sessions = UserSessions(served.config, catalog)
    item = next(i for i in catalog.ids if i not in sessions.view("2").seen)
    writer = threading.Thread(target=sessions.record, args=(store, [Event("2", item, "click", 2_000_000_000, 1.0)]))
    writer.start()
    assert store.writing.wait(5)
    began = time.perf_counter()
    during = sessions.view("2")
    waited = time.perf_counter() - began
    writer.join()
    assert waited < 0.5 and item not in during.seen  # answered at once, from the state before the batch
    assert item in sessions.view("2").seen  # and the batch is there once acknowledged
