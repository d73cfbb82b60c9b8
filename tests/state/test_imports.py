"""`dynrec import` into both stores: what goes in comes back as the same dataset, a re-run adds
nothing, an interrupted run resumes, and a source that fails its checks writes nothing."""

import pyarrow as pa
import pytest

from dynrec.config import DynrecConfig
from dynrec.data import Interactions, SourceError
from dynrec.state.imports import import_dataset, import_source, stored_dataset


@pytest.fixture(scope="module")
def small(ml100k):
    """ML-100k's first 40 users, every item (no text, no images: the shape of a small shop)."""
    keep = pa.compute.is_in(ml100k.events["user_id"], value_set=pa.array([str(u) for u in range(1, 41)]))
    users = pa.compute.is_in(ml100k.users["user_id"], value_set=pa.array([str(u) for u in range(1, 41)]))
    return type(ml100k)("small", ml100k.items, ml100k.events.filter(keep), ml100k.users.filter(users))


def test_the_store_gives_back_what_was_imported(small, open_backend):
    open_store_, crash = open_backend
    summary = import_dataset(small, open_store_(), batch_size=1000, progress=False)
    assert (summary.items_written, summary.users_written, summary.events_written) == (1682, 40, small.events.num_rows)
    crash()
    back, (items_seq, events_seq) = stored_dataset(open_store_(), "small")
    assert back.items.equals(small.items)
    assert (items_seq, events_seq) == (1682, small.events.num_rows)
    assert sorted(map(tuple, back.users.to_pylist()[0]["attributes"])) == sorted(small.users.to_pylist()[0]["attributes"])
    ours, theirs = Interactions.from_dataset(back), Interactions.from_dataset(small)
    assert (ours.items == theirs.items).all() and (ours.timestamps == theirs.timestamps).all()
    assert (ours.values == theirs.values).all()


def test_a_rerun_adds_nothing_and_an_interrupted_run_resumes(small, open_backend):
    open_store_, _ = open_backend
    store = open_store_()
    half = type(small)("small", small.items.slice(0, 800), small.events.filter(
        pa.compute.is_in(small.events["item_id"], value_set=small.items["item_id"].slice(0, 800))), small.users)
    first = import_dataset(half, store, batch_size=500, progress=False)  # "interrupted": part of the data
    full = import_dataset(small, store, batch_size=500, progress=False)
    assert full.items_unchanged == 800 and full.items_written == 1682 - 800
    assert full.events_already_stored == first.events_written
    assert full.events_written == small.events.num_rows - first.events_written
    again = import_dataset(small, store, batch_size=500, progress=False)
    assert (again.items_written, again.users_written, again.events_written) == (0, 0, 0)
    assert store.latest() == (1682, small.events.num_rows)


def test_a_source_over_its_bad_row_ceiling_writes_nothing(tmp_path):
    (tmp_path / "items.csv").write_text("item_id\na\n")
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\nu,a,1\nu,zzz,2\n")
    config = DynrecConfig.from_dict({"home": str(tmp_path / "home"), "source": {"uri": str(tmp_path)}})
    with pytest.raises(SourceError, match="item_id not in the items file"):
        import_source(config, progress=False)
    assert not (tmp_path / "home" / "state").exists()
