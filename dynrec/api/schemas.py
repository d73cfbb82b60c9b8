"""The v1 HTTP API's request and response bodies (pydantic), with the limits every field obeys."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

ID_PATTERN = r"^[A-Za-z0-9_.:@-]+$"  # user, item and recommendation ids, in bodies and paths alike
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
Category = Annotated[str, Field(min_length=1, max_length=64)]


def _whole_number(value: object) -> object:
    """JSON Schema's integer is a number without a fraction, 2.0 as much as 2: such a float becomes
    an int here; strict validation then refuses everything else (booleans, strings, 2.5)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(**bounds):
    """An integer field of a Strict body, `bounds` (ge, le) on the integer itself: put on the field
    next to a validator, pydantic writes them into the schema as `ge`/`le`, which JSON Schema lacks."""
    return Annotated[int, Field(**bounds), BeforeValidator(_whole_number)]
# base64 (OpenAPI's `format: byte`); what the bytes must be is checked where they are decoded
Base64Image = Annotated[str, WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64",
                                              "contentMediaType": "image/*"})]


class Strict(BaseModel):
    """A request body exactly as its schema says: no unknown fields, and no coercion (a boolean is
    not a number, "5" is not an integer, "true" is not a boolean; JSON integers are numbers)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendationFilters(Strict):
    include_categories: list[Category] = Field(default_factory=list, max_length=50)
    exclude_categories: list[Category] = Field(default_factory=list, max_length=50)
    exclude_item_ids: list[Id] = Field(default_factory=list, max_length=1000)


class ExplorationRequest(Strict):
    """Overrides the service's exploration settings for one request."""

    weight: float | None = Field(None, ge=0, le=1, description="share of slots offered to exploration (0 = off)")
    max_age_days: float | None = Field(None, gt=0, le=36500, description="only items younger than this are explored")


class RecommendationRequest(Strict):
    user_id: Id
    num_results: integer(ge=1, le=500) = 10
    filters: RecommendationFilters = Field(default_factory=RecommendationFilters)
    exclude_seen: bool = True
    context: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)] | int | float | bool] = Field(
        default_factory=dict, max_length=20,
        description="request context; gender, age and occupation here give a new user an attribute prior",
    )
    exploration: ExplorationRequest = Field(default_factory=ExplorationRequest)
    diversity: float | None = Field(
        None, ge=0, le=1,
        description="MMR trade-off over the candidates: 0 = pure relevance, 1 = pure novelty against the "
                    "results picked so far; default: the service's serving.diversity",
    )

    @field_validator("context")
    @classmethod
    def finite_values(cls, context: dict) -> dict:
        for key, value in context.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"context value for '{key}' must be a finite number")
        return context


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str
    title: str | None = None
    explored: bool = Field(False, description="shown to learn its click-through rate (exploration)")


class RecommendationResponse(BaseModel):
    recommendation_id: str
    user_id: str
    model_version: str
    user_model_version: str | None = Field(
        None, description="the model that embedded the user: always model_version, or null for a user ranked as a newcomer")
    user_state_version: int | None = Field(
        None, description="the event-log sequence number of the newest event the user's state reflects (null for an "
                          "unknown user): it changes once an event posted for the user has been applied")
    items: list[RecommendedItem]
    note: str | None = Field(None, description="why the list is empty or short, when it is")


class EventIn(Strict):
    user_id: Id
    item_id: Id
    event_type: str = Field(
        min_length=1, max_length=32, examples=["view"],
        description="one of the model's event types (model.event_types); an event of another type is "
                    "refused on its own, in the response's `rejected`, and the rest are applied",
    )
    timestamp: integer(ge=0, le=32503680000) | None = Field(None, description="unix seconds; default: now")
    value: float | None = Field(None, ge=-1e6, le=1e6, description="e.g. a rating; default 1")
    recommendation_id: str | None = Field(None, max_length=64)

    @field_validator("value")
    @classmethod
    def finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value


class EventsRequest(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000, description="at most serving.max_events_per_request")


class RejectedRow(BaseModel):
    """One row of a batch the service refused, by its index in the request."""

    index: int
    error: str


class EventsResponse(BaseModel):
    accepted: int
    rejected: list[RejectedRow]
    attributed: list[int] = Field(
        default_factory=list,
        description="indexes of the accepted events attributed to the recommendation they name (that list was issued to "
                    "that user and held that item): only these update the exploration bandit")


class ItemIn(Strict):
    title: str = Field(min_length=1, max_length=500)
    text: str = Field("", max_length=20_000)
    categories: list[Category] = Field(default_factory=list, max_length=50)
    attributes: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict, max_length=50
    )
    image: Base64Image | None = Field(
        None,
        description="an image file (JPEG, PNG, ...), base64-encoded (RFC 4648, standard alphabet, padded); "
                    "at most serving.max_image_bytes (5 MB) decoded. Bytes that are not base64, or do not decode "
                    "to an image, are refused (422)",
    )


class ItemBatchEntry(ItemIn):
    item_id: Id


class ItemsBatchRequest(Strict):
    items: list[ItemBatchEntry] = Field(min_length=1, max_length=100, description="at most serving.max_items_per_request")


class ItemsBatchResponse(BaseModel):
    accepted: int
    rejected: list[RejectedRow]


class ItemOut(BaseModel):
    item_id: str
    title: str
    categories: list[str]
    attributes: dict[str, str]
    hidden: bool
    new: bool
    has_image: bool
    model_version: str
    text: str = Field("", description="the item's text as stored (an upload's `text`, an import's description)")


class ItemExploration(BaseModel):
    explorable: bool = Field(description="visible and created within max_age_days: explored slots may show it now")
    max_age_days: float = Field(description="the service's exploration.max_age_days")
    shown: int = Field(description="impressions attributed to a recommendation that held the item")
    clicks: int = Field(description="clicks attributed the same way")


class ItemActivityResponse(BaseModel):
    item_id: str
    bucket: Literal["hour", "day"]
    bucket_s: int = Field(description="seconds in a bucket: 3600 or 86400; buckets are aligned to UTC")
    start: int = Field(description="unix seconds at which the first bucket starts")
    counts: dict[str, list[int]] = Field(
        description="event type -> the item's events in each bucket, oldest first; the last bucket holds its newest "
                    "event (or now, when it has none)")
    totals: dict[str, int] = Field(description="event type -> every logged event of the item")
    first_event: int | None = Field(description="unix seconds of the item's oldest logged event")
    last_event: int | None = Field(description="unix seconds of the item's newest logged event")
    exploration: ItemExploration


class HistoryEntryOut(BaseModel):
    item_id: str
    title: str
    event_type: str
    timestamp: int
    value: float


class InterestOut(BaseModel):
    """One of a user's long-term interests: a cluster of the items they liked (`interests.*`)."""

    label: str = Field(description="its first two top categories and an item of theirs it holds, "
                                   "e.g. \"Sci-Fi & Action, like “Alien (1979)”\"")
    top_categories: list[str] = Field(description="the categories its items carry most, by their weight "
                                                  "(up to interests.top_categories)")
    share: float = Field(ge=0, le=1, description="its share of the user's liked history, each event's weight halving "
                                                 "every interests.half_life_events liked events; a user's shares sum to 1")


class SegmentAssignmentOut(BaseModel):
    segment_id: int | None = Field(description="null before there are segments (too few users)")
    label: str
    version: int | None


class UserOut(BaseModel):
    user_id: str
    known: bool = Field(description="whether the service holds a state for the user (events, or stored attributes)")
    attributes: dict[str, str]
    history_length: int = Field(description="distinct items in the user's history")
    events_since_start: int | None = Field(None, description="events the user's shard received since it started "
                                                             "(null for an unknown user)")
    recent: list[HistoryEntryOut] = Field(description="the newest events first, up to 10")
    embedding_norm: float | None = Field(None, description="the length of the user's embedding (null without events)")
    interests: list[InterestOut] = Field(default_factory=list, description=(
        "the user's long-term interests beside the sequence model's state (up to interests.k), the largest first; "
        "empty for a user without liked events"))
    state_version: int | None = Field(None, description="the event-log sequence number of the newest event the user's "
                                                        "state reflects: it changes once a posted event has been applied")
    segment: SegmentAssignmentOut


class SimilarResponse(BaseModel):
    item_id: str
    items: list[RecommendedItem]


class ErrorResponse(BaseModel):
    error: str
    detail: object | None = None


class SegmentOut(BaseModel):
    version: int | None = None
    segment_id: int
    label: str
    size: int
    top_categories: list[str]
    top_items: list[dict[str, str]]
    terms: list[str]
    attributes: dict[str, str]


class SegmentRecommendationsResponse(BaseModel):
    segment_id: int
    label: str
    version: int = Field(description="the segmentation version the segment belongs to")
    items: list[RecommendedItem]


class SegmentsResponse(BaseModel):
    version: int
    k: int
    silhouette: float
    segments: list[SegmentOut]


class ProjectedUserOut(BaseModel):
    user_id: str
    x: float
    y: float
    segment_id: int | None


class ProjectionResponse(BaseModel):
    version: int = Field(description="the segmentation version the users' segments come from")
    users: list[ProjectedUserOut] = Field(
        description="users on the first two principal components of their segment features")


class RouteStats(BaseModel):
    requests: int
    errors: int = Field(description="answers with status 500 or above")
    per_s: float
    p50_ms: float | None = Field(description="latency, to the upper bound of its histogram bucket (about 29% wide)")
    p99_ms: float | None
    per_second: list[int] = Field(description="requests in each of the window's last seconds, oldest first")


class StoreStatus(BaseModel):
    backend: str
    item_log_seq: int
    event_log_seq: int
    read_ms: float = Field(description="how long reading the store's newest sequence numbers took")
    items: int = Field(description="visible items in the store's item log")
    hidden_items: int


class ShardStatus(BaseModel):
    """One UserState shard (one replica) as the health page shows it."""

    shard: int
    users: int = Field(description="user states the shard holds")
    replayed_on_start: int = Field(description="events replayed after its snapshot when the replica started")
    model_version: str | None = Field(description="the model its users are embedded with")
    item_log_seq: int = Field(description="the item-log position its catalogue has applied")
    event_log_seq: int = Field(description="the event-log position its catalogue has applied")
    item_lag: int = Field(description="item-log entries the store holds past item_log_seq")
    event_lag: int = Field(description="event-log entries the store holds past event_log_seq")


class StatsResponse(BaseModel):
    model_version: str
    window_s: int
    routes: dict[str, RouteStats] = Field(description="this Ingress replica's requests, by method and route")
    users: int = Field(description="user states the UserState shards hold, summed over shards")
    user_shards: list[ShardStatus]
    store: StoreStatus
    sync_interval_s: float = Field(description="Ranker replicas read the store's changes at most this often (0: every request)")
