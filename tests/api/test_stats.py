"""The Ingress's request metrics: a per-second ring per route, percentiles from fixed buckets,
old seconds dropping out of the window, and the ASGI timer that feeds it."""

import asyncio

import pytest

from dynrec.api.stats import (
    BOUNDS_MS,
    RequestStats,
    RequestTimer,
    RouteNames,
    percentile,
)


def test_counts_rates_and_percentiles_over_the_window():
    stats = RequestStats(horizon_s=60)
    for second in range(1000, 1010):  # 10 s, 10 requests a second: 90 at 2 ms, 10 at 200 ms
        for n in range(10):
            stats.record("POST /v1/events", 200.0 if n == 9 else 2.0, 200, now=second + 0.5)
    stats.record("POST /v1/events", 5.0, 503, now=1009.9)
    summary = stats.summary(window_s=10, now=1010.2, series_s=5)
    events = summary["routes"]["POST /v1/events"]
    assert events["requests"] == 101 and events["errors"] == 1 and events["per_s"] == 10.1
    assert 2.0 <= events["p50_ms"] <= 2.0 * 1.3  # the upper bound of 2 ms's bucket
    assert 200.0 <= events["p99_ms"] <= 200.0 * 1.3
    assert events["per_second"] == [10, 10, 10, 10, 11]


def test_the_current_second_and_seconds_past_the_window_are_left_out():
    stats = RequestStats(horizon_s=30)
    stats.record("GET /healthz", 1.0, 200, now=100.0)
    stats.record("GET /healthz", 1.0, 200, now=105.0)  # the current, partial second
    assert stats.summary(window_s=10, now=105.5)["routes"]["GET /healthz"]["requests"] == 1
    assert stats.summary(window_s=10, now=111.0)["routes"]["GET /healthz"]["requests"] == 1  # 105 only
    # a slot reused a lap later starts from zero: second 130 takes 100's slot (30 s ring)
    stats.record("GET /healthz", 1.0, 200, now=130.0)
    later = stats.summary(window_s=29, now=131.0)["routes"]["GET /healthz"]
    assert later["requests"] == 2 and later["per_second"][-1] == 1


def test_empty_routes_and_percentile_edges():
    assert percentile([0] * (len(BOUNDS_MS) + 1), 0.5) is None
    beyond = [0] * len(BOUNDS_MS) + [3]  # slower than every bound: reported at the largest
    assert percentile(beyond, 0.99) == BOUNDS_MS[-1]
    assert RequestStats().summary(now=10)["routes"] == {}


def test_route_names_use_templates_and_concrete_paths_win():
    names = RouteNames({"/v1/items/{item_id}": {}, "/v1/items/batch": {}, "/v1/segments/projection": {},
                        "/v1/segments/{segment_id}": {}})
    assert names("GET", "/v1/items/42") == "GET /v1/items/{item_id}"
    assert names("POST", "/v1/items/batch") == "POST /v1/items/batch"
    assert names("GET", "/v1/segments/projection") == "GET /v1/segments/projection"
    assert names("GET", "/ui/static/app.js") == "pages"


def test_the_timer_records_each_request_with_its_status():
    stats = RequestStats(clock=lambda: 500.0)

    class App:
        def openapi(self):
            return {"paths": {"/v1/users/{user_id}": {}}}

        async def __call__(self, scope, receive, send):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    app = App()
    timer = RequestTimer(app, stats)
    asyncio.run(timer({"type": "http", "method": "GET", "path": "/v1/users/7", "app": app}, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    stats.clock = lambda: 501.5
    route = stats.summary(window_s=5)["routes"]["GET /v1/users/{user_id}"]
    assert route["requests"] == 1 and route["errors"] == 0 and route["p50_ms"] is not None

    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    timer.app = broken
    with pytest.raises(RuntimeError):
        asyncio.run(timer({"type": "http", "method": "GET", "path": "/v1/users/8", "app": app}, receive, send))
    stats.clock = lambda: 502.5
    assert stats.summary(window_s=5)["routes"]["GET /v1/users/{user_id}"]["errors"] == 1  # no answer: counted as 500
