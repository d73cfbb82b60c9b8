"""Per-user state for serving: recent history, seen items, embedding and long-term interests.

`apply` appends events in order, then updates the embedding of each user it touched by one step of
the user model over the events just appended, after the keys and values it keeps for the rest of
the user's window (dynrec.users.incremental: for the `serving.user_cache_users` users updated most
recently, and per model), or by one encode of the window where it keeps none. Both run on the
runtime's graphs (ONNX Runtime by default, so this process never loads torch). At a 200-event
window a step costs 0.08 ms against 0.92 ms for the re-encode that every event used to cost, and
0.15 against 1.21 ms with this class's own work around them (bench/results/user_update.json:
medians over a stream of ML-1M events, 2 CPUs). A full history's window is its newest events from
a first event that the history alone decides (between max_length // 2 + 1 and max_length of
them), so a user's embedding is the same whether it was stepped or encoded, on any replica and
after any restart.

Boot: from the shard's snapshot when one exists (every user's window, seen items, embedding and
interests, as of an event sequence number: a compacted state, so start-up reads the users, not
their whole history), else from the store's events, embedded in batches; then the shard's events
logged after that point are replayed. Durability: `record` writes events to the state store and
applies them under one lock, so a `save_snapshot` never misses an acknowledged event.

Long-term interests (dynrec.users.interests) sit beside the embedding: every liked event moves
them, and start-up builds them from the user's whole stored history, not only the window. After
a model switch they are rebuilt under the new model's item vectors on the user's next event (and
on the fly for a view until then).
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from dynrec.config import DynrecConfig
from dynrec.data import Interactions
from dynrec.data.schemas import NOT_INTERACTIONS
from dynrec.items.catalog import Catalog
from dynrec.memory import release_unused_memory
from dynrec.ranking.ranker import explained, liked
from dynrec.segments import UserTable
from dynrec.state import StateStore, StoredEvent, unpickled
from dynrec.state.imports import stored_dataset
from dynrec.users.incremental import UserStates, event_features, window_start
from dynrec.users.interests import ItemSpace, UserInterests, interests_of
from dynrec.users.shards import Erasure, Event, HistoryEntry, ReasonBasis, UserSummary, UserView



@dataclass
class UserRecord:
    user_id: str
    history: deque  # (item_id, event_type, timestamp, value), the newest last, at most max_length
    seen: set[str] = field(default_factory=set)
    embedding: np.ndarray | None = None
    interests: UserInterests | None = None  # long-term: clusters of what they liked (dynrec.users.interests)
    events: int = 0  # events received while serving
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. gender, age, occupation
    # (the reason window it was made for, the ReasonBasis or None when there is nothing to weigh):
    # one attribute, replaced whole, so a view read without the lock never pairs a window with another's basis
    reasons: tuple[list, ReasonBasis | None] | None = None


@dataclass
class Overlap:
    """The model a shard served before its last switch, kept for a while: its catalogue, and every
    user's embedding under it."""

    catalog: Catalog
    embeddings: dict[str, np.ndarray]
    until: float  # time.monotonic() after which it is dropped


# every user's state; version 1 held only the users changed while serving, 2 a moving-average profile
# where 3 holds the interests, and 4 keeps each user as an entry of its own (3 was one blob)
SNAPSHOT_VERSION = 4


def snapshot_state(record: UserRecord) -> tuple:
    """A copy of what a user's snapshot entry holds, taken under the shard's lock: the history and
    the seen set change in place; the embedding and interests are replaced, never changed."""
    return list(record.history), set(record.seen), record.embedding, record.interests, record.events, dict(record.attributes)


def snapshot_entry(record: UserRecord) -> bytes:
    """A user's entry in their shard's snapshot (read back by `UserSessions._load_snapshot`)."""
    return pickle.dumps(snapshot_state(record), protocol=5)


# users pickled between hand-offs of the GIL while a snapshot is written (about 3 ms of work)
SNAPSHOT_CHUNK_USERS = 128


def pickled_entries(states: dict[str, tuple]) -> dict[str, bytes]:
    """The entries of `snapshot_state` copies, pickled in chunks with a short sleep between them,
    so the replica's request thread never waits long for the GIL: a first snapshot of ML-1M's
    6,040 users is 0.16 s of pickling."""
    entries: dict[str, bytes] = {}
    for n, (user_id, state) in enumerate(states.items(), 1):
        entries[user_id] = pickle.dumps(state, protocol=5)
        if n % SNAPSHOT_CHUNK_USERS == 0:
            time.sleep(0.001)
    return entries


class UserSessions:
    def __init__(self, config: DynrecConfig, catalog: Catalog, snapshot: str | None = None, mine=None):
        """Boot from the catalogue's store: snapshot `snapshot` if it exists, else the stored
        events; then replay the events logged after that point whose user `mine` accepts (this
        shard's; default all). `replayed` counts them."""
        self.config, self.catalog, self.store = config, catalog, catalog.store
        self.types = config.model.event_types
        self.max_length = config.model.max_length
        self.users: dict[str, UserRecord] = {}
        self._space: ItemSpace | None = None
        self._dirty: set[str] = set()  # users changed since the last snapshot
        self._removed: set[str] = set()  # users forgotten since the last snapshot
        self._rewrite = True  # the next snapshot replaces every entry: the shard did not boot from one
        self._lock = threading.RLock()
        self._snapshot_lock = threading.Lock()  # one snapshot write at a time, in the order they were taken
        self._generation = 0  # odd while a model switch is being applied (see `view`)
        self._previous: Overlap | None = None
        self._changed_while_adopting: set[str] | None = None
        self._states: dict[str, UserStates] = {}  # key/value caches, by model version (see _update)
        self.mine = mine or (lambda user_id: True)
        after = self._load_snapshot(snapshot) if snapshot else None
        if after is None:
            after = self._load_histories()
        # each user's state version: the store sequence number of the newest event it reflects (at
        # least the point the boot read the store to), so a client sees when an event has landed
        self._boot_seq = after
        self._as_of: dict[str, int] = {}
        logged = [(seq, e) for seq, e in self.store.events(after) if e.user_id and self.mine(e.user_id) and e.item_id in catalog]
        replayed = [Event(e.user_id, e.item_id, e.event_type, e.ts, e.value, e.recommendation_id) for _, e in logged]
        self.apply(replayed)
        self._as_of.update((e.user_id, seq) for seq, e in logged)
        self.replayed = len(replayed)
        release_unused_memory()  # the store's reads

    def _load_snapshot(self, name: str) -> int | None:
        """Users from a complete snapshot; returns its event sequence number, or None without one."""
        snapshot = self.store.load_snapshot_entries(name)
        if snapshot is None:
            return None
        after, header, entries = snapshot
        saved = unpickled(header, name)
        if not isinstance(saved, dict) or saved.get("version") != SNAPSHOT_VERSION:
            return None
        users, others = {}, set()
        for user_id, entry in entries.items():
            if not self.mine(user_id):  # a snapshot written before shards kept only their own users
                others.add(user_id)
                continue
            record = unpickled(entry, name)
            if record is None:  # written by code this one cannot read: the users come from the events
                return None
            history, seen, embedding, interests, events, attributes = record
            users[user_id] = UserRecord(user_id, deque(history, maxlen=self.max_length), set(seen), embedding, interests,
                                        events, dict(attributes))
        self._rewrite = False
        self.users.update(users)
        self._removed.update(others)
        if saved.get("model_version") != self.catalog.model_version:  # another model: same windows, new embeddings
            self._embed_all(list(self.users))
            self._dirty.update(self.users)
        return after

    def _load_histories(self) -> int:
        """Every user of this shard (`mine`) from the store's events, their interests from the whole
        history; returns the event sequence number they are complete to."""
        dataset, (_, after) = stored_dataset(self.store, self.config.source.label)
        interactions = Interactions.from_dataset(dataset, exclude_types=NOT_INTERACTIONS)
        names = interactions.event_type_names
        attributes = {r["user_id"]: dict(r["attributes"] or []) for r in dataset.users.select(["user_id", "attributes"]).to_pylist()}
        for u, user_id in enumerate(interactions.user_ids):
            if not self.mine(str(user_id)):
                continue
            lo, hi = interactions.indptr[u], interactions.indptr[u + 1]
            items = interactions.item_ids[interactions.items[lo:hi]]
            record = UserRecord(str(user_id), deque(maxlen=self.max_length), set(items.tolist()), attributes=attributes.get(str(user_id), {}))
            history = [(interactions.item_ids[interactions.items[at]], names[interactions.event_types[at]],
                        int(interactions.timestamps[at]), float(interactions.values[at])) for at in range(lo, hi)]
            record.history.extend(history[-self.max_length :])
            record.interests = interests_of(self.space, history, self.config.interests)
            self.users[str(user_id)] = record
        for user_id, attributes_only in attributes.items():  # users the store knows without events yet
            if self.mine(user_id):
                self.users.setdefault(user_id, UserRecord(user_id, deque(maxlen=self.max_length), attributes=attributes_only))
        self._embed_all(list(self.users))
        self._dirty.update(self.users)  # the first snapshot holds them all
        return after

    def _window(self, record: UserRecord, catalog: Catalog):
        """The record's window (dynrec.users.incremental.window_start) as the user graph's inputs."""
        history = list(record.history)
        return self._inputs(history[window_start(history, self.max_length) :], catalog)

    def _inputs(self, entries: list, catalog: Catalog, before: tuple | None = None):
        """The user graph's inputs for consecutive history entries, under `catalog`'s item vectors."""
        return catalog.vectors([h[0] for h in entries]), *event_features(entries, self.types, before)

    def _embed_all(self, user_ids: list[str], batch: int = 32) -> None:
        """Embeddings for many users at once (start-up). Batches stay small: ONNX
        Runtime keeps its peak activation memory for the life of the session, and 256 histories
        of 200 events held 400 MB more for a 2.4 s faster start."""
        for start in range(0, len(user_ids), batch):
            records = [self.users[u] for u in user_ids[start : start + batch] if self.users[u].history]
            if records:
                self._embed(records)

    def _embed(self, records: list[UserRecord]) -> list[np.ndarray]:
        """Sets each record's embedding from its window; returns the windows' item vectors. While
        an earlier model overlaps, the records' embeddings under it are kept current too."""
        batch = self._batch(records, self.catalog)
        embeddings = self.catalog.runtime.embed_users(*batch[1:])
        for row, record in enumerate(records):
            record.embedding = embeddings[row]
        overlap = self._previous
        if overlap is not None:
            overlap.catalog.sync(force=True)  # items added since the switch
            earlier = overlap.catalog.runtime.embed_users(*self._batch(records, overlap.catalog)[1:])
            for row, record in enumerate(records):
                overlap.embeddings[record.user_id] = earlier[row]
        return batch[0]

    def _update(self, records: list[UserRecord]) -> None:
        """Sets each record's embedding after events were appended to it: a step of its key/value
        cache under the model (dynrec.users.incremental), or one encode of its window where there
        is none. While an earlier model overlaps, the records' embeddings under it too."""
        overlap = self._previous
        if overlap is not None and records:
            overlap.catalog.sync(force=True)  # items added since the switch
        for record in records:
            record.embedding = self._step(record, self.catalog)
            if overlap is not None:
                overlap.embeddings[record.user_id] = self._step(record, overlap.catalog)

    def _step(self, record: UserRecord, catalog: Catalog) -> np.ndarray:
        live = {self.catalog.model_version} | ({self._previous.catalog.model_version} if self._previous else set())
        for version in [v for v in self._states if v not in live]:  # a cache belongs to one model
            del self._states[version]
        states = self._states.get(catalog.model_version)
        if states is None:
            states = self._states[catalog.model_version] = UserStates(self.max_length, self.config.serving.user_cache_users)
        return states.embed(catalog.runtime, record.user_id, record.history,
                            lambda entries, before: self._inputs(entries, catalog, before))

    def _batch(self, records: list[UserRecord], catalog: Catalog) -> tuple:
        """The records' windows under `catalog`'s item vectors, right-padded into one batch: (each
        window's item vectors, then the user graph's inputs)."""
        windows = [self._window(record, catalog) for record in records]
        width = max(len(w[1]) for w in windows)
        items = np.zeros((len(records), width, catalog.dim), np.float32)
        types = np.zeros((len(records), width), np.int64)
        gaps = np.zeros((len(records), width), np.float32)
        values = np.zeros((len(records), width), np.float32)
        lengths = np.zeros(len(records), np.int64)
        for row, (v, t, g, x) in enumerate(windows):
            n = len(t)
            items[row, :n], types[row, :n], gaps[row, :n], values[row, :n], lengths[row] = v, t, g, x, n
        return [w[0] for w in windows], items, types, gaps, values, lengths

    def adopt(self, catalog: Catalog, overlap_s: float) -> None:
        """Switch to another model's catalogue without stopping: every user is re-embedded under it
        in the background while events keep arriving (windows are copied under the lock, the graph
        runs outside it); then, under the lock, the users whose events came in meanwhile are
        re-embedded again and all switch in one step. For `overlap_s` after that, views also carry
        the user's embedding under the previous model (kept current), for Rankers not yet switched."""
        with self._lock:
            self._changed_while_adopting = set()
            user_ids = [u for u, r in self.users.items() if r.history]
        fresh: dict[str, np.ndarray] = {}  # user: embedding under `catalog`

        def embed(records: list[UserRecord], batch: tuple) -> None:
            _, *inputs = batch
            for record, embedding in zip(records, catalog.runtime.embed_users(*inputs)):
                fresh[record.user_id] = embedding

        for start in range(0, len(user_ids), 32):
            with self._lock:
                records = [self.users[u] for u in user_ids[start : start + 32] if u in self.users]
                batch = self._batch(records, catalog) if records else None
            if batch is not None:
                embed(records, batch)
        with self._lock:
            changed = [self.users[u] for u in self._changed_while_adopting if u in self.users and self.users[u].history]
            self._changed_while_adopting = None
            for start in range(0, len(changed), 32):
                embed(changed[start : start + 32], self._batch(changed[start : start + 32], catalog))
            previous = {u: r.embedding for u, r in self.users.items() if r.embedding is not None}
            self._generation += 1  # views taken from here until the switch is whole wait for the lock
            for user_id, embedding in fresh.items():
                record = self.users.get(user_id)
                if record is not None:
                    record.embedding = embedding
            self._previous = Overlap(self.catalog, previous, time.monotonic() + overlap_s) if overlap_s > 0 else None
            self.catalog = catalog
            self._dirty.update(self.users)
            self._generation += 1

    def end_overlap(self) -> Catalog | None:
        """Drop the previous model's embeddings once their overlap has run out; returns that
        model's catalogue when it was dropped (for the caller to stop)."""
        with self._lock:
            overlap = self._previous
            if overlap is None or time.monotonic() < overlap.until:
                return None
            self._previous = None
            return overlap.catalog

    def apply(self, events: list[Event]) -> None:
        """Append events (already validated) to their users, in the order given, then update the
        embedding of each user touched (`_update`). Impressions are skipped: being shown an item
        is not an interaction with it (the bandit counts them)."""
        with self._lock:
            touched: dict[str, UserRecord] = {}
            for event in events:
                if event.event_type in NOT_INTERACTIONS:
                    continue
                record = self.users.get(event.user_id)
                if record is None:
                    record = self.users[event.user_id] = UserRecord(event.user_id, deque(maxlen=self.max_length))
                self._append(record, event)
                touched[event.user_id] = record
            self._dirty.update(touched)
            if self._changed_while_adopting is not None:
                self._changed_while_adopting.update(touched)
            self._update(list(touched.values()))
            self._explain(list(touched.values()))

    def _reason_window(self, record: UserRecord) -> list:
        """The newest `serving.reason_window` events, oldest first: what a view carries for reasons."""
        return list(islice(reversed(record.history), self.config.serving.reason_window))[::-1]

    def _explained(self, record: UserRecord) -> bool:
        made = record.reasons
        return (made is not None and made[0] == self._reason_window(record)
                and (made[1] is None or made[1].model_version == self.catalog.model_version))

    def _explain(self, records: list[UserRecord]) -> None:
        """Make each record's reason basis (dynrec.ranking.ranker.explained) for its current reason
        window, all in one batch of the user graph, so the Ranker does not re-embed the user for
        every request's reasons (it did: 0.5 of its 1.1 ms a request on ML-1M)."""
        if not self.config.serving.reason_window or not records:
            return
        windows = [self._reason_window(record) for record in records]
        for record, window, basis in zip(records, windows, explained(self.catalog, windows)):
            record.reasons = (window, basis)

    def explain_all(self, batch: int = 16) -> int:
        """Make the reason basis of every user without a current one (after start-up or a model
        switch), `batch` users per hold of the lock, so events keep being applied meanwhile;
        returns how many users it made one for. Until then a view carries none, and the Ranker
        makes it itself."""
        made = 0
        user_ids = list(self.users)
        for start in range(0, len(user_ids), batch):
            with self._lock:
                records = [r for u in user_ids[start : start + batch] if (r := self.users.get(u)) is not None and not self._explained(r)]
                self._explain(records)
            made += len(records)
            time.sleep(0)  # hand the GIL to the request thread between batches
        return made

    def _append(self, record: UserRecord, event: Event) -> None:
        last_time = record.history[-1][2] if record.history else event.timestamp
        timestamp = max(event.timestamp, last_time)  # late events keep the sequence's time order
        record.history.append((event.item_id, event.event_type, timestamp, float(event.value)))
        record.seen.add(event.item_id)
        record.events += 1
        if liked(self.catalog, record.history[-1]):
            interests = self._interests(record) or UserInterests((), 0, self.catalog.model_version)
            record.interests = interests.updated(event.item_id, self.space, self.config.interests)

    @property
    def space(self) -> ItemSpace:
        """The current model's item space, as interests read it (made again after a model switch)."""
        space = self._space
        if space is None or space.catalog is not self.catalog:
            space = self._space = ItemSpace.of(self.catalog)
        return space

    def _interests(self, record: UserRecord) -> UserInterests | None:
        """The record's interests under the current model: rebuilt from their kept items when they
        were made under another (a model switch), without storing them (see `view`)."""
        interests = record.interests
        if interests is None or interests.model_version == self.catalog.model_version:
            return interests
        return interests.rebased(self.space)

    def record(self, store: StateStore, events: list[Event]) -> int:
        """Write events durably, then apply them; returns the store's sequence number. One lock
        covers both, so a snapshot sees every written event applied."""
        with self._lock:
            seq = store.add_events([StoredEvent(e.item_id, e.timestamp, e.value, e.event_type, e.user_id, e.recommendation_id,
                                                position=e.position) for e in events])
            self.apply(events)
            self._as_of.update((e.user_id, seq) for e in events)
            return seq

    def save_snapshot(self, store: StateStore, name: str) -> int:
        """Snapshot every user (the compacted state a restart boots from); returns the event
        sequence number it is complete up to.

        The store keeps one entry per user, and only users changed or forgotten since the last
        snapshot are written: rewriting all of ML-1M's 6,040 users every 30 s held the store's
        write lock, which acknowledged events queue on, for about 0.1 s (bench/user_snapshot.py).
        Writes run one at a time, in the order their users were taken, so a snapshot's sequence
        number never runs ahead of an entry still to be written. The users are copied under the
        lock, consistent with that number, and pickled after it is released: events are applied
        meanwhile, and lookups are not starved of the GIL."""
        with self._snapshot_lock:
            with self._lock:
                seq = store.latest()[1]
                states = {user_id: snapshot_state(self.users[user_id]) for user_id in self._dirty if user_id in self.users}
                # the model version the entries' embeddings were made under (a switch takes this lock)
                header = pickle.dumps({"version": SNAPSHOT_VERSION, "model_version": self.catalog.model_version}, protocol=5)
                dirty, removed, whole = self._dirty, self._removed - set(states), self._rewrite
                self._dirty, self._removed, self._rewrite = set(), set(), False
            try:
                store.save_snapshot_entries(name, seq, header, pickled_entries(states), removed, whole)
            except BaseException:  # not written: the next snapshot takes these users again
                with self._lock:
                    self._dirty |= dirty & set(self.users)
                    self._removed |= removed
                    self._rewrite |= whole
                raise
        return seq

    def erase(self, store: StateStore, user_id: str, snapshot: str) -> Erasure:
        """Forget the user everywhere this shard can: state, logged events (bandit feedback with
        them) and attributes, and a fresh snapshot without them, so a restart cannot bring them back."""
        known = self.forget(user_id)
        events = store.erase_user(user_id)
        self.save_snapshot(store, snapshot)
        return Erasure(known, events)

    def forget(self, user_id: str) -> bool:
        """Drop the user's state; returns whether there was any."""
        with self._lock:
            self._dirty.discard(user_id)
            self._removed.add(user_id)
            self._as_of.pop(user_id, None)
            if self._previous is not None:
                self._previous.embeddings.pop(user_id, None)
            for states in self._states.values():
                states.forget(user_id)
            return self.users.pop(user_id, None) is not None

    def view(self, user_id: str, attributes: dict[str, str] | None = None) -> UserView:
        """What ranking needs; `attributes` (from the request) add to or override the stored ones.

        Read without the lock, so a lookup never queues behind a batch's durable write and
        re-embedding (which held it for p50 4.5 ms, p99 21-31 ms under load). Each copy below is
        one C call under the GIL, so it cannot see a set or deque half-changed; a view taken while
        a batch is applied may show part of that batch, which is not yet acknowledged. A model
        switch (`adopt`) is seen whole or not at all: a view read while one was being applied is
        read again under the lock, so its embedding and model version always belong together."""
        generation = self._generation
        if generation % 2 == 0:
            view = self._view(user_id, attributes)
            if self._generation == generation:
                return view
        with self._lock:
            return self._view(user_id, attributes)

    def _view(self, user_id: str, attributes: dict[str, str] | None) -> UserView:
        record = self.users.get(user_id)
        if record is None:
            return UserView(user_id, None, set(), [], dict(attributes or {}))
        merged = {**record.attributes, **(attributes or {})}
        recent = list(islice(reversed(record.history), self.config.serving.reason_history))
        window = self._reason_window(record)
        made = record.reasons
        overlap = self._previous
        earlier = overlap.embeddings.get(user_id) if overlap is not None else None
        view = UserView(user_id, record.embedding, set(record.seen), recent, merged, len(record.history),
                        self.catalog.model_version if record.embedding is not None else None,
                        {overlap.catalog.model_version: earlier} if earlier is not None else {},
                        self._as_of.get(user_id, self._boot_seq), window=window,
                        reasons=made[1] if made is not None and made[0] == window else None)
        interests = self._interests(record) if self.config.interests.retrieval and record.embedding is not None else None
        if interests is not None and interests.interests:
            view.interests, view.interest_shares = interests.directions(), interests.shares(self.config.interests)
        return view

    def export(self, history: int = 50) -> UserTable:
        """Every user with an embedding, for segmentation: their last `history` items too."""
        with self._lock:
            rows = [(u, r) for u, r in self.users.items() if r.embedding is not None]
            return UserTable(
                [u for u, _ in rows],
                np.stack([r.embedding for _, r in rows]) if rows else np.zeros((0, self.catalog.dim), np.float32),
                [dict(r.attributes) for _, r in rows],
                [[h[0] for h in list(r.history)[-history:]] for _, r in rows],
                self.catalog.model_version,
            )

    def describe(self, user_id: str) -> UserSummary | None:
        with self._lock:
            record = self.users.get(user_id)
            if record is None:
                return None
            recent = list(reversed(record.history))[:10]
            interests = record.interests.summaries(self.config.interests, lambda i: self.catalog.item(i).categories,
                                                   lambda i: self.catalog.item(i).title) if record.interests else []
            return UserSummary(
                user_id, True, dict(record.attributes), len(record.seen), record.events,
                [HistoryEntry(i, self.catalog.item(i).title, t, ts, v) for i, t, ts, v in recent],
                float(np.linalg.norm(record.embedding)) if record.embedding is not None else None,
                interests,
                state_version=self._as_of.get(user_id, self._boot_seq),
            )
