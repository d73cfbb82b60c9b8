"""The Ingress's own request metrics for `GET /v1/stats`: per route, how many requests each
second and how long they took, over the last few minutes, kept in memory.

A ring of one slot per second per route. Each slot holds the second it belongs to, a request
count, an error count (status >= 500) and a latency histogram over fixed log-spaced bounds, so
recording a request is O(1) (a bisect over ~50 bounds) and a percentile over any window is read
from the summed histograms. A slot whose second has passed is reset when it is reused, so memory
is fixed: routes x seconds x bounds integers. The numbers are this Ingress replica's.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# histogram upper bounds in milliseconds: 0.25 ms to ~65 s, each ~29% above the previous
BOUNDS_MS: tuple[float, ...] = tuple(0.25 * 2 ** (i / 2.7) for i in range(50))


@dataclass
class _Slot:
    second: int = -1
    count: int = 0
    errors: int = 0
    histogram: list[int] = field(default_factory=list)  # allocated when the slot is first used

    def reset(self, second: int) -> None:
        self.second, self.count, self.errors = second, 0, 0
        self.histogram = [0] * (len(BOUNDS_MS) + 1)


def percentile(histogram: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram over BOUNDS_MS, as the upper bound of the bucket that
    holds it (the last bucket, past every bound, reports the largest bound); None when empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return BOUNDS_MS[min(index, len(BOUNDS_MS) - 1)]
    return BOUNDS_MS[-1]


class RequestStats:
    def __init__(self, horizon_s: int = 600, max_routes: int = 64, clock=time.time):
        self.horizon_s, self.max_routes, self.clock = horizon_s, max_routes, clock
        self._routes: dict[str, list[_Slot]] = {}
        self._lock = threading.Lock()  # held for one slot update; the Ingress's loop is its only writer

    def record(self, route: str, latency_ms: float, status: int, now: float | None = None) -> None:
        second = int(self.clock() if now is None else now)
        ring = self._routes.get(route)
        if ring is None:
            if len(self._routes) >= self.max_routes:
                route, ring = "other", self._routes.get("other")
            if ring is None:
                ring = self._routes.setdefault(route, [_Slot() for _ in range(self.horizon_s)])
        bucket = bisect.bisect_left(BOUNDS_MS, latency_ms)
        with self._lock:
            slot = ring[second % self.horizon_s]
            if slot.second != second:
                slot.reset(second)
            slot.count += 1
            slot.errors += status >= 500
            slot.histogram[bucket] += 1

    def summary(self, window_s: int = 300, now: float | None = None, series_s: int = 120) -> dict:
        """Per route over the last `window_s` whole seconds (the current, partial one left out):
        requests, errors, rate per second, p50/p99 latency in ms, and the per-second counts of the
        last `series_s` seconds, oldest first."""
        window_s = max(1, min(window_s, self.horizon_s - 1))
        series_s = max(1, min(series_s, window_s))
        current = int(self.clock() if now is None else now)
        first = current - window_s
        routes = {}
        for route, ring in list(self._routes.items()):
            histogram, count, errors = [0] * (len(BOUNDS_MS) + 1), 0, 0
            series = [0] * series_s
            with self._lock:
                slots = [(s.second, s.count, s.errors, list(s.histogram)) for s in ring if first <= s.second < current]
            for second, n, bad, counts in slots:
                count, errors = count + n, errors + bad
                histogram = [a + b for a, b in zip(histogram, counts)]
                if second >= current - series_s:
                    series[second - (current - series_s)] = n
            routes[route] = {
                "requests": count, "errors": errors, "per_s": round(count / window_s, 3),
                "p50_ms": percentile(histogram, 0.50), "p99_ms": percentile(histogram, 0.99),
                "per_second": series,
            }
        return {"window_s": window_s, "routes": routes}


class RouteNames:
    """A request's route as its OpenAPI template ("POST /v1/users/{user_id}"), so metrics are kept
    per route, not per id; paths outside the document (pages, assets) are "pages"."""

    def __init__(self, templates: dict[str, frozenset[str]]):
        self._patterns = sorted(
            ((t.count("{"), re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(t)) + "$"), t) for t in templates),
            key=lambda row: row[0])

    def __call__(self, method: str, path: str) -> str:
        for _, pattern, template in self._patterns:
            if pattern.match(path):
                return f"{method} {template}"
        return "pages"


class RequestTimer:
    """Plain ASGI middleware: times every HTTP request, start to the end of its response, into a
    RequestStats under its route's name (answers the Guard gives, 401/405/413/429, included)."""

    def __init__(self, app: ASGIApp, stats: RequestStats):
        self.app, self.stats = app, stats
        self._names: RouteNames | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if self._names is None:
                app = scope.get("app")
                self._names = RouteNames(app.openapi()["paths"] if app is not None else {})
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):] or "/"
            self.stats.record(self._names(scope["method"], path),
                              (time.perf_counter() - started) * 1000, status)
