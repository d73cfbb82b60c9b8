"""HTTP ingress (FastAPI): validates requests, routes users to their UserState shard, and composes
the other deployments through their handles. OpenAPI is served at /docs (Swagger UI) and /redoc,
on assets the service serves itself."""

import asyncio
import re
import time
from dataclasses import asdict
from http import HTTPStatus
from typing import Annotated, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.common import REPLICA_HEALTH_CHECK_PERIOD_S, load_config
from dynrec.api import inspector
from dynrec.api.docs import (
    ASSETS_PATH,
    STATIC_DIR,
    oauth2_redirect_page,
    redoc_page,
    swagger_ui_page,
)
from dynrec.api.schemas import (
    ID_PATTERN,
    Category,
    ErrorResponse,
    EventsRequest,
    EventsResponse,
    Id,
    ItemActivityResponse,
    ItemIn,
    ItemOut,
    ItemsBatchRequest,
    ItemsBatchResponse,
    ProjectionResponse,
    RecommendationRequest,
    RecommendationResponse,
    RecommendedItem,
    RejectedRow,
    SegmentOut,
    SegmentRecommendationsResponse,
    SegmentsResponse,
    ShardStatus,
    SimilarResponse,
    StatsResponse,
    UserOut,
)
from dynrec.api.security import ApiKeys, RateLimiter, bucket_id, presented_key
from dynrec.api.stats import RequestStats, RequestTimer
from dynrec.items.activity import BUCKETS
from dynrec.items.ingest import ItemUpload, Refused, encoded_items, item_upload
from dynrec.users.shards import Event, shard_of

# FastAPI's own /docs and /redoc load their scripts from a CDN: these pages are served below instead
api = FastAPI(title="dynrec", version="1", description="Real-time multimodal recommendations",
              docs_url=None, redoc_url=None)
ERRORS = {status: {"model": ErrorResponse} for status in (401, 404, 413, 422, 429)}
_config = load_config()
_limits = {"max_body_bytes": _config.serving.max_body_bytes}
_keys = ApiKeys.from_config(_config.security)
_rate = RateLimiter(_config.security.rate_per_s, _config.security.burst)


def error(status: int, message: str, detail: object = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "detail": detail}, headers=headers)


def refusal(request: Request) -> JSONResponse | None:
    """Before any parsing: API key (when required), rate limit, body size. The key is never logged."""
    key = presented_key(request.headers)
    if _keys.required(request.method, request.url.path) and not _keys.valid(key):
        return error(401, "a valid API key is required (X-API-Key or Authorization: Bearer)", headers={"WWW-Authenticate": "Bearer"})
    wait = _rate.allow(bucket_id(key if _keys.valid(key) else None, request.client.host if request.client else None))
    if wait:
        return error(429, "rate limit exceeded; retry later", {"retry_after_s": round(wait, 3)},
                     headers={"Retry-After": str(max(1, round(wait)))})
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > _limits["max_body_bytes"]):
        return error(413, f"request body larger than {_limits['max_body_bytes']} bytes")
    return None


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


def method_table(app: FastAPI) -> list[tuple[re.Pattern, frozenset[str]]]:
    """Each route path (as a pattern) with the methods it answers, most specific first: the OpenAPI
    document's paths, then the routes it leaves out (the docs pages, their assets). OpenAPI's rule
    decides between paths: a concrete path (/v1/items/batch) wins over a templated one
    (/v1/items/{item_id}), so only the methods the document lists for a path reach it."""
    rows = []
    for template, operations in app.openapi()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "$")
        rows.append((template.count("{"), pattern, frozenset(m.upper() for m in operations) & HTTP_METHODS))
    for route in app.routes:
        if isinstance(route, Route) and not route.include_in_schema:
            rows.append((0, route.path_regex, frozenset(route.methods or ())))
        elif isinstance(route, Mount):  # static files: GET and HEAD
            rows.append((1, route.path_regex, frozenset({"GET", "HEAD"})))
    return [(pattern, methods) for _, pattern, methods in sorted(rows, key=lambda row: row[0])]


def allow_header(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods | {"OPTIONS"}))


class BodyTooLarge(Exception):
    """Raised from `receive` once a request's body crosses serving.max_body_bytes."""


class Guard:
    """On every HTTP request, as a plain ASGI middleware (Starlette's `@app.middleware` wrapper
    passes each request through extra streams and a task group, which took more CPU than the rest
    of FastAPI's handling of a small request):
    - `refusal`: API key, rate limit, a declared Content-Length over the body limit;
    - methods: OPTIONS answers 204 with `Allow`, a method the path does not take 405 with `Allow`
      (the methods the OpenAPI document lists for it);
    - the body limit on the bytes actually received (a chunked upload declares no length): the
      request is answered 413 as soon as the limit is crossed, and the rest is never read."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self._methods: list[tuple[re.Pattern, frozenset[str]]] | None = None

    def allowed(self, scope: Scope) -> frozenset[str] | None:
        """The methods the request's path answers; None for a path no route has."""
        if self._methods is None:  # routes are complete by the first request, not at construction
            self._methods = method_table(scope.get("app") or api)
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        return next((methods for pattern, methods in self._methods if pattern.match(path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refused = refusal(Request(scope))
        if refused is None:
            methods = self.allowed(scope)
            if methods is not None and scope["method"] == "OPTIONS":
                refused = Response(status_code=204, headers={"Allow": allow_header(methods)})
            elif methods is not None and scope["method"] not in methods:
                refused = error(405, f"method {scope['method']} is not allowed on {scope['path']}", {"allowed": sorted(methods | {"OPTIONS"})},
                                headers={"Allow": allow_header(methods)})
        if refused is not None:
            return await refused(scope, receive, send)
        await self.limited(scope, receive, send)

    async def limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, reading the body through a byte count: crossing the limit raises in the app's
        `receive` (so it stops reading), any answer the app then gives is dropped, and the guard
        answers 413, once. A `receive` after that says the client left, so nothing waits on it."""
        limit, received, over, started = _limits["max_body_bytes"], 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge(f"request body crossed {limit} bytes")
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if over and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not over:
                raise
        if over and not started:
            await error(413, f"request body larger than {limit} bytes")(scope, receive, send)


api.add_middleware(Guard)
REQUEST_STATS = RequestStats(horizon_s=660)
api.add_middleware(RequestTimer, stats=REQUEST_STATS)  # outermost: it times the Guard's answers too


@api.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return error(422, "invalid request", jsonable_encoder(detail))


@api.exception_handler(StarletteHTTPException)
async def framework_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The router's own errors (no route: 404; a method the route does not take: 405) in the
    documented {"error", "detail"} shape, with their headers (Allow)."""
    if exc.status_code == 400:  # FastAPI's one: a body it could not read as JSON (not UTF-8), like any bad JSON
        return error(422, "invalid request", [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}])
    if exc.status_code == 404:
        message = f"not found: {request.method} {request.url.path} (the API is described at /docs)"
    else:
        try:
            message = HTTPStatus(exc.status_code).phrase.lower()
        except ValueError:
            message = "error"
    return error(exc.status_code, message, exc.detail, headers=dict(exc.headers or {}))


@api.exception_handler(Exception)
async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    return error(503, "temporarily unavailable; retry", type(exc).__name__)


api.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="docs-assets")


@api.get("/docs", include_in_schema=False)
async def swagger_ui() -> Response:
    return swagger_ui_page(api.openapi_url, api.title, oauth2_redirect_url="/docs/oauth2-redirect")


@api.get("/docs/oauth2-redirect", include_in_schema=False)
async def swagger_ui_redirect() -> Response:
    return oauth2_redirect_page()


@api.get("/redoc", include_in_schema=False)
async def redoc() -> Response:
    return redoc_page(api.openapi_url, api.title)


api.mount(inspector.ASSETS_PATH, StaticFiles(directory=inspector.UI_DIR), name="ui-assets")


@api.get(inspector.PAGE_PATH, include_in_schema=False)
async def inspector_page() -> Response:
    return inspector.inspector_page()


@serve.deployment(health_check_period_s=REPLICA_HEALTH_CHECK_PERIOD_S, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=200)
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        text_encoder: DeploymentHandle,
        image_encoder: DeploymentHandle,
        fusion: DeploymentHandle,
        ranker: DeploymentHandle,
        segments: DeploymentHandle,
        *user_shards: DeploymentHandle,
    ):
        config = load_config()
        self.config, self.attribute_keys = config.serving, config.cold_start.attributes
        self.text_encoder, self.image_encoder, self.fusion, self.ranker = text_encoder, image_encoder, fusion, ranker
        self.segments = segments
        self.user_shards = user_shards

    def _shard(self, user_id: str) -> DeploymentHandle:
        return self.user_shards[shard_of(user_id, len(self.user_shards))]

    @api.get("/healthz")
    async def healthz(self) -> dict:
        """Answers once the Ranker, the text encoder and every user shard answer: a shard still
        booting (7 s on a fresh ML-1M home) would hold every recommendation sent meanwhile."""
        version, encoders, *shards = await asyncio.gather(
            self.ranker.version.remote(), self.text_encoder.path.remote(), *(s.status.remote() for s in self.user_shards))
        return {"status": "ok", "model_version": version, "user_shards": len(self.user_shards),
                "users": sum(shard["users"] for shard in shards), "encoders": encoders}

    @api.post("/v1/recommendations", response_model=RecommendationResponse, responses=ERRORS)
    async def recommendations(self, body: RecommendationRequest) -> RecommendationResponse:
        attributes = {k: str(v) for k, v in body.context.items() if k in self.attribute_keys}
        view = await self._shard(body.user_id).view.remote(body.user_id, attributes)
        ranked = await self.ranker.recommend.remote(
            view, body.num_results, body.filters.model_dump(), body.exclude_seen, body.exploration.model_dump(exclude_none=True),
            body.diversity,
        )
        return RecommendationResponse(
            recommendation_id=ranked.recommendation_id, user_id=body.user_id, model_version=ranked.model_version,
            user_model_version=ranked.user_model_version, user_state_version=view.state_version,
            items=[RecommendedItem(**asdict(r)) for r in ranked.items], note=ranked.note,
        )

    @api.post("/v1/events", response_model=EventsResponse, responses=ERRORS)
    async def events(self, body: EventsRequest) -> EventsResponse | JSONResponse:
        if len(body.events) > self.config.max_events_per_request:
            return error(413, f"at most {self.config.max_events_per_request} events per request (serving.max_events_per_request)")
        now = int(time.time())
        by_shard: dict[int, list[tuple[int, Event]]] = {}
        for index, event in enumerate(body.events):
            sent = Event(event.user_id, event.item_id, event.event_type, event.timestamp if event.timestamp is not None else now,
                         event.value if event.value is not None else 1.0, event.recommendation_id)
            by_shard.setdefault(shard_of(event.user_id, len(self.user_shards)), []).append((index, sent))
        results = await asyncio.gather(*(self.user_shards[s].apply.remote(rows) for s, rows in by_shard.items()))
        rejected = [RejectedRow(**asdict(r)) for r in sorted((r for shard in results for r in shard.rejected), key=lambda r: r.index)]
        return EventsResponse(accepted=len(body.events) - len(rejected), rejected=rejected,
                              attributed=sorted(i for shard in results for i in shard.attributed))

    async def _ingest(self, uploads: list[ItemUpload]) -> dict[int, Refused]:
        """Encode the uploads' text and images (one batch each, side by side), then fuse and store
        the items in one write; returns the uploads refused, by index."""
        text_call = self.text_encoder.encode.remote([u.text for u in uploads])
        images = [u.image for u in uploads if u.image is not None]
        features, valid = await self.image_encoder.encode.remote(images) if images else (None, None)
        items, refused = encoded_items(uploads, await text_call, features, valid)
        images = {u.item_id: u.image for i, u in enumerate(uploads) if u.image is not None and i not in refused}
        if images:  # before the item: once the item says it has an image, the image is there
            await self.fusion.keep_images.remote(images)
        if items:
            await self.fusion.upsert.remote(items)
        return refused

    @api.put("/v1/items/{item_id}", response_model=ItemOut, responses=ERRORS)
    async def put_item(self, body: ItemIn, item_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN)):
        try:
            refused = await self._ingest([item_upload(item_id, body, self.config.max_image_bytes, int(time.time()))])
        except Refused as refusal:
            refused = {0: refusal}
        if refused:
            return error(refused[0].status, str(refused[0]))
        return asdict(await self.ranker.item.remote(item_id))

    @api.post("/v1/items/batch", response_model=ItemsBatchResponse, responses=ERRORS)
    async def put_items(self, body: ItemsBatchRequest) -> ItemsBatchResponse | JSONResponse:
        """Many items in one request (a back-fill): each row is accepted or refused on its own."""
        if len(body.items) > self.config.max_items_per_request:
            return error(413, f"at most {self.config.max_items_per_request} items per request (serving.max_items_per_request)")
        now, uploads, rows, refused = int(time.time()), [], [], {}
        for index, entry in enumerate(body.items):
            try:
                uploads.append(item_upload(entry.item_id, ItemIn(**entry.model_dump(exclude={"item_id"})),
                                           self.config.max_image_bytes, now))
                rows.append(index)
            except Refused as refusal:
                refused[index] = refusal
        if uploads:
            refused.update({rows[i]: r for i, r in (await self._ingest(uploads)).items()})
        return ItemsBatchResponse(accepted=len(body.items) - len(refused),
                                  rejected=[RejectedRow(index=i, error=str(r)) for i, r in sorted(refused.items())])

    @api.delete("/v1/items/{item_id}", responses=ERRORS)
    async def delete_item(self, item_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN)):
        if await self.ranker.item.remote(item_id) is None:
            return error(404, f"unknown item_id '{item_id}'")
        await self.fusion.hide.remote(item_id)
        return {"item_id": item_id, "hidden": True}

    @api.get("/v1/items/{item_id}", response_model=ItemOut, responses=ERRORS)
    async def get_item(self, item_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN)):
        item = await self.ranker.item.remote(item_id)
        return asdict(item) if item is not None else error(404, f"unknown item_id '{item_id}'")

    @api.get("/v1/items/{item_id}/similar", response_model=SimilarResponse, responses=ERRORS)
    async def similar(
        self,
        item_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN),
        num_results: int = Query(10, ge=1, le=500),
    ):
        items = await self.ranker.similar.remote(item_id, num_results)
        if items is None:
            return error(404, f"unknown or hidden item_id '{item_id}'")
        return SimilarResponse(item_id=item_id, items=[RecommendedItem(**asdict(r)) for r in items])

    @api.get("/v1/items/{item_id}/image", response_class=Response, responses={
        200: {"description": "the image file as uploaded or imported",
              "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in inspector.IMAGE_MEDIA_TYPES}},
        **ERRORS})
    async def item_image(self, item_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN)):
        """The item's image file (the inspector's item page shows it). 404 for an unknown item, one
        without an image, or one imported before the store kept images (`dynrec import` again)."""
        image = await self.ranker.item_image.remote(item_id)
        if image is None:
            return error(404, f"no image kept for item_id '{item_id}' (unknown, or without an image)")
        return Response(image, media_type=inspector.image_media_type(image), headers=inspector.IMAGE_HEADERS)

    @api.get("/v1/items/{item_id}/activity", response_model=ItemActivityResponse, responses=ERRORS)
    async def item_activity(
        self,
        item_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN),
        bucket: Literal["hour", "day"] = Query("day"),
        buckets: int = Query(30, ge=1, le=744),
    ):
        """The item's logged events (impressions, clicks, ratings, views...) per hour or per day, by
        type, over the `buckets` buckets ending with its newest event, their totals, and where the
        item stands with exploration."""
        activity = await self.ranker.item_activity.remote(item_id, BUCKETS[bucket], buckets)
        if activity is None:
            return error(404, f"unknown item_id '{item_id}'")
        series, exploration = activity
        return ItemActivityResponse(bucket=bucket, **asdict(series), exploration=asdict(exploration))

    @api.get("/v1/users/{user_id}", response_model=UserOut, responses=ERRORS)
    async def get_user(self, user_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN)):
        """The user's recent history, attributes, long-term interests (each with a readable label, its
        top categories and its share of the history) and segment."""
        summary, embedding = await self._shard(user_id).describe.remote(user_id)
        described = asdict(summary) if summary is not None else \
            {"user_id": user_id, "known": False, "attributes": {}, "history_length": 0, "recent": [], "interests": []}
        described["segment"] = asdict(await self.segments.assign.remote(user_id, embedding, described["attributes"]))
        return described

    @api.delete("/v1/users/{user_id}", responses=ERRORS)
    async def delete_user(self, user_id: str = Path(min_length=1, max_length=128, pattern=ID_PATTERN)):
        """Erase the user everywhere: state and snapshot, logged events (bandit feedback with
        them), and segment membership."""
        erased = await self._shard(user_id).erase.remote(user_id)
        segment = await self.segments.forget.remote(user_id)
        return {"user_id": user_id, "erased": True, **asdict(erased), "segment_membership_erased": segment}

    @api.get("/v1/segments", response_model=SegmentsResponse, responses=ERRORS)
    async def list_segments(self):
        return await self.segments.summary.remote()

    @api.get("/v1/segments/projection", response_model=ProjectionResponse, responses=ERRORS)
    async def segment_projection(self, limit: int = Query(2000, ge=1, le=20_000)):
        """Users (a seeded sample of `limit` when there are more) on the first two principal
        components of their segment features, each with their segment: the inspector's scatter."""
        version, users = await self.segments.projection.remote(limit)
        return ProjectionResponse(version=version, users=[asdict(u) for u in users])

    @api.get("/v1/stats", response_model=StatsResponse, responses=ERRORS)
    async def stats(self, window_s: int = Query(300, ge=10, le=600)):
        """The inspector's health page: this Ingress replica's requests per route (rate, p50/p99
        latency, per-second counts) over the last `window_s` seconds, the users the shards hold,
        and the state store's position and item count."""
        version, shards, lags, store = await asyncio.gather(
            self.ranker.version.remote(), asyncio.gather(*(shard.status.remote() for shard in self.user_shards)),
            asyncio.gather(*(shard.lag.remote() for shard in self.user_shards)), self.segments.store_status.remote())
        user_shards = [ShardStatus(shard=i, users=s["users"], replayed_on_start=s["replayed_on_start"],
                                   model_version=s.get("model_version"), **lag) for i, (s, lag) in enumerate(zip(shards, lags))]
        return StatsResponse(model_version=version, **REQUEST_STATS.summary(window_s), users=sum(s["users"] for s in shards),
                             user_shards=user_shards, store=store, sync_interval_s=self.config.sync_interval_s)

    @api.get("/v1/segments/{segment_id}", response_model=SegmentOut, responses=ERRORS)
    async def get_segment(self, segment_id: int = Path(ge=0, le=10_000)):
        segment = await self.segments.segment.remote(segment_id)
        return segment if segment is not None else error(404, f"unknown segment {segment_id}")

    @api.get("/v1/segments/{segment_id}/recommendations", response_model=SegmentRecommendationsResponse, responses=ERRORS)
    async def segment_recommendations(
        self,
        segment_id: int = Path(ge=0, le=10_000),
        num_results: int = Query(10, ge=1, le=500),
        include_categories: Annotated[list[Category] | None, Query(max_length=5)] = None,
        exclude_categories: Annotated[list[Category] | None, Query(max_length=5)] = None,
        exclude_item_ids: Annotated[list[Id] | None, Query(max_length=20)] = None,
    ):
        """What suits a segment: items close to its centroid and common among its members, with
        the same filters and exclusions as a user's recommendations. The lists are short so the
        longest URL they allow (percent-encoded) stays within the 16 KB request head HAProxy takes."""
        basis = await self.segments.basis.remote(segment_id)
        if basis is None:
            return error(404, f"unknown segment {segment_id}")
        centroid, popular, label, version = basis
        filters = {"include_categories": include_categories or [], "exclude_categories": exclude_categories or [],
                   "exclude_item_ids": exclude_item_ids or []}
        items = await self.ranker.for_segment.remote(centroid, popular, num_results, filters)
        return SegmentRecommendationsResponse(segment_id=segment_id, label=label, version=version,
                                              items=[RecommendedItem(**asdict(r)) for r in items])

    @api.post("/v1/segments/recompute", response_model=SegmentsResponse, responses=ERRORS)
    async def recompute_segments(self):
        return await self.segments.recompute.remote()
