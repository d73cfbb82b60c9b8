"""User sessions in-process (ML-100k, bootstrap model): what a user's view carries to ranking, and
that a lookup does not queue behind a batch that is still being written."""

import threading
import time

import numpy as np

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


def test_adopting_a_new_model_re_embeds_every_user_as_a_fresh_start_on_it_would(served, retrained, fill, tmp_path,
                                                                                  serving_config_path, monkeypatch):
    """Events keep arriving while the shard re-embeds; afterwards every user matches a shard started
    on the new model, and views still carry the previous model's embedding, kept current."""
    from deployments.common import load_published
    from dynrec.artifacts.versions import PublishedModel

    monkeypatch.setenv("DYNREC_CONFIG", str(serving_config_path))
    store = fill(SqliteStore(tmp_path / "state.db"))
    old = served.catalog(store)
    sessions = UserSessions(served.config, old)
    new = load_published(PublishedModel("ml-100k-retrained", "", None, 0.0)).catalog(store)
    assert new.model_version != old.model_version
    unseen = [i for i in old.ids if i not in sessions.users["1"].seen][:40]
    during = threading.Thread(target=lambda: [sessions.record(store, [Event("1", item, "view", 2_000_000_000 + n)])
                                              for n, item in enumerate(unseen)])
    during.start()
    sessions.adopt(new, overlap_s=60)
    during.join()
    sessions.record(store, [Event("2", unseen[0], "rating", 2_000_000_100, 4.0)])  # after the switch

    on_new = UserSessions(served.config, new)  # the same store, events included, started on the new model
    on_old = UserSessions(served.config, old)
    for user_id in ("1", "2", "3", "500"):
        view = sessions.view(user_id)
        assert view.model_version == new.model_version
        assert np.abs(view.embedding - on_new.users[user_id].embedding).max() < 1e-4, user_id
        assert np.abs(view.earlier[old.model_version] - on_old.users[user_id].embedding).max() < 1e-4, user_id
    assert sessions.end_overlap() is None  # not run out yet
    sessions._previous.until = 0
    assert sessions.end_overlap() is old and sessions.view("1").earlier == {}


def test_each_shard_holds_only_its_own_users(served, fill, tmp_path):
    """Two shards over one store split the users between them: none held twice, none lost (every
    shard used to load every imported user, and segments fitted each user twice)."""
    from dynrec.users.shards import shard_of

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.db")))
    shards = [UserSessions(served.config, catalog, mine=lambda u, s=s: shard_of(u, 2) == s) for s in range(2)]
    held = [set(shard.users) for shard in shards]
    assert held[0] and held[1] and not held[0] & held[1]
    assert held[0] | held[1] == set(UserSessions(served.config, catalog).users)
    assert all(shard_of(u, 2) == 1 for u in held[1])


def test_the_shard_makes_each_views_reason_basis_and_ranking_cites_from_it_without_re_embedding(served, fill, tmp_path):
    """A shard makes every user's ReasonBasis in the background and again with each event; a view
    carries it only while it matches the view's window, and `cited` then reads it instead of
    running the user graph, naming the same events as when it re-embeds the user itself."""
    import dataclasses

    from dynrec.ranking.ranker import Filters, cited, recommend

    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.db")))
    # every removal that lowers a score is cited, so most results cite an event; at most 8 of each
    # user's up to 20 citable events are weighed, a subset of the basis's rows
    catalog.config = dataclasses.replace(served.config, serving=dataclasses.replace(served.config.serving, reason_min_drop=0.0))
    assert catalog.config.serving.reason_candidates < catalog.config.serving.reason_history
    sessions = UserSessions(catalog.config, catalog)
    assert sessions.view("1").reasons is None  # not made at start-up: the Ranker's fallback
    assert sessions.explain_all() == len(sessions.users) and sessions.explain_all() == 0  # only stale ones are redone
    embed_users = catalog.runtime.embed_users
    compared = subsets = 0
    for user_id in ("1", "2", "5", "7", "13", "42", "92", "100", "200", "300"):
        view = sessions.view(user_id)
        assert view.reasons is not None and view.reasons.model_version == catalog.model_version
        ids = [r.item_id for r in recommend(catalog, dataclasses.replace(view, reasons=None), 10, Filters(), True, 200, 0.0, 0)]
        re_embedded = cited(catalog, ids, dataclasses.replace(view, reasons=None))
        catalog.runtime.embed_users = None  # any re-embedding now fails
        try:
            assert cited(catalog, ids, view) == re_embedded
        finally:
            catalog.runtime.embed_users = embed_users
        compared += sum(entry is not None for entry in re_embedded)
        subsets += len(view.reasons.entries) > catalog.config.serving.reason_candidates
    assert compared >= 25 and subsets >= 3

    item = next(i for i in catalog.ids if i not in sessions.users["1"].seen)
    sessions.apply([Event("1", item, "rating", 2_000_000_000, 5.0)])
    after = sessions.view("1")
    assert after.reasons is not None and after.reasons.entries[-1] == after.window[-1] == (item, "rating", 2_000_000_000, 5.0)
    sessions.users["1"].history.append((item, "view", 2_000_000_001, 1.0))  # a window its basis was not made for
    assert sessions.view("1").reasons is None
