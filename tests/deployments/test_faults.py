"""A UserState replica killed mid-traffic: Serve replaces it, it recovers from its snapshot and the
log, and no acknowledged event is lost (a small version of bench/faults.py)."""

import time

import ray


def kill_one_replica(deployment: str) -> None:
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith(f"SERVE_REPLICA::dynrec#{deployment}#")]
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)


def test_no_acknowledged_event_is_lost_when_a_user_shard_dies(service):
    acked = []
    for n in range(6):
        user, item = f"survivor-{n}", str(100 + n)
        response = service.post("/v1/events", json={"events": [{"user_id": user, "item_id": item, "event_type": "view"}]})
        assert response.json()["accepted"] == 1
        acked.append((user, item))
    kill_one_replica("UserState0")
    kill_one_replica("UserState1")
    deadline = time.monotonic() + 240
    failures = 0
    while time.monotonic() < deadline:  # writes during the outage either fail or are acknowledged
        response = service.post("/v1/events", json={"events": [{"user_id": "survivor-late", "item_id": "7", "event_type": "view"}]})
        if response.status_code == 200 and response.json()["accepted"] == 1:
            acked.append(("survivor-late", "7"))
            break
        failures += 1
        time.sleep(1)
    assert acked[-1] == ("survivor-late", "7"), "the shard did not come back"
    for user, item in acked:
        recent = [r["item_id"] for r in service.get(f"/v1/users/{user}").json()["recent"]]
        assert item in recent, f"acknowledged event of {user} lost"
