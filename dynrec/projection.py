"""Users on a plane, for the inspector's segment scatter (`GET /v1/segments/projection`): the
first two principal components of the features segments are fitted on (embedding plus attribute
columns, `Segmentation.features`), each user with their segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynrec.segments import Segmentation, UserTable


@dataclass
class ProjectedUser:
    user_id: str
    x: float
    y: float
    segment_id: int | None


def principal_plane(x: np.ndarray) -> np.ndarray:
    """(n, 2) coordinates of the rows on their first two principal components. Each component's
    sign is fixed (its largest loading positive), so the same users give the same picture; fewer
    than two dimensions of variation leave zeros."""
    out = np.zeros((len(x), 2), np.float32)
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    out[:, : len(axes)] = centred @ axes.T
    return out


def project_users(users: UserTable, segmentation: Segmentation | None, limit: int, seed: int = 0) -> list[ProjectedUser]:
    """At most `limit` users (a seeded sample when there are more, in their table order), on the
    principal plane of their segment features, with the segment the last fit put them in (or the
    nearest one for users who joined since; None before there are segments)."""
    n = len(users.user_ids)
    rows = np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    if segmentation is None:
        x = users.embeddings[rows]
        segments = [None] * len(rows)
    else:
        x = np.stack([segmentation.features(users.embeddings[r], users.attributes[r])[0] for r in rows]) if len(rows) \
            else np.zeros((0, segmentation.centroids.shape[1]), np.float32)
        segments = [segmentation.members.get(users.user_ids[r]) for r in rows]
        segments = [s if s is not None else segmentation.assign(users.embeddings[r], users.attributes[r])
                    for s, r in zip(segments, rows)]
    points = principal_plane(np.asarray(x, np.float64))
    return [ProjectedUser(users.user_ids[r], round(float(p[0]), 5), round(float(p[1]), 5), None if s is None else int(s))
            for r, p, s in zip(rows, points, segments)]
