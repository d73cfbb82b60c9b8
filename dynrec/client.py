"""Python clients for the v1 HTTP API: `Client` (requests) and `AsyncClient` (aiohttp).

One typed method per route, returning the response models of `dynrec.api.schemas` (plain dicts
where the API has none). Calls send the API key as `X-API-Key`, time out after `timeout_s`, and
retry with exponential backoff and jitter, honouring `Retry-After`:

- 429 always: the service refuses before reading the request, so nothing happened;
- 503, connection errors and timeouts only for idempotent calls (reads, PUT, DELETE and
  recommendations): a POSTed event batch may have been applied before the failure, and sending it
  again would count it twice.

Any other failure raises `ApiError`.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

import aiohttp
import requests
from pydantic import BaseModel

from dynrec.api.schemas import (
    EventIn,
    EventsResponse,
    ExplorationRequest,
    ItemBatchEntry,
    ItemIn,
    ItemOut,
    ItemsBatchResponse,
    RecommendationFilters,
    RecommendationRequest,
    RecommendationResponse,
    RejectedRow,
    SegmentOut,
    SegmentsResponse,
    SimilarResponse,
)
from dynrec.config import ServingConfig


class ApiError(Exception):
    """A call that failed for good: `status` is the HTTP status (None when no answer came: a
    connection error or a timeout), `error` and `detail` come from the service's JSON error body."""

    def __init__(self, method: str, path: str, status: int | None, error: str, detail: object = None):
        self.method, self.path, self.status, self.error, self.detail = method, path, status, error, detail
        said = f"{method} {path}: {status or 'no answer'} {error}"
        super().__init__(said if detail is None else f"{said} ({detail})")

    @classmethod
    def from_body(cls, method: str, path: str, status: int, body: bytes) -> ApiError:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "error" in parsed:
            return cls(method, path, status, str(parsed["error"]), parsed.get("detail"))
        return cls(method, path, status, "unexpected response", body[:500].decode(errors="replace") or None)


@dataclass(frozen=True)
class Retries:
    """How persistently a call is retried. `attempts` counts the first try; a `Retry-After` longer
    than `max_retry_after_s` is not waited for (the call fails at once)."""

    attempts: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    max_retry_after_s: float = 60.0

    def wait(self, attempt: int, retryable: bool, retry_after: str | None = None) -> float | None:
        """Seconds to sleep before try `attempt + 1` (0-based), or None to give up."""
        if not retryable or attempt + 1 >= self.attempts:
            return None
        ceiling = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        backoff = random.uniform(ceiling / 2, ceiling)
        asked = _seconds(retry_after)
        if asked is None:
            return backoff
        return max(asked, backoff) if asked <= self.max_retry_after_s else None


def _seconds(retry_after: str | None) -> float | None:
    """`Retry-After` in seconds: either form HTTP allows (delta-seconds or an HTTP date)."""
    if not retry_after:
        return None
    if retry_after.strip().isdigit():
        return float(retry_after)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(retry_after).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _part(identifier: str) -> str:
    """An id as one path segment, whatever characters it holds."""
    return quote(identifier, safe="")


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    idempotent: bool
    model: type[BaseModel] | None = None
    body: Any = None
    params: dict | None = None

    def parse(self, body: bytes) -> Any:
        return self.model.model_validate_json(body) if self.model else json.loads(body)


@dataclass
class _Api:
    """The routes, written once: each method builds a `_Call` and hands it to `_run`, which returns
    the answer in `Client` and an awaitable of it in `AsyncClient`."""

    base: str = "http://127.0.0.1:8000"
    api_key: str | None = field(default=None, repr=False)  # never printed or logged
    timeout_s: float = 30.0
    retries: Retries = field(default_factory=Retries)
    max_events_per_request: int = field(default_factory=lambda: ServingConfig().max_events_per_request)

    def __post_init__(self):
        self.base = self.base.rstrip("/")
        self.headers = {"X-API-Key": self.api_key} if self.api_key else {}

    def _run(self, call: _Call) -> Any:
        raise NotImplementedError

    def healthz(self) -> dict:
        return self._run(_Call("GET", "/healthz", True))

    def recommendations(
        self,
        user_id: str,
        num_results: int | None = None,
        *,
        filters: RecommendationFilters | Mapping | None = None,
        exclude_seen: bool | None = None,
        context: Mapping[str, str | int | float | bool] | None = None,
        exploration: ExplorationRequest | Mapping | None = None,
        diversity: float | None = None,
    ) -> RecommendationResponse:
        """Options left as None take the service's defaults."""
        given = dict(num_results=num_results, filters=filters, exclude_seen=exclude_seen, context=context,
                     exploration=exploration, diversity=diversity)
        request = RecommendationRequest(user_id=user_id, **{k: v for k, v in given.items() if v is not None})
        body = request.model_dump(mode="json", exclude_unset=True)
        return self._run(_Call("POST", "/v1/recommendations", True, RecommendationResponse, body))

    def events(self, events: Sequence[EventIn | Mapping]) -> EventsResponse:
        """One request of at most `max_events_per_request` events; `send_events` takes any number."""
        return self._run(_Call("POST", "/v1/events", False, EventsResponse, {"events": _events(events)}))

    def put_item(
        self,
        item_id: str,
        title: str,
        *,
        text: str = "",
        categories: Sequence[str] = (),
        attributes: Mapping[str, str] | None = None,
        image: bytes | None = None,
    ) -> ItemOut:
        """Adds or replaces an item; `image` is the file's bytes (JPEG, PNG, GIF or WebP)."""
        item = ItemIn(title=title, text=text, categories=list(categories), attributes=dict(attributes or {}),
                      image=base64.b64encode(image).decode() if image is not None else None)
        body = item.model_dump(mode="json", exclude_none=True)
        return self._run(_Call("PUT", f"/v1/items/{_part(item_id)}", True, ItemOut, body))

    def put_items(self, items: Sequence[ItemBatchEntry | Mapping]) -> ItemsBatchResponse:
        """Adds or replaces up to 100 items in one request (`image`: base64, as on the wire); each row
        is accepted or refused on its own. Retried like a PUT: storing an item twice changes nothing."""
        body = {"items": [ItemBatchEntry.model_validate(i).model_dump(mode="json", exclude_none=True) for i in items]}
        return self._run(_Call("POST", "/v1/items/batch", True, ItemsBatchResponse, body))

    def delete_item(self, item_id: str) -> dict:
        return self._run(_Call("DELETE", f"/v1/items/{_part(item_id)}", True))

    def get_item(self, item_id: str) -> ItemOut:
        return self._run(_Call("GET", f"/v1/items/{_part(item_id)}", True, ItemOut))

    def similar(self, item_id: str, num_results: int = 10) -> SimilarResponse:
        params = {"num_results": num_results}
        return self._run(_Call("GET", f"/v1/items/{_part(item_id)}/similar", True, SimilarResponse, params=params))

    def get_user(self, user_id: str) -> dict:
        return self._run(_Call("GET", f"/v1/users/{_part(user_id)}", True))

    def delete_user(self, user_id: str) -> dict:
        return self._run(_Call("DELETE", f"/v1/users/{_part(user_id)}", True))

    def segments(self) -> SegmentsResponse:
        return self._run(_Call("GET", "/v1/segments", True, SegmentsResponse))

    def segment(self, segment_id: int) -> SegmentOut:
        return self._run(_Call("GET", f"/v1/segments/{segment_id}", True, SegmentOut))

    def recompute_segments(self) -> SegmentsResponse:
        return self._run(_Call("POST", "/v1/segments/recompute", False, SegmentsResponse))

    def _batches(self, events: Sequence[EventIn | Mapping]) -> list[tuple[int, Sequence[EventIn | Mapping]]]:
        size = self.max_events_per_request
        return [(start, events[start:start + size]) for start in range(0, len(events), size)]

    def _settle(
        self, call: _Call, attempt: int, status: int, retry_after: str | None, body: bytes
    ) -> tuple[Any, float | None]:
        """(the parsed answer, None) for a 2xx, (None, seconds to wait) for a retry; raises otherwise."""
        if 200 <= status < 300:
            return call.parse(body), None
        wait = self.retries.wait(attempt, status == 429 or (status == 503 and call.idempotent), retry_after)
        if wait is None:
            raise ApiError.from_body(call.method, call.path, status, body)
        return None, wait

    def _unanswered(self, call: _Call, attempt: int, exc: Exception) -> float:
        """Seconds to wait after a connection error or timeout; raises when the call may not retry."""
        wait = self.retries.wait(attempt, call.idempotent)
        if wait is None:
            kind = "timed out" if isinstance(exc, (TimeoutError, requests.Timeout)) else "connection failed"
            raise ApiError(call.method, call.path, None, kind, f"{type(exc).__name__}: {exc}") from exc
        return wait


def _events(events: Iterable[EventIn | Mapping]) -> list[dict]:
    valid = (e if isinstance(e, EventIn) else EventIn.model_validate(e) for e in events)
    return [e.model_dump(mode="json", exclude_none=True) for e in valid]


def _merged(answers: Iterable[tuple[int, EventsResponse]]) -> EventsResponse:
    """One answer for a split batch, with rejected indexes relative to the caller's whole list."""
    accepted, rejected, attributed = 0, [], []
    for start, answer in answers:
        accepted += answer.accepted
        rejected += [RejectedRow(index=start + r.index, error=r.error) for r in answer.rejected]
        attributed += [start + i for i in answer.attributed]
    return EventsResponse(accepted=accepted, rejected=rejected, attributed=attributed)


class Client(_Api):
    """Synchronous client (one `requests.Session`, so connections are reused). `request` and its
    shorthands `get`, `post`, `put` and `delete` make one raw attempt and return the
    `requests.Response` whatever its status, for what the typed methods hide (status codes, bodies)."""

    def __post_init__(self):
        super().__post_init__()
        self.session = requests.Session()
        self.session.headers.update(self.headers)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        return self.session.request(method, self.base + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def send_events(self, events: Sequence[EventIn | Mapping]) -> EventsResponse:
        """Any number of events, in requests of at most `max_events_per_request`, one after
        another so that each user's events apply in order."""
        return _merged((start, self.events(batch)) for start, batch in self._batches(events))

    def _run(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                response = self.request(call.method, call.path, params=call.params, json=call.body)
            except (requests.ConnectionError, requests.Timeout) as exc:
                wait = self._unanswered(call, attempt, exc)
            else:
                retry_after = response.headers.get("Retry-After")
                value, wait = self._settle(call, attempt, response.status_code, retry_after, response.content)
                if wait is None:
                    return value
            time.sleep(wait)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Api):
    """Asynchronous client: the same methods as `Client`, each returning an awaitable of the same
    answer. Use it as `async with AsyncClient(...) as client:` (or `await client.close()`), inside
    the event loop that makes the calls."""

    def __post_init__(self):
        super().__post_init__()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """Made on first use: an aiohttp session belongs to the running event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def send_events(self, events: Sequence[EventIn | Mapping]) -> EventsResponse:
        """As `Client.send_events`: the requests go one after another, never in parallel."""
        return _merged([(start, await self.events(batch)) for start, batch in self._batches(events)])

    async def _run(self, call: _Call) -> Any:
        for attempt in itertools.count():
            try:
                url = self.base + call.path
                async with self.session.request(call.method, url, params=call.params, json=call.body) as response:
                    status, retry_after, body = response.status, response.headers.get("Retry-After"), await response.read()
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                wait = self._unanswered(call, attempt, exc)
            else:
                value, wait = self._settle(call, attempt, status, retry_after, body)
                if wait is None:
                    return value
            await asyncio.sleep(wait)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def wait_until_ok(call: Callable[[], requests.Response], timeout_s: float, every_s: float = 0.5) -> requests.Response:
    """`call()`'s first 2xx response, retried through connection errors and error statuses for up to
    `timeout_s`: HAProxy may still be loading its routes when `serve.run` returns."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = call()
            if response.ok:
                return response
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service did not answer within {timeout_s:g} s")
        time.sleep(every_s)
