"""The README's main job: prepare artefacts, start the service, and show it working.

    dynrec quickstart [--port 8000] [--no-wait]

Trains a small model if none exists (minutes, once), starts the whole Serve graph on a local Ray
cluster, sends sample requests (printing recommendations, their reasons and latencies), prints
how to call the service with curl, and keeps serving until Ctrl+C (`--no-wait` stops instead).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, TypeVar

from deployments.common import use_serve_environment
from dynrec.api.schemas import RecommendationResponse, SimilarResponse
from dynrec.client import Client, wait_until_ok
from dynrec.config import DynrecConfig

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


def run(port: int = 8000, wait: bool = True, config_path: str | None = None, user: str = SAMPLE_USER) -> int:
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

    from deployments.app import build_app

    env = {key: os.environ[key] for key in ("DYNREC_CONFIG", "DYNREC_HOME", "DYNREC_DATA_DIR", "RAY_AUTH_MODE") if key in os.environ}
    ray.init(include_dashboard=False, configure_logging=False, runtime_env={"env_vars": env})
    try:
        print("\nstarting the Serve graph (Ingress, TextEncoder, ImageEncoder, Fusion, Ranker, Segments, UserState) ...", flush=True)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(), name="dynrec", route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        client = Client(base, timeout_s=60)
        health = wait_until_ok(lambda: client.get("/healthz", timeout=10), timeout_s=60).json()
        print(f"service up at {base} (model {health['model_version']})")

        body = {"user_id": user, "num_results": 5}
        before, ms = _timed(lambda: client.recommendations(user, 5))
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
        client.close()

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
            print("\nserving; press Ctrl+C to stop", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        print("stopping ...", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0
