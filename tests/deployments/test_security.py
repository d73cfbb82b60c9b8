"""Over HTTP: API keys, erasure of a user everywhere, and hostile input that must change nothing."""

import base64
from pathlib import Path

import pytest

from tests.deployments.conftest import API_KEY
from tests.deployments.test_api import ids, recommend


def test_writes_need_a_valid_key_and_reads_do_not(service, anonymous):
    event = {"events": [{"user_id": "11", "item_id": "50", "event_type": "view"}]}
    missing = anonymous.post("/v1/events", json=event)
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    wrong = anonymous.post("/v1/events", json=event, headers={"X-API-Key": API_KEY[:-1] + "x"})
    assert wrong.status_code == 401
    bearer = anonymous.post("/v1/events", json=event, headers={"Authorization": f"Bearer {API_KEY}"})
    assert bearer.status_code == 200 and bearer.json()["accepted"] == 1
    assert anonymous.put("/v1/items/keyless", json={"title": "x"}).status_code == 401
    assert anonymous.delete("/v1/users/11").status_code == 401
    assert anonymous.post("/v1/segments/recompute").status_code == 401
    assert anonymous.post("/v1/recommendations", json={"user_id": "11"}).status_code == 200
    assert anonymous.get("/v1/items/50").status_code == 200 and anonymous.get("/healthz").status_code == 200


def test_keys_never_reach_the_logs(service):
    import ray

    service.post("/v1/events", json={"events": [{"user_id": "12", "item_id": "50", "event_type": "view"}]})
    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [p.name for p in logs.rglob("*") if p.is_file() and API_KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_deleting_a_user_erases_state_events_and_segment_membership(service):
    events = [{"user_id": "forget-me", "item_id": i, "event_type": "rating", "value": 5} for i in ("50", "172", "181")]
    shown = recommend(service, "forget-me", num_results=5, exploration={"weight": 0})
    events.append({"user_id": "forget-me", "item_id": shown["items"][0]["item_id"], "event_type": "click",
                   "recommendation_id": shown["recommendation_id"]})
    assert service.post("/v1/events", json={"events": events}).json()["accepted"] == 4
    service.post("/v1/segments/recompute")
    assert service.get("/v1/users/forget-me").json()["known"] is True
    erased = service.delete("/v1/users/forget-me").json()
    assert erased["erased"] and erased["known"] and erased["events_erased"] == 4 and erased["segment_membership_erased"]
    user = service.get("/v1/users/forget-me").json()
    assert user["known"] is False and user["recent"] == []
    cold = recommend(service, "forget-me", num_results=5, exploration={"weight": 0})
    assert all("popular" in item["reason"].lower() for item in cold["items"])
    assert service.delete("/v1/users/forget-me").json()["events_erased"] == 0  # idempotent


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/v1/recommendations", {"user_id": "13", "num_results": 10**30}),
        ("post", "/v1/recommendations", {"user_id": "13", "num_results": "ten"}),
        ("post", "/v1/recommendations", {"user_id": "13'; DROP TABLE item_events; --"}),
        ("post", "/v1/recommendations", {"user_id": "\u202e\U0001f600" * 40}),
        ("post", "/v1/recommendations", {"user_id": "13", "context": {"gender": "F" * 10_000}}),
        ("post", "/v1/events", {"events": [{"user_id": "13", "item_id": "50", "event_type": "view", "timestamp": 10**30}]}),
        ("post", "/v1/events", {"events": [{"user_id": "13", "item_id": "50", "event_type": "view", "value": "high"}]}),
        ("post", "/v1/events", {"events": [{"user_id": "../../etc/passwd", "item_id": "50", "event_type": "view"}]}),
        ("post", "/v1/events", {"events": [{"user_id": "13", "item_id": "50", "event_type": "x" * 10_000}]}),
        ("post", "/v1/events", {"events": "all of them"}),
        ("put", "/v1/items/hostile-item", {"title": "t" * 501}),
        ("put", "/v1/items/hostile-item", {"title": "ok", "categories": "Drama"}),
        ("put", "/v1/items/hostile-item", {"title": "ok", "image": base64.b64encode(b"\x89PNG" + b"\0" * 64).decode()}),
        ("put", "/v1/items/hostile%00item", {"title": "ok"}),
    ],
)
def test_hostile_input_gets_a_clear_4xx_and_changes_nothing(service, method, path, body):
    before = service.get("/v1/users/13").json()
    response = getattr(service, method)(path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]  # a JSON body that says what is wrong
    after = service.get("/v1/users/13").json()
    assert after == before
    assert service.get("/v1/items/hostile-item").status_code == 404


def test_a_ten_megabyte_image_is_refused_before_it_is_read(service):
    body = '{"title": "big", "image": "' + "A" * (10 * 1024 * 1024) + '"}'
    response = service.put("/v1/items/big-image", data=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and service.get("/v1/items/big-image").status_code == 404


def test_a_thousand_events_for_one_user_in_one_batch_are_applied_in_order(service):
    events = [{"user_id": "busy-user", "item_id": str(1 + n % 1000), "event_type": "view", "timestamp": 1_000_000 + n}
              for n in range(1000)]
    response = service.post("/v1/events", json={"events": events})
    assert response.status_code == 200 and response.json() == {"accepted": 1000, "rejected": [], "attributed": []}
    user = service.get("/v1/users/busy-user").json()
    assert [r["item_id"] for r in user["recent"]][:3] == ["1000", "999", "998"]
    assert ids(recommend(service, "busy-user", num_results=10))
