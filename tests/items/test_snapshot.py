"""Compaction: a catalogue booted from its snapshot and the log tail is the catalogue a full
rebuild gives, without reading the event history; a snapshot fused by another model is re-fused."""

import dataclasses
import pickle
import time

import numpy as np
import pytest

from dynrec.items import snapshot
from dynrec.items.catalog import Catalog
from dynrec.state import ItemChange, StoredEvent
from dynrec.state.sqlite import SqliteStore


class NoHistoryReads:
    """A store whose full event history cannot be read: only the log after a position can."""

    def __init__(self, store):
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def event_rows(self, upto):
        raise AssertionError("the catalogue read the whole event history instead of its snapshot")

    def attributed_events(self, upto, event_types):
        raise AssertionError("the catalogue read the whole feedback history instead of its snapshot")


def boot(served, store) -> Catalog:
    return Catalog.boot(served.config, served.artifacts, served.runtime, served.item_ids, store)


def same_catalogue(a: Catalog, b: Catalog) -> None:
    assert a.ids == b.ids and a.hidden == b.hidden and a.now == b.now
    assert [m.title for m in a.meta] == [m.title for m in b.meta]
    visible = [i for i in a.ids if i not in a.hidden]
    np.testing.assert_allclose(a.vectors(visible), b.vectors(visible), atol=1e-5)
    np.testing.assert_allclose(a.content_vectors(visible), b.content_vectors(visible), atol=1e-5)
    assert set(a.fresh_index.ids()) == set(b.fresh_index.ids())
    assert dict(a.feedback.clicks) == dict(b.feedback.clicks) and dict(a.feedback.impressions) == dict(b.feedback.impressions)
    assert dict(a.feedback.looked_at) == pytest.approx(dict(b.feedback.looked_at))  # weighted by the positions served
    rows = np.arange(len(a.ids))
    np.testing.assert_allclose(a.behaviour.snapshot(a.now)[rows], b.behaviour.snapshot(b.now)[rows])
    for x, y in zip(a.behaviour.counts(a.now, 30), b.behaviour.counts(b.now, 30)):  # what popularity ranks by
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def changed_store(served, fill, tmp_path):
    """A filled store, a catalogue booted on it (saving the first snapshot), then changes of every
    kind after it: an API upsert with vectors, a hide, ratings, attributed feedback."""
    store = fill(SqliteStore(tmp_path / "state.sqlite"))
    first = boot(served, store)
    source = first.row[first.ids[0]]
    store.put_item(ItemChange(0, "api-item", False, {"title": "From the API", "created_at": int(time.time())},
                              first.text[source], True, first.image[source], False, first.vector(first.ids[0]),
                              first.model_version))
    store.hide(first.ids[1])
    store.add_events([StoredEvent(first.ids[2], first.now + 10, 5.0, "rating", "1"),
                      StoredEvent("api-item", first.now + 11, 1.0, "impression", "1", "rec-1", position=3),
                      StoredEvent("api-item", first.now + 12, 1.0, "click", "1", "rec-1", position=3)])
    return store, first


def test_a_compacted_snapshot_boots_the_same_catalogue_without_reading_the_history(served, changed_store):
    store, first = changed_store
    first.sync(force=True)
    first.compact()
    from_snapshot = boot(served, NoHistoryReads(store))
    same_catalogue(first, from_snapshot)
    assert from_snapshot.feedback.shown_and_clicked("api-item") == (1, 1)
    store.save_snapshot(snapshot.SNAPSHOT, 0, pickle.dumps(None))  # no usable snapshot: a full rebuild
    same_catalogue(boot(served, store), from_snapshot)


def test_the_log_after_an_older_snapshot_is_replayed(served, changed_store):
    store, first = changed_store  # its snapshot predates every change
    first.sync(force=True)
    same_catalogue(first, boot(served, NoHistoryReads(store)))


def test_a_snapshot_fused_by_another_model_is_re_fused(served, changed_store):
    store, first = changed_store
    first.sync(force=True)
    state = first.state()
    state.embeddings = np.zeros_like(state.embeddings)
    snapshot.save(store, dataclasses.replace(state, model_version="an older model"))
    refused = boot(served, NoHistoryReads(store))
    visible = [i for i in first.ids if i not in first.hidden]
    np.testing.assert_allclose(refused.vectors(visible), first.embed_rows(np.array([first.row[i] for i in visible])), atol=1e-5)


class Vanished:
    """A class a snapshot was pickled with, removed by the time the next version of the code reads it."""


def test_a_snapshot_written_by_code_whose_classes_have_changed_is_rebuilt(served, changed_store, monkeypatch):
    store, first = changed_store
    first.sync(force=True)
    store.save_snapshot(snapshot.SNAPSHOT, 0, pickle.dumps((snapshot.SNAPSHOT_VERSION, Vanished())))
    monkeypatch.delattr(f"{__name__}.Vanished")
    assert snapshot.load(store) is None  # not an AttributeError in every replica's boot
    same_catalogue(boot(served, store), first)
