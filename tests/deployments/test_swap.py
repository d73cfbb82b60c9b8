"""A model published while the service answers requests: every replica switches without a
restart, nothing fails, and no response mixes the new model's item vectors with the old model's
user vectors (or the reverse). Runs last in the package (it changes the served model)."""

import threading
import time

from dynrec.client import Client
from dynrec.config import DynrecConfig
from dynrec.state import open_store
from tests.deployments.conftest import API_KEY


def test_a_published_model_is_served_without_a_restart_and_no_response_mixes_two_models(service, retrained):
    from dynrec.artifacts.versions import PublishedModel, publish_model, published_model
    from training.train import publish_to_service

    before = service.get("/healthz").json()["model_version"]
    users = [str(u) for u in range(600, 640)]  # ML-100k users no other test changes
    responses, failures, stop = [], [], threading.Event()

    def traffic(worker: int) -> None:
        with Client(service.base, API_KEY, timeout_s=60) as client:
            n = 0
            while not stop.is_set():
                user = users[(n * 2 + worker) % len(users)]
                if n % 5 == 0:  # events too: users move while their shard re-embeds them
                    reply = client.post("/v1/events", json={"events": [{"user_id": user, "item_id": str(1 + n % 300),
                                                                        "event_type": "view"}]})
                    if reply.status_code != 200:
                        failures.append(reply.status_code)
                reply = client.post("/v1/recommendations", json={"user_id": user, "num_results": 10})
                if reply.status_code == 200:
                    responses.append(reply.json())
                else:
                    failures.append(reply.status_code)
                n += 1

    workers = [threading.Thread(target=traffic, args=(w,)) for w in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2)
        config, model_path = retrained
        served = DynrecConfig.load(service.config_path)  # this service's store, with the run's name
        served.train.run_name = config.run_name
        assert publish_to_service(served, model_path, None, force=True)
        store = open_store(served)
        new = published_model(store).fingerprint
        assert new != before
        deadline, switched_at = time.monotonic() + 180, None
        while time.monotonic() < deadline:  # until every Ranker answers from the new model for a while
            recent = responses[-20:]
            if len(recent) == 20 and all(r["model_version"] == new for r in recent):
                switched_at = switched_at or time.monotonic()
                if time.monotonic() - switched_at > 3:
                    break
            else:
                switched_at = None
            time.sleep(0.2)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    versions = [r["model_version"] for r in responses]
    assert versions[0] == before and versions[-1] == new, "the service did not switch models"
    assert service.get("/healthz").json()["model_version"] == new
    mixed = [r for r in responses if r["user_model_version"] != r["model_version"]]
    assert mixed == [], f"{len(mixed)} of {len(responses)} responses ranked a user embedded by another model"
    # the new run's item-item term came with it: items it put forward say which history item they go with
    reasons = [r["reason"] for user in ("1", "2", "5", "6", "10")
               for r in service.post("/v1/recommendations", json={"user_id": user, "num_results": 20}).json()["items"]]
    assert [r for r in reasons if r.startswith("Often chosen with “")], reasons
    bootstrap = DynrecConfig.load(service.config_path)
    publish_model(store, PublishedModel(f"{bootstrap.source.label}-bootstrap", before, None, time.time()))
    store.close()  # later tests (and the other store's run) serve the bootstrap model again
