"""Incremental user state: which window a history has, that a cached step covers exactly that window
(a toy runtime that returns the window's own items), and that on the served model (ML-100k,
bootstrap, max_length 50) every event's embedding equals a full encode of the same window, on ONNX
Runtime and on torch, stepped, rebuilt, evicted or restarted alike."""

import dataclasses
import itertools

import numpy as np
import pytest

from dynrec.config import RuntimeConfig
from dynrec.state.sqlite import SqliteStore
from dynrec.users.incremental import UserStates, anchor_key, window_start
from dynrec.users.sessions import UserSessions
from dynrec.users.shards import Event

TOLERANCE = 1e-4


class EchoRuntime:
    """A stand-in for the user model whose embedding is the window's item numbers in order: the
    cached rows' (from `past`) and then the new events'. A cache that covered anything but the
    window's events, in order, would show."""

    user_layers, dim = 1, 1

    def __init__(self):
        self.calls = []  # (cached events, new events) of each call

    def step_user(self, items, event_types, gaps, values, past):
        self.calls.append((past.shape[2], len(items)))
        present = np.stack([items[None], items[None]], axis=1)  # (layers, 2, T, dim)
        return np.concatenate([past[0, 0, :, 0], items[:, 0]]), present


def echo_inputs(entries, before):
    zeros = np.zeros(len(entries))
    return np.array([[float(e[0])] for e in entries], np.float32), zeros, zeros, zeros


def test_a_full_history_keeps_its_window_start_until_it_jumps_to_one_the_history_decides():
    from collections import deque

    history = deque(maxlen=20)
    starts, lengths = [], []
    for n in range(400):
        history.append((str(n), "rating", 1_000 + n, 4.0))
        start = window_start(history, 20)
        assert start == window_start(deque(list(history), maxlen=20), 20)  # a function of the entries alone
        if len(history) < 20:
            assert start == 0
        else:
            assert start < 10 and anchor_key(history[start]) == min(anchor_key(e) for e in list(history)[:10])
            starts.append(n - (len(history) - start))  # the start's event number
            lengths.append(len(history) - start)
    moves = sum(a != b for a, b in itertools.pairwise(starts))
    assert 11 <= min(lengths) and max(lengths) == 20
    assert 381 / 10 < moves < 381 / 2.5  # about every max_length / 4 events; most events keep the start


@pytest.mark.parametrize("batch", [1, 3])
def test_a_cache_covers_exactly_the_window_and_steps_until_it_moves(batch):
    from collections import deque

    rng = np.random.default_rng(batch)
    runtime, states, history = EchoRuntime(), UserStates(20, capacity=4), deque(maxlen=20)
    appended = 0
    while appended < 600:
        for _ in range(int(rng.integers(1, batch + 1))):
            history.append((str(appended), "view", 5_000 + appended, 1.0))
            appended += 1
        embedding = states.embed(runtime, "u", history, echo_inputs)
        window = list(history)[window_start(history, 20):]
        assert embedding.tolist() == [float(e[0]) for e in window]
    rebuilds = sum(past == 0 for past, _ in runtime.calls)
    assert rebuilds == states.rebuilds and states.steps == len(runtime.calls) - rebuilds
    assert rebuilds < 0.3 * appended  # the window moves about every 5 events at max_length 20
    assert max(new for past, new in runtime.calls if past) <= batch


def test_caches_are_kept_for_the_most_recently_updated_users_only():
    from collections import deque

    runtime, states = EchoRuntime(), UserStates(20, capacity=2)
    histories = {u: deque([(f"{100 * k + n}", "view", n, 1.0) for n in range(5)], maxlen=20) for k, u in enumerate("abc")}
    for n, user in enumerate("abaca"):  # b is the least recently updated when c comes
        histories[user].append(("99", "view", 10 + n, 1.0))
        states.embed(runtime, user, histories[user], echo_inputs)
    assert len(states) == 2 and "a" in states and "c" in states and "b" not in states
    assert states.rebuilds == 3 and states.steps == 2  # a's later events stepped its cache
    states.forget("a")
    assert "a" not in states and states.nbytes == 16 * 1 * 2 * 1 * 4  # c: 16 rows (room to grow) of (1, 2, 1)
    nothing = UserStates(20, capacity=0)
    assert nothing.embed(runtime, "a", histories["a"], echo_inputs).tolist() == [float(e[0]) for e in histories["a"]]
    assert len(nothing) == 0


def unseen_events(sessions, user_id, count, start=2_000_000_000, per_event=60):
    items = [i for i in sessions.catalog.ids if i not in sessions.users[user_id].seen][:count]
    return [Event(user_id, item, "rating" if n % 3 else "click", start + per_event * n, float(1 + n % 5))
            for n, item in enumerate(items)]


def full_encode(sessions, runtime, user_id):
    """The user's embedding from one encode of their current window, by `runtime`."""
    _, *inputs = sessions._batch([sessions.users[user_id]], sessions.catalog)
    return runtime.embed_users(*inputs)[0]


@pytest.fixture(scope="module")
def torch_runtime(served):
    from dynrec.models.model import load_model
    from dynrec.models.runtime import ModelRuntime

    model, _, _ = load_model(served.artifacts.model_path)
    return ModelRuntime(model, RuntimeConfig(backend="torch"))


def test_every_event_matches_a_full_encode_of_its_window_on_onnx_and_torch(served, fill, tmp_path, torch_runtime):
    """User 1 (272 ratings, a full 50-event window) gets 80 events, one by one and then in threes:
    each embedding equals one encode of the same window (ONNX and torch), most of them came from a
    step, and a shard started afresh on the same store embeds the user alike."""
    store = fill(SqliteStore(tmp_path / "state.db"))
    catalog = served.catalog(store)
    sessions = UserSessions(served.config, catalog)
    assert catalog.runtime.step_session is not None  # ONNX Runtime, as served
    events = unseen_events(sessions, "1", 80)
    starts = set()
    for batch in [events[n : n + 1] for n in range(50)] + [events[n : n + 3] for n in range(50, 80, 3)]:
        sessions.record(store, batch)
        record = sessions.users["1"]
        for runtime in (catalog.runtime, torch_runtime):
            assert np.abs(record.embedding - full_encode(sessions, runtime, "1")).max() <= TOLERANCE
        start = window_start(record.history, sessions.max_length)
        assert 26 <= len(record.history) - start <= 50
        starts.add(record.history[start])
    states = sessions._states[catalog.model_version]
    assert len(starts) >= 4  # the window moved several times, and the cache followed it
    assert states.steps + states.rebuilds == 60 and states.rebuilds <= len(starts) + 1
    again = UserSessions(served.config, served.catalog(store))  # a restart without a snapshot: a full encode
    assert np.abs(again.users["1"].embedding - sessions.users["1"].embedding).max() <= TOLERANCE


def test_an_evicted_or_forgotten_users_cache_is_rebuilt_exactly(served, fill, tmp_path):
    store = fill(SqliteStore(tmp_path / "state.db"))
    config = dataclasses.replace(served.config, serving=dataclasses.replace(served.config.serving, user_cache_users=2))
    sessions = UserSessions(config, served.catalog(store))
    states = None
    for user_id in ("1", "2", "3", "1", "2"):
        sessions.apply(unseen_events(sessions, user_id, 1))
        states = sessions._states[sessions.catalog.model_version]
        assert len(states) <= 2
        assert np.abs(sessions.users[user_id].embedding - full_encode(sessions, sessions.catalog.runtime, user_id)).max() <= TOLERANCE
    assert states.rebuilds == 5  # 1 and 2 were evicted before their second event
    sessions.forget("2")
    assert "2" not in states
