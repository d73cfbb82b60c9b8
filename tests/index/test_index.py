"""Both item indexes against brute-force search: add, update, remove, filters, save/load, atomicity."""

import subprocess
import sys
import threading

import numpy as np
import pytest

from dynrec.index import ExactIndex, HnswIndex, IndexConfig, fitted_index, load_index, make_index

DIM = 16


def unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(items: dict[str, np.ndarray], query: np.ndarray, k: int, exclude=()) -> list[str]:
    ids = [i for i in items if i not in set(exclude)]
    scores = np.array([items[i] @ query for i in ids])
    order = sorted(range(len(ids)), key=lambda r: -scores[r])
    return [ids[r] for r in order[:k]]


def build(kind: str):
    # a high search expansion and a single-threaded build (usearch's parallel insertion can leave
    # a small graph slightly imperfect) make HNSW exact at this size, so results compare one to one
    return make_index(DIM, 500, IndexConfig(kind=kind, expansion_search=512, threads=1))


@pytest.fixture(params=["exact", "hnsw"])
def kind(request):
    return request.param


def test_auto_picks_exact_for_small_and_hnsw_for_large():
    assert isinstance(make_index(DIM, 1000), ExactIndex)
    assert isinstance(make_index(DIM, 1000, IndexConfig(exact_max_items=100)), HnswIndex)
    with pytest.raises(ValueError, match="index kind"):
        make_index(DIM, 10, IndexConfig(kind="ivf"))


def test_add_update_remove_match_brute_force(kind):
    index = build(kind)
    vectors = unit(300, 0)
    items = {f"item-{i}": vectors[i] for i in range(300)}
    index.upsert(list(items), vectors)
    queries = unit(5, 1)
    for query in queries:
        assert index.search(query, 10)[0] == brute_force(items, query, 10)

    # update: move three items right onto the first query
    moved = ["item-7", "item-42", "item-199"]
    index.upsert(moved, np.repeat(queries[:1], 3, axis=0))
    items.update({m: queries[0] for m in moved})
    ids, scores = index.search(queries[0], 3)
    assert sorted(ids) == sorted(moved) and np.allclose(scores, 1.0, atol=1e-5)
    np.testing.assert_allclose(index.vector("item-42"), queries[0], atol=1e-6)
    batch = index.vectors(["item-3", "item-42", "item-3"])  # one read, in the order asked
    np.testing.assert_allclose(batch, np.stack([vectors[3], queries[0], vectors[3]]), atol=1e-6)
    assert index.vectors([]).shape == (0, DIM)
    with pytest.raises(KeyError):
        index.vectors(["item-3", "never-there"])

    # remove: they never come back, and the rest still match brute force
    assert index.remove(moved + ["never-there"]) == 3
    for m in moved:
        del items[m]
    assert len(index) == 297 and "item-7" not in index
    for query in queries:
        ids, _ = index.search(query, 20)
        assert ids == brute_force(items, query, 20)
        assert not set(ids) & set(moved)


def test_exclude_and_accept_filters(kind):
    index = build(kind)
    vectors = unit(200, 2)
    items = {str(i): vectors[i] for i in range(200)}
    index.upsert(list(items), vectors)
    query = unit(1, 3)[0]
    top = brute_force(items, query, 10)
    ids, _ = index.search(query, 5, exclude=top[:3])
    assert ids == top[3:8]
    even = lambda item_id: int(item_id) % 2 == 0  # noqa: E731
    ids, _ = index.search(query, 5, accept=even)
    assert ids == [i for i in brute_force(items, query, 200) if even(i)][:5]
    assert index.search(query, 500)[0] == brute_force(items, query, 200)  # k beyond the size: everything


def test_save_load_round_trip_keeps_results_and_version(kind, tmp_path):
    index = build(kind)
    vectors = unit(120, 4)
    index.upsert([f"m{i}" for i in range(120)], vectors)
    index.remove(["m5"])
    index.model_version = "abc123"
    index.save(tmp_path / "index")
    loaded = load_index(tmp_path / "index")
    assert type(loaded) is type(index) and loaded.version == index.version == 2
    assert loaded.model_version == "abc123" and len(loaded) == 119 and "m5" not in loaded
    for query in unit(4, 5):
        assert loaded.search(query, 10)[0] == index.search(query, 10)[0]
    # a later save replaces the current version; loaders follow the pointer to it
    loaded.upsert(["new"], unit(1, 6))
    loaded.save(tmp_path / "index")
    assert "new" in load_index(tmp_path / "index") and load_index(tmp_path / "index").version == 3


def test_bad_vectors_are_rejected_without_change(kind):
    index = build(kind)
    index.upsert(["a"], unit(1, 7))
    with pytest.raises(ValueError, match="dimension"):
        index.upsert(["b"], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(ValueError, match="finite"):
        index.upsert(["b"], np.full((1, DIM), np.nan, np.float32))
    assert len(index) == 1 and index.version == 1


def test_readers_never_see_a_half_applied_update(kind):
    """An update that starts while a search is running waits for it: the search sees the index
    wholly before the update, and the update lands right after."""
    index = build(kind)
    vectors = unit(50, 8)
    index.upsert([str(i) for i in range(50)], vectors)
    query = vectors[0]
    writer_blocked = []

    def accept_while_writing(item_id: str) -> bool:
        if not writer_blocked:  # first candidate: an update of item 0 arrives mid-search
            writer = threading.Thread(target=index.upsert, args=(["0"], -vectors[:1]))
            writer.start()
            writer.join(timeout=0.3)
            writer_blocked.append(writer.is_alive())
            accept_while_writing.writer = writer
        return True

    ids, scores = index.search(query, 1, accept=accept_while_writing)
    accept_while_writing.writer.join()
    assert writer_blocked == [True]
    assert ids == ["0"] and scores[0] == pytest.approx(1.0, abs=1e-5)  # the state before the update
    assert index.search(query, 50)[0][-1] == "0"  # and the update is applied after it


def test_hnsw_compaction_keeps_results_and_drops_retired_nodes():
    index = build("hnsw")
    vectors = unit(300, 11)
    items = {f"i{i}": vectors[i] for i in range(300)}
    index.upsert(list(items), vectors)
    moved = unit(300, 12)
    index.upsert(list(items), moved)  # every item updated once: 300 retired nodes
    items = dict(zip(items, moved))
    index.remove(["i0", "i1"])
    del items["i0"], items["i1"]
    query = unit(1, 13)[0]
    before = index.search(query, 20)[0]
    assert before == brute_force(items, query, 20)
    index.compact()
    assert index.search(query, 20)[0] == before and len(index) == 298
    assert len(index._graph) == 298  # only live items remain in the graph


def test_fitted_index_moves_a_grown_catalogue_to_hnsw_and_keeps_results():
    config = IndexConfig(exact_max_items=200, expansion_search=512, threads=1)
    index = make_index(DIM, 100, config)
    vectors = unit(300, 3)
    index.upsert([f"item-{i}" for i in range(300)], vectors)
    assert fitted_index(index, 150, config) is index  # still small enough: nothing is copied
    grown = fitted_index(index, 300, config)
    assert isinstance(grown, HnswIndex) and len(grown) == 300
    query = unit(1, 4)[0]
    assert grown.search(query, 10)[0] == index.search(query, 10)[0]


def test_hnsw_then_onnxruntime_imports_without_torch():
    """A torch-free process (a Ranker) that loads the HNSW module before onnxruntime must not crash."""
    probe = "import sys, dynrec.index.hnsw, onnxruntime; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_hnsw_expansion_search_changes_live_and_is_saved(tmp_path):
    index = build("hnsw")
    vectors = unit(300, seed=5)
    index.upsert([f"i{r}" for r in range(300)], vectors)
    index.expansion_search = 16
    assert index.expansion_search == 16
    assert index.search(vectors[7], 1)[0] == ["i7"]  # still finds an indexed vector itself
    index.save(tmp_path)
    assert load_index(tmp_path).expansion_search == 16
