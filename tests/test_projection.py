"""The segment scatter's coordinates: the principal plane of users' segment features, each user
with their segment, a seeded sample when asked for fewer."""

import dataclasses

import numpy as np

from dynrec.config import SegmentConfig
from dynrec.projection import principal_plane, project_users
from dynrec.segments import ItemInfo, UserTable, fit_segments


def clustered_users(n_per: int = 40, dim: int = 8) -> UserTable:
    """Three tight groups of unit vectors, far apart."""
    rng = np.random.default_rng(1)
    centres = np.eye(dim)[:3] * 3
    x = np.concatenate([c + rng.normal(0, 0.05, (n_per, dim)) for c in centres]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"u{i}" for i in range(len(x))]
    return UserTable(ids, x, [{} for _ in ids], [["i1"] for _ in ids])


def test_principal_plane_keeps_the_largest_spread_and_a_fixed_sign():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(0, 10, 200), rng.normal(0, 3, 200), rng.normal(0, 0.1, 200)])
    plane = principal_plane(x)
    assert plane.shape == (200, 2)
    # the first axis follows the widest column, the second the next one, each with a positive loading
    assert np.corrcoef(plane[:, 0], x[:, 0])[0, 1] > 0.99
    assert np.corrcoef(plane[:, 1], x[:, 1])[0, 1] > 0.99
    assert np.allclose(principal_plane(-x), -plane, atol=1e-4)  # mirrored data, mirrored picture
    assert principal_plane(x[:1]).tolist() == [[0.0, 0.0]]


def test_users_land_with_their_segments_apart_and_a_sample_is_seeded():
    users = clustered_users()
    segmentation = fit_segments(users, {"i1": ItemInfo("one", ["Drama"], "")}, SegmentConfig(k=3, sample=500))
    points = project_users(users, segmentation, limit=1000)
    assert [p.user_id for p in points] == users.user_ids
    assert [p.segment_id for p in points] == [segmentation.members[u] for u in users.user_ids]
    xy = np.array([[p.x, p.y] for p in points])
    by_segment = {s: xy[[p.segment_id == s for p in points]] for s in range(3)}
    spread = max(np.linalg.norm(v - v.mean(axis=0), axis=1).max() for v in by_segment.values())
    centres = [v.mean(axis=0) for v in by_segment.values()]
    gaps = min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:])
    assert gaps > 4 * spread  # the three groups stay apart on the plane

    sample = project_users(users, segmentation, limit=25)
    assert len(sample) == 25 and len({p.user_id for p in sample}) == 25
    assert [p.user_id for p in sample] == [p.user_id for p in project_users(users, segmentation, limit=25)]


def test_users_who_joined_after_the_fit_get_the_nearest_segment():
    users = clustered_users()
    segmentation = fit_segments(users, {"i1": ItemInfo("one", ["Drama"], "")}, SegmentConfig(k=3, sample=500))
    newcomer = UserTable(["new"], users.embeddings[:1], [{}], [[]])
    [point] = project_users(newcomer, segmentation, limit=10)
    assert point.segment_id == segmentation.members["u0"]
    # a member keeps the segment the fit gave them, even where the nearest centroid now says otherwise
    moved = (segmentation.members["u0"] + 1) % 3
    refit = dataclasses.replace(segmentation, members={**segmentation.members, "u0": moved})
    assert project_users(users, refit, limit=1000)[0].segment_id == moved
    assert project_users(users, None, limit=5)[0].segment_id is None
