"""The /ui inspector: shipped in the package, loading nothing from elsewhere, open without a key
like the docs pages while the data it reads stays behind the key wherever reads are protected;
the item page's image and activity routes and the health page's shard lag, in-process against
fake deployments (tests/deployments/test_inspector.py drives them for real)."""

import io
import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import deployments.ingress as ingress
from dynrec.api.inspector import CONTENT_SECURITY_POLICY, IMAGE_MEDIA_TYPES, UI_DIR, image_media_type
from dynrec.api.security import ApiKeys, RateLimiter
from dynrec.items.activity import ActivitySeries, ExplorationStatus
from tests.api.test_ingress_contract import Context, FakeHandle, Servable

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_is_package_data_and_names_no_other_host():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dynrec.api"]
    shipped = {p for pattern in globs for p in UI_DIR.parent.glob(pattern) if p.is_file()}
    files = {p for p in UI_DIR.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "style.css"} <= {p.name for p in files} and files <= shipped
    for path in files:
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text().replace("http://www.w3.org/2000/svg", "")), path
    assert "console." not in (UI_DIR / "app.js").read_text()  # nothing logged, the key least of all
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "default-src 'self'" in CONTENT_SECURITY_POLICY


def test_the_page_and_its_assets_are_open_and_its_data_is_not():
    keys = ApiKeys(["k"], protect_reads=True)
    assert not keys.required("GET", "/ui")
    assert not keys.required("GET", "/ui/static/app.js")
    for path in ("/v1/users/1", "/v1/stats", "/v1/segments/projection", "/v1/segments", "/v1/items/1", "/v1/items/1/image",
                 "/v1/items/1/activity", "/ui/../v1/stats", "/uiv1", "/ui/other"):
        assert keys.required("GET", path), path
    assert keys.required("POST", "/v1/events")
    assert not ApiKeys(["k"], protect_reads=False).required("GET", "/v1/stats")


def image_file(kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 120, 200)).save(buffer, format=kind)
    return buffer.getvalue()


@pytest.mark.parametrize("kind, media", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"),
                                         ("WEBP", "image/webp"), ("BMP", "image/bmp"), ("TIFF", "image/tiff")])
def test_an_images_media_type_comes_from_its_bytes(kind, media):
    assert image_media_type(image_file(kind)) == media and media in IMAGE_MEDIA_TYPES
    assert image_media_type(b"<svg xmlns='http://www.w3.org/2000/svg'/>") == "application/octet-stream"
    assert image_media_type(b"RIFF\x00\x00\x00\x00WAVE") == "application/octet-stream"


SERIES = ActivitySeries("film", 86400, 1_699_920_000, {"rating": [0, 2], "click": [1, 0]}, {"rating": 5, "click": 1},
                        1_600_000_000, 1_700_010_000)
EXPLORATION = ExplorationStatus(True, 30.0, 4, 1)


@pytest.fixture
def served(monkeypatch):
    """The app with fake deployments: a Ranker that knows the item "film" (with a PNG), two shards."""
    poster = image_file("PNG")
    servable = object.__new__(Servable)
    servable.config = ingress.load_config().serving
    servable.ranker = FakeHandle(
        item_image=lambda item_id: poster if item_id == "film" else None,
        item_activity=lambda item_id, bucket_s, buckets: (SERIES, EXPLORATION) if item_id == "film" else None,
        version=lambda: "v-test")
    servable.segments = FakeHandle(store_status=lambda: {"backend": "sqlite", "item_log_seq": 9, "event_log_seq": 120,
                                                         "read_ms": 0.1, "items": 8, "hidden_items": 1})
    servable.user_shards = tuple(FakeHandle(
        status=lambda users=users: {"users": users, "replayed_on_start": 0, "model_version": "v-test"},
        lag=lambda applied=applied: {"item_log_seq": 9, "event_log_seq": applied, "item_lag": 0, "event_lag": 120 - applied})
        for users, applied in ((5, 120), (7, 117)))
    monkeypatch.setattr("ray.serve.get_replica_context", lambda: Context(servable))
    monkeypatch.setattr(ingress, "_keys", ApiKeys([]))
    monkeypatch.setattr(ingress, "_rate", RateLimiter(1e9, 10**9))
    with TestClient(ingress.api, raise_server_exceptions=False) as client:
        client.poster, client.servable = poster, servable
        yield client


def test_the_image_route_serves_the_kept_file_as_an_image_and_never_as_a_page(served):
    answer = served.get("/v1/items/film/image")
    assert answer.status_code == 200 and answer.content == served.poster
    assert answer.headers["content-type"] == "image/png" and answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    missing = served.get("/v1/items/no-poster/image")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    assert served.get("/v1/items/bad%20id/image").status_code == 422
    documented = served.get("/openapi.json").json()["paths"]["/v1/items/{item_id}/image"]["get"]["responses"]
    assert set(documented["200"]["content"]) == set(IMAGE_MEDIA_TYPES)


def test_the_activity_route_passes_the_bucket_and_gives_the_series(served):
    answer = served.get("/v1/items/film/activity", params={"bucket": "hour", "buckets": 48})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"item_id": "film", "bucket": "hour", "bucket_s": 86400, "start": 1_699_920_000,
                             "counts": {"rating": [0, 2], "click": [1, 0]}, "totals": {"rating": 5, "click": 1},
                             "first_event": 1_600_000_000, "last_event": 1_700_010_000,
                             "exploration": {"explorable": True, "max_age_days": 30.0, "shown": 4, "clicks": 1}}
    assert ("item_activity", ("film", 3600, 48)) in served.servable.ranker.calls
    assert served.get("/v1/items/film/activity").status_code == 200
    assert ("item_activity", ("film", 86400, 30)) in served.servable.ranker.calls  # a day, 30 of them, by default
    assert served.get("/v1/items/unknown/activity").status_code == 404
    for params in ({"bucket": "week"}, {"buckets": 0}, {"buckets": 745}):
        assert served.get("/v1/items/film/activity", params=params).status_code == 422, params


def test_stats_give_each_shards_lag_behind_the_store(served):
    stats = served.get("/v1/stats", params={"window_s": 60})
    assert stats.status_code == 200, stats.text
    shards = stats.json()["user_shards"]
    assert [(s["shard"], s["users"], s["event_log_seq"], s["event_lag"]) for s in shards] == [(0, 5, 120, 0), (1, 7, 117, 3)]
    assert stats.json()["users"] == 12 and shards[1]["model_version"] == "v-test"
