"""A service started on an empty store (no import, no dataset folder, no trained model) answers every
route, and fills up through the API: items embed from their content at once, events build users."""

import pytest
import requests

from tests.conftest import serve_app

ITEMS = {
    "tent": ("Two-person tent", ["outdoor", "camping"], "A light tent for two with a waterproof fly sheet."),
    "stove": ("Camping stove", ["outdoor", "camping"], "A compact gas stove for cooking at the campsite."),
    "sleeping-bag": ("Sleeping bag", ["outdoor", "camping"], "A warm down sleeping bag for cold nights in a tent."),
    "novel": ("Crime novel", ["books"], "A detective story set in a rainy northern city."),
    "cookbook": ("Cookbook", ["books", "kitchen"], "Recipes for quick weeknight dinners."),
    "kettle": ("Electric kettle", ["kitchen"], "Boils water for tea in two minutes."),
}


@pytest.fixture(scope="module")
def empty_service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("empty")
    (folder / "no-datasets").mkdir()
    config = folder / "dynrec.yaml"
    config.write_text(
        f"home: {folder / 'home'}\n"
        f"data: {{data_dir: {folder / 'no-datasets'}}}\n"
        f"source: {{uri: {folder / 'nothing-imported'}, name: shop}}\n"
        "model: {dim: 32, max_length: 50}\n"
        "serving: {behaviour_refresh_s: 0.5}\n"
    )
    with serve_app(config) as base:
        yield base


def call(base: str, method: str, path: str, **kwargs) -> requests.Response:
    response = requests.request(method, base + path, timeout=60, **kwargs)
    assert response.status_code < 500, f"{method} {path}: {response.status_code} {response.text}"
    return response


def test_an_empty_service_answers_every_route_then_fills_through_the_api(empty_service):
    base = empty_service
    assert call(base, "GET", "/healthz").json()["status"] == "ok"
    empty = call(base, "POST", "/v1/recommendations", json={"user_id": "u1"}).json()
    assert empty["items"] == [] and "catalogue is empty" in empty["note"]
    assert call(base, "GET", "/v1/users/u1").json()["known"] is False
    assert call(base, "GET", "/v1/items/tent").status_code == 404
    assert call(base, "GET", "/v1/items/tent/similar").status_code == 404
    assert call(base, "GET", "/v1/segments").status_code == 200
    assert call(base, "POST", "/v1/segments/recompute").status_code in (200, 409)
    assert call(base, "GET", "/v1/segments/0").status_code in (200, 404)

    for item_id, (title, categories, text) in ITEMS.items():
        put = call(base, "PUT", f"/v1/items/{item_id}", json={"title": title, "categories": categories, "text": text})
        assert put.status_code == 200 and put.json()["new"] is True
    similar = [i["item_id"] for i in call(base, "GET", "/v1/items/tent/similar?num_results=2").json()["items"]]
    assert set(similar) == {"sleeping-bag", "stove"}  # content alone places the camping gear together

    events = [{"user_id": "u1", "item_id": "tent", "event_type": "view"}, {"user_id": "u1", "item_id": "stove", "event_type": "purchase"}]
    assert call(base, "POST", "/v1/events", json={"events": events}).json()["accepted"] == 2
    ranked = call(base, "POST", "/v1/recommendations", json={"user_id": "u1", "num_results": 3}).json()
    ids = [i["item_id"] for i in ranked["items"]]
    assert len(ids) == 3 and not {"tent", "stove"} & set(ids) and all(i["reason"] for i in ranked["items"])
    assert call(base, "GET", "/v1/users/u1").json()["history_length"] == 2
    newcomer = call(base, "POST", "/v1/recommendations", json={"user_id": "u2", "num_results": 4}).json()
    assert len(newcomer["items"]) == 4 and newcomer["note"] is None  # popularity and content for a new user
    assert call(base, "DELETE", "/v1/users/u1").json()["erased"] is True
