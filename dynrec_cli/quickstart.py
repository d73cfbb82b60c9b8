"""The README's main job: prepare artefacts, start the service, and show it working.

    dynrec quickstart [--port 8000] [--no-wait] [--no-train]

Trains a small bootstrap model if none exists (a few minutes, once), starts the whole Serve graph
on a local Ray cluster, sends sample requests (printing the sample user's recent history beside
their recommendations, with reasons and latencies), prints how to call the service with curl, and
keeps serving until Ctrl+C (`--no-wait` stops instead). While it serves, `dynrec train` runs in the
background on the same cluster (at low priority, on the store's events, live ones included) and
publishes its model when it beats the served one on validation; the replicas switch to it without
a restart, and the quickstart shows the sample user's recommendations again (`--no-train`: none of
this; `train.every_s` repeats it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, TypeVar

from deployments.common import use_serve_environment
from dynrec.api.schemas import RecommendationResponse, SimilarResponse
from dynrec.client import Client, wait_until_ok
from dynrec.config import DynrecConfig
from training.priority import start_idle

SAMPLE_USER = "42"
T = TypeVar("T")


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = call()
    return result, 1000 * (time.perf_counter() - started)


def _show(title: str, result: RecommendationResponse | SimilarResponse, elapsed_ms: float) -> None:
    print(f"\n{title}  ({elapsed_ms:.0f} ms)")
    for rank, item in enumerate(result.items, start=1):
        print(f"  {rank:>2}. {item.title or item.item_id:<48.48}  {item.reason}")


def _show_history(client: Client, user: str) -> None:
    described = client.get(f"/v1/users/{user}").json()
    print(f"\nuser {user}'s recent history ({described.get('history_length', 0)} items in all):")
    for entry in described.get("recent", [])[:5]:
        print(f"  - {entry['title'] or entry['item_id']:<48.48}  {entry['event_type']} {entry['value']:g}")


class BackgroundTraining:
    """`dynrec train` on the quickstart's cluster, in a process of its own (its output in
    <home>/logs), once or every `train.every_s`: each run has its own name and publishes its model
    when it beats the served one. Its workers reserve a quarter of a CPU and run in the idle scheduling
    class, so serving keeps the CPU first."""

    def __init__(self, config: DynrecConfig, address: str):
        self.config, self.address = config, address
        self.process: subprocess.Popen | None = None
        self.stopped = threading.Event()
        threading.Thread(target=self._loop, name="background-training", daemon=True).start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            self._run_once()
            if self.config.train.every_s <= 0:
                return
            self.stopped.wait(max(0.0, self.config.train.every_s - (time.monotonic() - started)))

    def _run_once(self) -> None:
        name = f"{self.config.run_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        raw = self.config.to_dict()
        raw["train"].update(run_name=name, threads_per_worker=1, cpus_per_worker=0.25, priority="idle", num_workers=1,
                            max_minutes=self.config.train.max_minutes or self.config.train.background_minutes)
        logs = self.config.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        settings = logs / f"train-{name}.json"
        settings.write_text(json.dumps(raw, default=str))
        env = {**os.environ, "RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "disabled"}
        print(f"\ntraining {name} in the background (log: {logs / f'train-{name}.log'})", flush=True)
        with open(logs / f"train-{name}.log", "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(settings)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=start_idle)
            self.process.wait()

    def stop(self) -> None:
        self.stopped.set()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def _watch_switches(client: Client, user: str, serving: str, started: float, stopped: threading.Event) -> None:
    """Print each model the service switches to, and the sample user's recommendations under it."""
    while not stopped.wait(5):
        try:
            version = client.get("/healthz", timeout=10).json()["model_version"]
            if version == serving:
                continue
            answer, ms = _timed(lambda: client.recommendations(user, 5))
            if answer.model_version != version:
                continue  # not every Ranker has switched yet
        except Exception:  # a transient error: look again at the next poll
            continue
        serving = version
        print(f"\nthe service switched to model {version} without a restart, "
              f"{time.monotonic() - started:.0f} s after the quickstart started", flush=True)
        _show(f"recommendations for user {user} from the new model", answer, ms)


def run(port: int = 8000, wait: bool = True, config_path: str | None = None, user: str = SAMPLE_USER,
        train: bool = True) -> int:
    started = time.monotonic()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if config_path:
        os.environ["DYNREC_CONFIG"] = str(config_path)
    config = DynrecConfig.load(config_path)
    print(f"dynrec quickstart: serving the {config.source.label} catalogue (home: {config.home})")

    from dynrec.artifacts.prepare import ensure_artifacts
    from dynrec.state.imports import import_if_empty

    imported = import_if_empty(config)
    if imported is not None:
        print(f"imported {config.source.label} into the empty {config.state.backend} store:", *imported.lines(), sep="\n  ")
    artifacts = ensure_artifacts(config, progress=True)
    print(f"model: {artifacts.model_path}\nembeddings: {artifacts.embeddings_path}")

    use_serve_environment(local=True)
    import ray
    from ray import serve

    from deployments.app import SERVING_WORKER_ENV, build_app

    env = {key: os.environ[key] for key in ("DYNREC_CONFIG", "DYNREC_HOME", "DYNREC_DATA_DIR", "RAY_AUTH_MODE") if key in os.environ}
    env.update(SERVING_WORKER_ENV)
    # log_to_driver off: the background training's workers run on this cluster, and their output
    # belongs in its log file (<home>/logs), not between the sample requests
    ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False, runtime_env={"env_vars": env})
    try:
        print("\nstarting the Serve graph (Ingress, TextEncoder, ImageEncoder, Fusion, Ranker, Segments, UserState) ...", flush=True)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(), name="dynrec", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        client = Client(base, timeout_s=60)
        health = wait_until_ok(lambda: client.get("/healthz", timeout=10), timeout_s=60).json()
        print(f"service up at {base} (model {health['model_version']})")

        body = {"user_id": user, "num_results": 5}
        _show_history(client, user)
        before, ms = _timed(lambda: client.recommendations(user, 5))
        print(f"\nfirst recommendation {time.monotonic() - started:.0f} s after the quickstart started")
        _show(f"recommendations for user {user}", before, ms)
        if not before.items:
            print(f"  ({before.note})")
            return 0
        liked = before.items[0]
        event = {"user_id": user, "item_id": liked.item_id, "event_type": "rating", "value": 5,
                 "recommendation_id": before.recommendation_id}
        accepted, ms = _timed(lambda: client.events([event]))
        print(f"\nuser {user} rates “{liked.title}” 5★: {accepted.model_dump()}  ({ms:.0f} ms)")
        after, ms = _timed(lambda: client.recommendations(user, 5))
        _show("recommendations right after that event", after, ms)

        stored, ms = _timed(lambda: client.put_item(
            "galaxy-rangers", "Galaxy Rangers (2026)", text="A space opera: rebels fight an empire across the galaxy.",
            categories=["Action", "Sci-Fi"]))
        print(f"\nnew item “{stored.title}” added ({ms:.0f} ms, new={stored.new})")
        similar, ms = _timed(lambda: client.similar("galaxy-rangers", 5))
        _show("items similar to it", similar, ms)
        cold, ms = _timed(lambda: client.recommendations("someone-new", 5))
        _show("a user the service has never seen", cold, ms)
        prior, ms = _timed(lambda: client.recommendations("someone-else-new", 5, context={"gender": "F", "age": "18-24"}))
        _show("a new user who says who she is (context: gender, age)", prior, ms)

        print(f"""
call it yourself (OpenAPI docs: {base}/docs):
  curl -s -X POST {base}/v1/recommendations -H 'content-type: application/json' \\
       -d '{json.dumps(body)}'
  curl -s -X POST {base}/v1/events -H 'content-type: application/json' \\
       -d '{json.dumps({"events": [{"user_id": user, "item_id": liked.item_id, "event_type": "view"}]})}'
  curl -s -X PUT {base}/v1/items/my-item -H 'content-type: application/json' \\
       -d '{json.dumps({"title": "My item", "text": "What it is about", "categories": ["Drama"]})}'
  curl -s {base}/v1/items/{liked.item_id}/similar""")
        if wait:
            training = BackgroundTraining(config, ray.get_runtime_context().gcs_address) if train else None
            stopped = threading.Event()
            threading.Thread(target=_watch_switches, args=(client, user, health["model_version"], started, stopped),
                             daemon=True).start()
            print("\nserving; press Ctrl+C to stop", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
            finally:
                stopped.set()
                if training is not None:
                    training.stop()
        client.close()
    finally:
        print("stopping ...", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0
