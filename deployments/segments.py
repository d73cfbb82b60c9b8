"""Segments deployment: fits user segments from every UserState shard's embeddings, serves their
profiles and assigns users to them.

A fit is saved as a new version in the state store (a snapshot replaced whole, so a replica on
any node reads the same one) and then swapped in as one object, so every request reads one
version whole. Segments are fitted on first use when none is
saved, on `POST /v1/segments/recompute`, and every `segments.recompute_every_s` in the background.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.common import REPLICA_HEALTH_CHECK_PERIOD_S, load_config, state_store
from dynrec.artifacts.versions import published_model
from dynrec.projection import ProjectedUser, project_users
from dynrec.segments import (
    ItemInfo,
    SegmentAssignment,
    Segmentation,
    UserTable,
    fit_segments,
)
from dynrec.state.imports import latest_records
from dynrec.users.shards import shard_of


@serve.deployment(health_check_period_s=REPLICA_HEALTH_CHECK_PERIOD_S, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class Segments:
    def __init__(self, *user_shards: DeploymentHandle):
        self.config = load_config()
        self.shards = user_shards
        self.store = state_store(self.config)
        self.current: Segmentation | None = Segmentation.load(self.store)
        self._fitting = asyncio.Lock()
        self._schedule: asyncio.Task | None = None
        self._following: asyncio.Task | None = None
        self._tally: dict[str, bool] = {}  # item id -> hidden, from the item log up to _tally_seq (store_status)
        self._tally_seq = 0
        self._tallying = asyncio.Lock()

    def _items(self) -> dict[str, ItemInfo]:
        """Titles, categories and text of every item in the store (its newest record)."""
        records = latest_records(self.store.item_changes(0))
        return {item_id: ItemInfo(c.record.get("title") or item_id, list(c.record.get("categories") or []), c.record.get("text") or "")
                for item_id, c in records.items()}

    async def _users(self, owners_only: bool = False) -> UserTable:
        """Every shard's users with an embedding, in one table. `owners_only`: each user once, from
        the shard that owns them (a shard booted from the store's events also holds other shards'
        imported users)."""
        tables = await asyncio.gather(*(shard.export.remote() for shard in self.shards))
        if owners_only:
            tables = [owned_rows(t, i, len(self.shards)) for i, t in enumerate(tables)]
        versions = {t.model_version for t in tables}
        return UserTable(
            [u for t in tables for u in t.user_ids],
            np.concatenate([t.embeddings for t in tables]),
            [a for t in tables for a in t.attributes],
            [h for t in tables for h in t.histories],
            versions.pop() if len(versions) == 1 else None,  # shards mid-switch: several models
        )

    async def recompute(self) -> dict:
        async with self._fitting:
            users = await self._users()
            version = (self.current.version if self.current else 0) + 1
            fitted = await asyncio.to_thread(lambda: fit_segments(users, self._items(), self.config.segments, version))
            await asyncio.to_thread(fitted.save, self.store)
            self.current = fitted
            return self._summary(fitted)

    async def _segmentation(self) -> Segmentation:
        if self._schedule is None and self.config.segments.recompute_every_s > 0:
            self._schedule = asyncio.get_running_loop().create_task(self._recompute_periodically())
        if self._following is None and self.config.serving.model_poll_s > 0:
            self._following = asyncio.get_running_loop().create_task(self._follow_the_model())
        if self.current is None:
            await self.recompute()
        return self.current

    async def _recompute_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.segments.recompute_every_s)
            await self.recompute()

    async def _follow_the_model(self) -> None:
        """Refit once every shard serves a newly published model: centroids fitted among one
        model's user embeddings say nothing about another's (until then, `Segmentation.assign`
        places users of the new model by their attributes)."""
        while True:
            await asyncio.sleep(self.config.serving.model_poll_s)
            published = await asyncio.to_thread(published_model, self.store)
            if published is None or self.current is None or self.current.model_version == published.fingerprint:
                continue
            shards = await asyncio.gather(*(shard.status.remote() for shard in self.shards))
            if all(s["model_version"] == published.fingerprint for s in shards):
                await self.recompute()

    @staticmethod
    def _summary(segmentation: Segmentation) -> dict:
        summary = segmentation.summary()
        return {key: summary[key] for key in ("version", "k", "silhouette", "segments")}

    async def summary(self) -> dict:
        return self._summary(await self._segmentation())

    async def segment(self, segment_id: int) -> dict | None:
        segmentation = await self._segmentation()
        if not 0 <= segment_id < segmentation.k:
            return None
        return {"version": segmentation.version, **dataclasses.asdict(segmentation.profile(segment_id))}

    async def basis(self, segment_id: int) -> tuple[np.ndarray, dict[str, float], str, int] | None:
        """What the segment's recommendations start from (Segmentation.basis), its label and the
        segmentation's version; None for an unknown segment."""
        segmentation = await self._segmentation()
        if not 0 <= segment_id < segmentation.k:
            return None
        centroid, popular = segmentation.basis(segment_id)
        return centroid, popular, segmentation.profile(segment_id).label, segmentation.version

    async def forget(self, user_id: str) -> bool:
        """Drop the user from the saved membership (a new version, saved before it is served)."""
        async with self._fitting:
            if self.current is None or user_id not in self.current.members:
                return False
            members = {u: s for u, s in self.current.members.items() if u != user_id}
            fitted = dataclasses.replace(self.current, version=self.current.version + 1, members=members)
            await asyncio.to_thread(fitted.save, self.store)
            self.current = fitted
            return True

    async def assign(self, user_id: str, embedding: np.ndarray | None, attributes: dict[str, str]) -> SegmentAssignment:
        """The user's segment: from the last fit when the user was in it, else the nearest centroid."""
        segmentation = await self._segmentation()
        segment_id = segmentation.members.get(user_id)
        if segment_id is None:
            segment_id = segmentation.assign(embedding, attributes)
        label = "no segments yet: too few users" if segment_id is None else segmentation.profile(segment_id).label
        return SegmentAssignment(segment_id, label, segmentation.version)

    async def projection(self, limit: int) -> tuple[int, list[ProjectedUser]]:
        """Up to `limit` users on the principal plane of their segment features, each with their
        segment (the inspector's scatter), and the segmentation's version."""
        segmentation = await self._segmentation()
        users = await self._users(owners_only=True)
        return segmentation.version, await asyncio.to_thread(project_users, users, segmentation, limit)

    async def store_status(self) -> dict:
        """The state store as the health page shows it: its newest item-log and event-log sequence
        numbers, how long reading them took, and the catalogue's items (visible and hidden), tallied
        from the item log, which is read only past the last tally."""

        def read() -> dict:
            started = time.perf_counter()
            items_seq, events_seq = self.store.latest()
            read_ms = (time.perf_counter() - started) * 1000
            if items_seq > self._tally_seq:
                for change in self.store.item_changes(self._tally_seq):
                    self._tally[change.item_id] = change.hidden
                    self._tally_seq = max(self._tally_seq, change.seq)
            hidden = sum(self._tally.values())
            return {"backend": self.config.state.backend, "item_log_seq": items_seq, "event_log_seq": events_seq,
                    "read_ms": round(read_ms, 3), "items": len(self._tally) - hidden, "hidden_items": hidden}

        async with self._tallying:
            return await asyncio.to_thread(read)


def owned_rows(table: UserTable, shard: int, shards: int) -> UserTable:
    """The rows of a shard's table whose user the shard owns."""
    rows = [r for r, user_id in enumerate(table.user_ids) if shard_of(user_id, shards) == shard]
    if len(rows) == len(table.user_ids):
        return table
    return UserTable([table.user_ids[r] for r in rows], table.embeddings[rows], [table.attributes[r] for r in rows],
                     [table.histories[r] for r in rows], table.model_version)
