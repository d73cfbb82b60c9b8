"""The serving catalogue in-process, on ML-100k with the bootstrap model: bulk growth, and items
added that way being ranked, explained and searchable like any other."""

import dataclasses

import numpy as np

from dynrec.items.catalog import ItemMeta
from dynrec.ranking.ranker import Filters, recommend, similar_items
from dynrec.state import ItemChange
from dynrec.state.sqlite import SqliteStore
from dynrec.users.sessions import UserSessions


def test_bulk_added_items_are_ranked_explained_and_similar(served, fill, tmp_path):
    catalog = served.catalog(fill(SqliteStore(tmp_path / "state.sqlite")))  # no items but the copies are new
    sessions = UserSessions(served.config, catalog)
    user = sessions.view("1")
    source = np.array([catalog.row[i] for i in catalog.ids[:50]])
    copies = [ItemMeta(f"copy-{r}", f"Copy of {catalog.meta[r].title}", catalog.meta[r].categories, -1, {}) for r in source]
    before = len(catalog.ids)
    catalog.add_items(copies, catalog.text[source], catalog.vectors([catalog.ids[r] for r in source]))
    assert len(catalog.ids) == before + 50 and all(m.item_id in catalog for m in copies)
    assert all(catalog.is_new(m.item_id) for m in copies)  # no trained ID row given: new items
    # a copy's content matches its source's, so it is its source's nearest neighbour
    similar = similar_items(catalog, catalog.ids[source[0]], 5, Filters())
    assert similar[0].item_id == "copy-" + str(source[0])
    ranked = recommend(catalog, user, 10, Filters(), True, 200, 0.0, new_item_slots=1)
    assert len(ranked) == 10 and all(r.reason and r.reason[0].isupper() for r in ranked)
    assert any(r.item_id.startswith("copy-") and r.reason.startswith("New item") for r in ranked)


def test_bulk_growth_past_the_exact_limit_switches_to_hnsw(served):
    catalog = served.catalog()
    catalog.config = dataclasses.replace(served.config, index=dataclasses.replace(served.config.index, exact_max_items=2000))
    n = 2000 - len(catalog.ids) + 10
    rows = np.arange(n) % len(catalog.ids)
    vectors = catalog.vectors([catalog.ids[r] for r in rows])
    metas = [ItemMeta(f"grown-{j}", f"Grown {j}", [], -1, {}) for j in range(n)]
    catalog.add_items(metas, catalog.text[rows], vectors, catalog.model_index[rows])
    assert catalog.index.kind == "hnsw" and catalog.content_index.kind == "hnsw"
    assert "grown-0" in catalog.index and not catalog.is_new("grown-0")
    assert np.allclose(catalog.vector("grown-0"), vectors[0], atol=1e-5)


def test_a_replica_started_after_api_upserts_and_hides_boots_them_from_the_log(served, fill, tmp_path):
    """Items upserted through the API carry their vectors in the item log and are in no embeddings
    file; a replica that starts later must serve them (new, similar-searchable) and keep hides."""
    store = fill(SqliteStore(tmp_path / "state.sqlite"))
    running = served.catalog(store)
    source = running.row[running.ids[0]]
    store.put_item(ItemChange(0, "api-item", False, {"title": "From the API", "categories": ["Drama"]},
                              running.text[source], True, running.image[source], False, running.vector(running.ids[0]),
                              running.model_version))
    store.hide(running.ids[1])
    started_later = served.catalog(store)
    assert started_later.visible("api-item") and started_later.is_new("api-item")
    assert "api-item" in started_later.fresh_index and running.ids[1] in started_later.hidden
    np.testing.assert_allclose(started_later.vector("api-item"), running.vector(running.ids[0]), atol=1e-6)
    assert "api-item" in [r.item_id for r in similar_items(started_later, running.ids[0], 5, Filters())]


def test_items_imported_into_a_served_home_appear_in_a_running_catalogue(served, fill, ml100k, tmp_path):
    """`dynrec import` into a home that has served encodes the changed items with the served model,
    so a running replica shows them on its next sync; imported without vectors, a new item waits
    for a restart instead of being served with an empty embedding."""
    import pyarrow as pa

    from dynrec.artifacts.prepare import import_encoder
    from dynrec.data.dataset import Dataset
    from dynrec.state.imports import import_dataset

    store = fill(SqliteStore(tmp_path / "state.sqlite"))
    running = served.catalog(store)
    source = ml100k.items.slice(0, 1).to_pylist()[0]
    copy = {**source, "item_id": "imported-copy", "title": source["title"] + " (director's cut)"}
    bare = {**source, "item_id": "imported-bare", "title": "An item imported without vectors"}

    def with_items(*rows):
        return Dataset(ml100k.name, pa.concat_tables([ml100k.items, pa.Table.from_pylist(list(rows), ml100k.items.schema)]),
                       ml100k.events, ml100k.users)

    import_dataset(with_items(bare), store, progress=False)
    running.sync(force=True)
    assert not running.visible("imported-bare")
    import_dataset(with_items(bare, copy), store, progress=False, encode=import_encoder(served.config, progress=False))
    running.sync(force=True)
    assert running.visible("imported-copy") and running.is_new("imported-copy") and "imported-copy" in running.index
    similar = [r.item_id for r in similar_items(running, source["item_id"], 5, Filters())]
    assert similar[0] == "imported-copy"


def test_an_upsert_carrying_its_vectors_is_applied_without_fusing_again(served, fill, tmp_path, monkeypatch):
    """The writer (the Fusion deployment) fuses an item once; every replica applies the change's
    fused and content vectors as they are. A change made for another model is re-fused."""
    store = fill(SqliteStore(tmp_path / "state.sqlite"))
    writer, replica = served.catalog(store), served.catalog(store)
    source = writer.row[writer.ids[0]]
    text, image = writer.text[source:source + 1], writer.image[source:source + 1]
    content = writer.content_of(text, np.ones(1, bool), image, np.zeros(1, bool))[0]

    def change(item_id, model_version):
        return ItemChange(0, item_id, False, {"title": item_id}, text[0], True, image[0], False,
                          writer.vector(writer.ids[0]), model_version, content)

    fusions = []
    original = replica.runtime.embed_items
    monkeypatch.setattr(replica.runtime, "embed_items", lambda *args: fusions.append(1) or original(*args))
    store.put_item(change("carried", replica.model_version))
    replica.sync(force=True)
    assert fusions == [] and replica.visible("carried")
    np.testing.assert_allclose(replica.content_vector("carried"), content, atol=1e-6)
    store.put_item(change("from-another-model", "another model"))
    replica.sync(force=True)
    assert fusions and replica.visible("from-another-model")


def test_an_event_written_while_a_sync_reads_is_applied_once(served, fill, tmp_path):
    """A click stored between the sync's read of the newest position and its read of the log is
    picked up by that read; the next sync must not apply it a second time (two clicks stored, two
    counted)."""
    from dynrec.state import StoredEvent

    store = fill(SqliteStore(tmp_path / "state.sqlite"))
    catalog = served.catalog(store)
    item = catalog.ids[0]
    before = catalog.feedback.shown_and_clicked(item)
    click = StoredEvent(item, 1_000_000, 1.0, "click", "racer", "a-list", position=3)
    latest = store.latest

    def latest_then_a_write():
        position = latest()
        store.add_events([click])  # lands after the position was read, before the log is
        return position

    store.add_events([click._replace(recommendation_id="earlier")])  # so that the sync has events to read
    store.latest = latest_then_a_write
    catalog.sync(force=True)
    store.latest = latest
    catalog.sync(force=True)
    catalog.sync(force=True)
    assert catalog.feedback.shown_and_clicked(item) == (before[0] + 2, before[1] + 2)
