"""dynrec.client against a tiny real HTTP server that answers from a script: retries on 429 and 503
with backoff and Retry-After, errors, timeouts and split event batches, for both clients."""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dynrec.api.schemas import EventsResponse, ItemOut
from dynrec.client import ApiError, AsyncClient, Client, Retries
from tests.conftest import free_port

ITEM = {"item_id": "50", "title": "Star Wars (1977)", "categories": ["Sci-Fi"], "attributes": {}, "hidden": False,
        "new": False, "has_image": False, "model_version": "m1"}
FAST = Retries(attempts=3, backoff_s=0.01, max_backoff_s=0.05)


class Scripted:
    """Answers request n with `script[n]` (the last entry repeats): (status, headers, body, delay_s),
    or a callable of the request's JSON body giving one. Records (method, path, headers, body)."""

    def __init__(self, script):
        self.script, self.seen = list(script), []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                scripted.seen.append((self.command, self.path, dict(self.headers), body))
                step = scripted.script[min(len(scripted.seen), len(scripted.script)) - 1]
                status, headers, payload, delay_s = step(body) if callable(step) else step
                time.sleep(delay_s)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for key, value in {**headers, "content-type": "application/json", "content-length": str(len(data))}.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up

            do_GET = do_POST = do_PUT = do_DELETE = answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, quiet_s: float = 1.0, within_s: float = 10.0) -> int:
        """Requests received once none has come for `quiet_s`: a client that timed out has not
        waited for the server, which on a loaded machine may read the request later."""
        deadline, seen, since = time.monotonic() + within_s, len(self.seen), time.monotonic()
        while time.monotonic() < deadline and not (seen and time.monotonic() - since >= quiet_s):
            time.sleep(0.05)
            if len(self.seen) != seen:
                seen, since = len(self.seen), time.monotonic()
        return seen


@pytest.fixture
def serve():
    servers = []

    def start(*script):
        servers.append(Scripted(script))
        return servers[-1]

    yield start
    for server in servers:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture(params=["sync", "async"])
def call(request):
    """call(base, method, *args, **client_options): one typed call through `Client` or `AsyncClient`."""

    def sync(base, method, *args, **options):
        with Client(base, **options) as client:
            return getattr(client, method)(*args)

    def in_loop(base, method, *args, **options):
        async def main():
            async with AsyncClient(base, **options) as client:
                return await getattr(client, method)(*args)

        return asyncio.run(main())

    return sync if request.param == "sync" else in_loop


def ok(body):
    return 200, {}, body, 0


def test_429_is_retried_after_the_retry_after_it_names(serve, call):
    server = serve((429, {"Retry-After": "1"}, {"error": "rate limit exceeded; retry later"}, 0), ok(ITEM))
    started = time.monotonic()
    item = call(server.base, "get_item", "50", api_key="k-123", retries=FAST)
    assert isinstance(item, ItemOut) and item.title == "Star Wars (1977)"
    assert time.monotonic() - started >= 1.0
    assert [(m, p) for m, p, _, _ in server.seen] == [("GET", "/v1/items/50")] * 2
    assert all(headers["X-API-Key"] == "k-123" for _, _, headers, _ in server.seen)


def test_429_is_retried_even_for_writes_because_nothing_was_done(serve, call):
    server = serve((429, {"Retry-After": "0"}, {"error": "rate limit exceeded"}, 0), ok({"accepted": 1, "rejected": []}))
    answer = call(server.base, "events", [{"user_id": "1", "item_id": "50", "event_type": "view"}], retries=FAST)
    assert answer == EventsResponse(accepted=1, rejected=[]) and len(server.seen) == 2


def test_503_is_retried_for_idempotent_calls_only(serve, call):
    unavailable = (503, {}, {"error": "temporarily unavailable; retry", "detail": "RayActorError"}, 0)
    server = serve(unavailable, ok({"user_id": "7", "known": True}))
    assert call(server.base, "get_user", "7", retries=FAST) == {"user_id": "7", "known": True}
    assert len(server.seen) == 2

    server = serve(unavailable, ok({"accepted": 1, "rejected": []}))
    with pytest.raises(ApiError) as raised:
        call(server.base, "events", [{"user_id": "1", "item_id": "50", "event_type": "view"}], retries=FAST)
    assert raised.value.status == 503 and raised.value.detail == "RayActorError"
    assert len(server.seen) == 1  # the batch may have been applied: never sent twice


def test_attempts_are_bounded_and_backoff_grows(serve, call):
    server = serve((503, {}, {"error": "temporarily unavailable; retry"}, 0))
    with pytest.raises(ApiError) as raised:
        call(server.base, "healthz", retries=Retries(attempts=4, backoff_s=0.01, max_backoff_s=1))
    assert raised.value.status == 503 and len(server.seen) == 4

    retries = Retries(attempts=10, backoff_s=0.1, max_backoff_s=1.0)
    assert 0.05 <= retries.wait(0, True) <= 0.1
    assert 0.4 <= retries.wait(3, True) <= 0.8
    assert 0.5 <= retries.wait(8, True) <= 1.0
    assert retries.wait(9, True) is None and retries.wait(0, False) is None


def test_a_retry_after_too_long_to_wait_for_fails_at_once(serve, call):
    server = serve((429, {"Retry-After": "3600"}, {"error": "rate limit exceeded"}, 0), ok(ITEM))
    with pytest.raises(ApiError) as raised:
        call(server.base, "get_item", "50", retries=Retries(max_retry_after_s=10))
    assert raised.value.status == 429 and len(server.seen) == 1


def test_retry_after_as_an_http_date():
    in_two_seconds = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
    assert 0.9 <= Retries(attempts=2, backoff_s=0.01).wait(0, True, in_two_seconds) <= 2.0


def test_a_4xx_raises_api_error_with_the_services_error_and_detail(serve, call):
    detail = [{"loc": ["body", "num_results"], "msg": "Input should be greater than or equal to 1", "type": "greater_than_equal"}]
    server = serve((422, {}, {"error": "invalid request", "detail": detail}, 0))
    with pytest.raises(ApiError) as raised:
        call(server.base, "recommendations", "7", retries=FAST)
    error = raised.value
    assert (error.status, error.error, error.detail) == (422, "invalid request", detail)
    assert "POST /v1/recommendations: 422 invalid request" in str(error) and len(server.seen) == 1


def test_a_timeout_is_retried_when_idempotent_and_then_raised(serve, call):
    server = serve((200, {}, ITEM, 1.5))
    with pytest.raises(ApiError) as raised:
        call(server.base, "get_item", "50", timeout_s=0.3, retries=Retries(attempts=2, backoff_s=0.01))
    assert raised.value.status is None and raised.value.error == "timed out"
    assert server.count() == 2

    server = serve((200, {}, {"accepted": 1, "rejected": []}, 1.5))
    with pytest.raises(ApiError):
        call(server.base, "events", [{"user_id": "1", "item_id": "50", "event_type": "view"}], timeout_s=0.3, retries=FAST)
    assert server.count() == 1


def test_connection_errors_raise_after_the_retries(call):
    started = time.monotonic()
    with pytest.raises(ApiError) as raised:
        call(f"http://127.0.0.1:{free_port()}", "healthz", retries=FAST)
    assert raised.value.status is None and raised.value.error == "connection failed"
    assert time.monotonic() - started < 5


def test_requests_carry_what_the_service_expects(serve, call):
    server = serve(ok({"recommendation_id": "r", "user_id": "7", "model_version": "m1",
                       "items": [{"item_id": "50", "score": 0.5, "reason": "because", "title": "Star Wars (1977)"}]}))
    answer = call(server.base, "recommendations", "7", 5, retries=FAST)
    assert answer.items[0].item_id == "50" and answer.items[0].explored is False
    assert server.seen[0][3] == {"user_id": "7", "num_results": 5}  # unset options keep the service's defaults

    server = serve(ok(ITEM))
    call(server.base, "put_item", "new-1", "A title", retries=FAST)
    assert server.seen[0][:2] == ("PUT", "/v1/items/new-1")
    assert server.seen[0][3] == {"title": "A title", "text": "", "categories": [], "attributes": {}}

    server = serve(ok({"user_id": "../items/1"}))
    call(server.base, "get_user", "../items/1", retries=FAST)
    assert server.seen[0][1] == "/v1/users/..%2Fitems%2F1"  # an id stays one path segment


def test_the_api_key_is_never_printed():
    assert "k-123" not in repr(Client(api_key="k-123")) + repr(AsyncClient(api_key="k-123"))


def test_send_events_splits_a_long_list_and_reports_indexes_of_the_whole_list(serve, call):
    def answer(body):
        rejected = [{"index": i, "error": "unknown item_id"} for i, e in enumerate(body["events"]) if e["item_id"] == "bad"]
        return ok({"accepted": len(body["events"]) - len(rejected), "rejected": rejected})

    server = serve(answer)
    events = [{"user_id": "1", "item_id": "bad" if i in (1, 4) else str(i), "event_type": "view"} for i in range(5)]
    merged = call(server.base, "send_events", events, max_events_per_request=2, retries=FAST)
    assert [len(body["events"]) for _, _, _, body in server.seen] == [2, 2, 1]
    assert [e["item_id"] for _, _, _, body in server.seen for e in body["events"]] == [e["item_id"] for e in events]
    assert merged.accepted == 3 and [r.index for r in merged.rejected] == [1, 4]
