"""What passes between the Ingress and the user shards: which shard owns a user (a stable hash,
so every process routes a user alike) and the view of a user a shard hands to ranking. Kept free
of the model stack, so the Ingress can route and unpickle views without importing torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np


def shard_of(user_id: str, shards: int) -> int:
    """The shard for `user_id` among `shards`: stable across processes and restarts (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") % shards


@dataclass
class UserView:
    """What ranking needs to know about a user."""

    user_id: str
    embedding: np.ndarray | None
    seen: set[str]
    recent: list[tuple[str, str, int, float]]  # newest first, the last `serving.reason_history` events: what reasons cite
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. gender, age, occupation: the cold-start prior
    history_length: int = 0  # events in the user's window (up to the model's max_length): how much the prior still counts
