"""Which UserState shard owns a user: a stable hash, so every process routes a user alike."""

from __future__ import annotations

import hashlib


def shard_of(user_id: str, shards: int) -> int:
    """The shard for `user_id` among `shards`: stable across processes and restarts (unlike hash())."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") % shards
