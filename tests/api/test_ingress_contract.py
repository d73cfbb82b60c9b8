"""The Ingress's HTTP contract in-process, with no Ray: FastAPI's TestClient against the app object,
the deployments behind it replaced by fakes. Framework errors in the documented shape, `Allow` on
405 and OPTIONS, the body limit on the bytes received, exact types, and docs pages whose assets
the service serves itself."""

import asyncio
import base64
import json
import re

import pytest
from fastapi.testclient import TestClient

import deployments.ingress as ingress
from dynrec.api.schemas import EventIn, ExplorationRequest, ItemIn, RecommendationRequest
from dynrec.api.security import ApiKeys, RateLimiter
from dynrec.users.shards import Applied, checked_events


class FakeHandle:
    """A DeploymentHandle whose methods answer from `answers` (name -> function of the call's
    arguments) and record their calls."""

    def __init__(self, **answers):
        self.answers, self.calls = answers, []

    def __getattr__(self, name):
        handle = self

        class Method:
            def remote(self, *args):
                handle.calls.append((name, args))

                async def answer():
                    return handle.answers[name](*args)

                return answer()

        return Method()


class Servable(ingress.Ingress.func_or_class):
    """The Ingress's own methods on an object built without Serve (nothing to tear down)."""

    def __del__(self):
        pass


class Context:
    def __init__(self, servable):
        self.servable_object = servable


@pytest.fixture
def shard():
    return FakeHandle(apply=lambda rows: Applied([], []), status=lambda: {"users": 7, "replayed_on_start": 0, "model_version": "v-test"})


@pytest.fixture
def client(monkeypatch, shard):
    """The app with an Ingress whose handles are fakes, open (no keys), no rate limit."""
    servable = object.__new__(Servable)
    servable.config = ingress.load_config().serving
    servable.attribute_keys = ()
    servable.image_encoder = servable.fusion = servable.segments = FakeHandle()
    servable.text_encoder = FakeHandle(path=lambda: "text=onnx-fp32 image=onnx-fp32 (cpu amx, precision=fp32)")
    servable.ranker = FakeHandle(version=lambda: "v-test")
    servable.user_shards = (shard,)
    monkeypatch.setattr("ray.serve.get_replica_context", lambda: Context(servable))
    monkeypatch.setattr(ingress, "_keys", ApiKeys([]))
    monkeypatch.setattr(ingress, "_rate", RateLimiter(1e9, 10**9))
    with TestClient(ingress.api, raise_server_exceptions=False) as test_client:
        yield test_client


def event(**fields):
    return {"events": [{"user_id": "u1", "item_id": "i1", "event_type": "view", **fields}]}


def documented_methods(client, path):
    return {m.upper() for m in client.get("/openapi.json").json()["paths"][path]}


# framework errors ------------------------------------------------------------------------------


def test_the_fake_service_answers(client):
    health = client.get("/healthz").json()
    assert health["model_version"] == "v-test" and health["encoders"].startswith("text=")
    assert health["users"] == 7  # the user shards answered too


def test_an_unknown_route_answers_404_in_the_error_shape(client):
    response = client.get("/v1/no-such-route")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"error", "detail"} and "/v1/no-such-route" in body["error"]


@pytest.mark.parametrize("method, path, template", [
    ("GET", "/v1/events", "/v1/events"),
    ("POST", "/v1/items/abc", "/v1/items/{item_id}"),
    ("PATCH", "/v1/users/u1", "/v1/users/{user_id}"),
    ("PUT", "/v1/segments/3", "/v1/segments/{segment_id}"),
    ("DELETE", "/healthz", "/healthz"),
])
def test_a_method_the_route_does_not_take_answers_405_with_every_documented_method(client, method, path, template):
    response = client.request(method, path)
    assert response.status_code == 405
    assert set(response.json()) == {"error", "detail"} and method in response.json()["error"]
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == documented_methods(client, template) | {"OPTIONS"}


@pytest.mark.parametrize("path, template", [
    ("/v1/items/abc", "/v1/items/{item_id}"),  # three routes share this path: all three are allowed
    ("/v1/events", "/v1/events"),
    ("/v1/recommendations", "/v1/recommendations"),
    ("/v1/segments/recompute", "/v1/segments/recompute"),
])
def test_options_answers_204_with_the_paths_methods(client, path, template):
    response = client.options(path)
    assert response.status_code == 204 and response.content == b""
    allowed = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed == documented_methods(client, template) | {"OPTIONS"}


def test_a_concrete_path_takes_only_its_own_methods(client):
    """OpenAPI matches /v1/items/batch before /v1/items/{item_id}: it documents only POST there, so
    GET, PUT and DELETE of an item called 'batch' are not routes either."""
    assert client.options("/v1/items/batch").headers["allow"] == "OPTIONS, POST"
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, "/v1/items/batch", json={"title": "x"})
        assert response.status_code == 405 and response.headers["allow"] == "OPTIONS, POST"


@pytest.mark.parametrize("body", [b"\xc3", b"\xff\xfe", b"{not json"])
def test_a_body_that_is_not_json_is_a_422_like_any_malformed_body(client, body):
    response = client.post("/v1/items/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "invalid request"


def test_options_on_an_unknown_path_is_404(client):
    assert client.options("/v1/nothing-here").status_code == 404


# the body limit --------------------------------------------------------------------------------


def call_with_chunks(app, path: str, chunks: int, chunk_bytes: int, headers=()):
    """Drives the ASGI app directly with a chunked upload (no Content-Length): returns how many
    chunks the app pulled and what it sent."""
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > chunks:
            raise AssertionError("the app read past the end of the body")
        return {"type": "http.request", "body": b" " * chunk_bytes, "more_body": pulled < chunks}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked"), *headers],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=30))
    return pulled, sent


def test_a_chunked_body_over_the_limit_gets_413_as_soon_as_it_crosses(client, monkeypatch, shard):
    monkeypatch.setitem(ingress._limits, "max_body_bytes", 10_000)
    pulled, sent = call_with_chunks(ingress.api, "/v1/events", chunks=100, chunk_bytes=1000)
    assert pulled == 11  # the chunk that crossed 10,000 bytes, and not one more
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1 and starts[0]["status"] == 413  # one answer, the guard's
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert set(body) == {"error", "detail"} and "10000" in body["error"]
    assert shard.calls == []


def test_a_chunked_body_under_the_limit_is_read_whole(client, monkeypatch, shard):
    monkeypatch.setitem(ingress._limits, "max_body_bytes", 10_000)
    pulled, sent = call_with_chunks(ingress.api, "/v1/events", chunks=9, chunk_bytes=1000)
    assert pulled == 9 and sent[0]["status"] == 422  # read to the end: 9,000 spaces are not JSON


def test_a_declared_length_over_the_limit_is_refused_before_reading(client, monkeypatch):
    monkeypatch.setitem(ingress._limits, "max_body_bytes", 10_000)
    pulled, sent = call_with_chunks(ingress.api, "/v1/events", chunks=20, chunk_bytes=1000,
                                    headers=[(b"content-length", b"20000")])
    assert pulled == 0 and sent[0]["status"] == 413
    response = client.post("/v1/events", content=b" " * 10_001, headers={"content-type": "application/json"})
    assert response.status_code == 413 and set(response.json()) == {"error", "detail"}


def test_a_streamed_upload_over_the_limit_gets_413_through_the_client(client, monkeypatch):
    monkeypatch.setitem(ingress._limits, "max_body_bytes", 10_000)
    response = client.post("/v1/events", content=(b" " * 1000 for _ in range(50)),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413


# exact types -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    event(value=False),
    event(value=True),
    event(value="1.5"),
    event(timestamp=True),
    event(timestamp="1700000000"),
])
def test_events_take_numbers_not_booleans_or_strings(client, body, shard):
    response = client.post("/v1/events", json=body)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"} and shard.calls == []


@pytest.mark.parametrize("body", [
    {"user_id": "u1", "exploration": {"weight": False}},
    {"user_id": "u1", "exploration": {"max_age_days": True}},
    {"user_id": "u1", "diversity": False},
    {"user_id": "u1", "num_results": True},
    {"user_id": "u1", "num_results": "10"},
    {"user_id": "u1", "exclude_seen": "false"},
])
def test_recommendation_requests_take_exact_types(client, body):
    response = client.post("/v1/recommendations", json=body)
    assert response.status_code == 422, response.text


def test_json_integers_are_still_numbers(client, shard):
    response = client.post("/v1/events", json=event(value=5, timestamp=1_700_000_000))
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "rejected": [], "attributed": []}
    [(_, (rows,))] = shard.calls
    assert rows[0][1].value == 5.0
    assert ExplorationRequest.model_validate({"weight": 1}).weight == 1.0
    assert RecommendationRequest.model_validate({"user_id": "u", "diversity": 0, "context": {"age": 25, "x": True}}).diversity == 0


def test_a_whole_number_written_with_a_fraction_is_an_integer(client, shard):
    """JSON Schema's integer takes 1700000000.0 as it takes 1700000000; 1.5 is not one."""
    assert client.post("/v1/events", json=event(timestamp=1_700_000_000.0)).status_code == 200
    [(_, (rows,))] = shard.calls
    assert rows[0][1].timestamp == 1_700_000_000 and isinstance(rows[0][1].timestamp, int)
    assert client.post("/v1/events", json=event(timestamp=1.5)).status_code == 422
    assert RecommendationRequest.model_validate({"user_id": "u", "num_results": 52.0}).num_results == 52


def test_limits_the_validators_enforce_are_in_the_schema(client):
    """What a validator refuses, the schema says (schemathesis sends what the schema allows)."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    value = schemas["EventIn"]["properties"]["value"]["anyOf"][0]
    assert value["minimum"] == -1e6 and value["maximum"] == 1e6
    assert client.post("/v1/events", json=event(value=1e6 + 1)).status_code == 422
    context = schemas["RecommendationRequest"]["properties"]["context"]["additionalProperties"]["anyOf"]
    assert {"type": "string", "maxLength": 256} in context


def test_bounds_are_written_in_json_schema_words(client):
    """`minimum`/`maximum`, never pydantic's `ge`/`le`, which schema tools ignore (they then send
    a negative timestamp as schema-valid)."""
    def keywords(node, found):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    for child in value.values():
                        keywords(child, found)
                    continue
                found.add(key)
                keywords(value, found)
        elif isinstance(node, list):
            for child in node:
                keywords(child, found)
        return found

    document = client.get("/openapi.json").json()
    assert not keywords(document, set()) & {"ge", "le", "gt", "lt"}
    timestamp = document["components"]["schemas"]["EventIn"]["properties"]["timestamp"]["anyOf"][0]
    assert timestamp["minimum"] == 0 and timestamp["type"] == "integer"


def test_an_event_type_outside_the_vocabulary_is_schema_valid_and_refused_on_its_own_row(client, shard):
    """The schema takes any short event type and says what happens to one outside the model's
    vocabulary: the shard refuses that row in `rejected`; the request is not refused."""
    vocabulary = ingress._config.model.event_types
    shard.answers["apply"] = lambda rows: Applied(checked_events(rows, lambda item_id: True, vocabulary)[1], [])
    body = {"events": [{"user_id": "u1", "item_id": "i1", "event_type": "teleport"},
                       {"user_id": "u1", "item_id": "i1", "event_type": "view"}]}
    response = client.post("/v1/events", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1 and [r["index"] for r in response.json()["rejected"]] == [0]
    event_type = client.get("/openapi.json").json()["components"]["schemas"]["EventIn"]["properties"]["event_type"]
    assert event_type["type"] == "string" and "enum" not in event_type
    assert "rejected" in event_type["description"] and "model.event_types" in event_type["description"]


def test_the_item_image_is_documented_as_base64():
    schemas = ingress.api.openapi()["components"]["schemas"]
    for model in ("ItemIn", "ItemBatchEntry"):
        image = schemas[model]["properties"]["image"]
        assert {"type": "string", "format": "byte"}.items() <= image["anyOf"][0].items(), image
    with pytest.raises(ValueError):
        ItemIn.model_validate({"title": "x", "image": 12})
    assert ItemIn.model_validate({"title": "x", "image": base64.b64encode(b"png").decode()}).image == "cG5n"


def test_models_reject_booleans_where_numbers_are_expected():
    with pytest.raises(ValueError):
        EventIn.model_validate({"user_id": "u", "item_id": "i", "event_type": "view", "value": False})
    with pytest.raises(ValueError):
        ExplorationRequest.model_validate({"weight": False})


# offline docs ----------------------------------------------------------------------------------


def local_assets(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"""url:\s*'([^']+)'""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_another_host(client, page):
    response = client.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    html = response.text
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html), "a page refers to another host"
    assets = [url for url in local_assets(html) if url.startswith("/docs/assets/")]
    assert len(assets) >= (3 if page == "/docs" else 2), html
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 0, url


def test_docs_assets_are_served_with_their_types(client):
    assert client.get("/docs/assets/swagger-ui/swagger-ui-bundle.js").headers["content-type"].startswith(
        ("application/javascript", "text/javascript"))
    assert client.get("/docs/assets/swagger-ui/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/redoc/redoc.standalone.js").status_code == 200
    assert client.get("/docs/assets/swagger-ui/LICENSE").status_code == 200
    missing = client.get("/docs/assets/nothing.js")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}


def test_docs_and_their_assets_stay_open_when_reads_need_a_key(client, monkeypatch):
    monkeypatch.setattr(ingress, "_keys", ApiKeys(["k"], protect_reads=True))
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/assets/swagger-ui/swagger-ui.css",
                 "/docs/assets/redoc/redoc.standalone.js", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/segments").status_code == 401
