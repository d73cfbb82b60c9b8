"""User segmentation: stable for a seed, profiles a person can read, versions saved whole."""

import numpy as np
import pytest

from dynrec.config import SegmentConfig
from dynrec.segments import (
    ItemInfo,
    Segmentation,
    UserTable,
    fit_segments,
    kmeans,
    plot_segments,
    silhouette,
)
from dynrec.state.sqlite import SqliteStore


@pytest.fixture(scope="module")
def users_and_items(ml100k):
    """ML-100k users: embeddings from their genre mix (so clusters mean something), real attributes."""
    items = {r["item_id"]: ItemInfo(r["title"], list(r["categories"] or []), r["title"] or "")
             for r in ml100k.items.select(["item_id", "title", "categories"]).to_pylist()}
    genres = sorted({c for i in items.values() for c in i.categories})
    histories: dict[str, list[str]] = {}
    for row in ml100k.events.select(["user_id", "item_id"]).to_pylist():
        histories.setdefault(row["user_id"], []).append(row["item_id"])
    attributes = {r["user_id"]: dict(r["attributes"] or []) for r in ml100k.users.to_pylist()}
    ids = sorted(histories)
    mix = np.array([[sum(g in items[i].categories for i in histories[u]) for g in genres] for u in ids], np.float32)
    embeddings = mix / np.linalg.norm(mix, axis=1, keepdims=True)
    return UserTable(ids, embeddings, [attributes.get(u, {}) for u in ids], [histories[u] for u in ids]), items


def test_kmeans_and_silhouette_find_obvious_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.1, (50, 2)) for c in ((0, 0), (5, 5), (0, 5))])
    centroids, labels = kmeans(x, 3, seed=0)
    assert len(set(labels[:50])) == len(set(labels[50:100])) == len(set(labels[100:])) == 1
    assert silhouette(x, labels) > 0.9
    assert silhouette(x, kmeans(x, 2, seed=0)[1]) < silhouette(x, labels)


def test_segments_are_stable_across_recomputes_with_the_same_seed(users_and_items):
    users, items = users_and_items
    config = SegmentConfig(k_min=3, k_max=5, sample=500)
    first, second = fit_segments(users, items, config), fit_segments(users, items, config, version=2)
    assert first.members == second.members
    assert np.allclose(first.centroids, second.centroids)
    assert [p.label for p in first.profiles] == [p.label for p in second.profiles]
    assert 3 <= first.k <= 5


def test_profiles_are_complete_and_readable(users_and_items):
    users, items = users_and_items
    segmentation = fit_segments(users, items, SegmentConfig(k=4, sample=500))
    assert sum(p.size for p in segmentation.profiles) == len(users.user_ids)
    for profile in segmentation.profiles:
        assert profile.top_categories and len(profile.top_items) == 5 and profile.label
        assert profile.label.split(" fans")[0] == " & ".join(profile.top_categories[:2])
        assert all(item["title"] for item in profile.top_items)


def test_assign_save_load_and_plot(users_and_items, tmp_path):
    users, items = users_and_items
    segmentation = fit_segments(users, items, SegmentConfig(k=4, sample=500))
    member = users.user_ids[0]
    assert segmentation.assign(users.embeddings[0], users.attributes[0]) == segmentation.members[member]
    assert 0 <= segmentation.assign(None, {"gender": "F"}) < 4  # attributes alone still place a user
    store = SqliteStore(tmp_path / "state.sqlite")
    assert Segmentation.load(store) is None
    segmentation.save(store)
    loaded = Segmentation.load(store)
    assert loaded.members == segmentation.members and loaded.profiles == segmentation.profiles
    assert np.allclose(loaded.centroids, segmentation.centroids)
    path = plot_segments(users, segmentation, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_an_embedding_from_another_model_places_a_user_by_attributes_alone(users_and_items):
    """Centroids fitted among one model's user embeddings say nothing of another model's: such an
    embedding is left out, and the user lands where their attributes alone put them."""
    users, items = users_and_items
    fitted = fit_segments(UserTable(users.user_ids, users.embeddings, users.attributes, users.histories, "model-a"),
                          items, SegmentConfig(k=4, sample=500))
    assert fitted.model_version == "model-a"
    # a user whose embedding alone puts them elsewhere than their attributes do
    row = next(r for r in range(len(users.user_ids))
               if fitted.assign(users.embeddings[r], users.attributes[r], "model-a") != fitted.assign(None, users.attributes[r]))
    embedding, attributes = users.embeddings[row], users.attributes[row]
    by_attributes = fitted.assign(None, attributes)
    assert fitted.assign(embedding, attributes, "model-a") != by_attributes
    assert fitted.assign(embedding, attributes, "model-b") == by_attributes
    assert fitted.assign(embedding, attributes) == fitted.assign(embedding, attributes, "model-a")  # version unknown: trusted
