"""The /ui inspector against the real app: its read-only routes over HTTP (the segment scatter's
projection, the health page's stats with each shard's lag, an item's image and behaviour over
time), then the page itself in a real browser (Debian's headless Chromium through Playwright, as
the docs pages' test drives it), on the SQLite store only: the page is the same whatever the
store, and a browser run costs time."""

import base64
import io
import json
import os
import shutil
import time
from urllib.parse import urlsplit

import pytest
from PIL import Image

from tests.deployments.conftest import API_KEY

SHOTS = os.environ.get("DYNREC_UI_SCREENSHOTS")  # a folder: each page's screenshot is saved there (docs/img)
CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser")) if path), None)


def test_projection_places_every_user_with_their_segment(service):
    segments = service.get("/v1/segments").json()
    answer = service.get("/v1/segments/projection", params={"limit": 5000})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    users = body["users"]
    assert body["version"] == segments["version"]
    assert len(users) == len({u["user_id"] for u in users}) >= 900  # ML-100k's 943 users, minus any erased
    assert sum(u["segment_id"] is not None for u in users) == len(users)
    assert {u["segment_id"] for u in users} <= set(range(segments["k"]))
    # each user's segment is the one the user's own page reports
    for point in users[:5]:
        assert service.get(f"/v1/users/{point['user_id']}").json()["segment"]["segment_id"] == point["segment_id"]
    # spread over a plane, not collapsed to a line or a point
    xs, ys = [u["x"] for u in users], [u["y"] for u in users]
    assert max(xs) - min(xs) > 0 and max(ys) - min(ys) > 0
    sample = service.get("/v1/segments/projection", params={"limit": 50}).json()["users"]
    assert len(sample) == 50 and {u["user_id"] for u in sample} <= {u["user_id"] for u in users}
    assert service.get("/v1/segments/projection", params={"limit": 0}).status_code == 422


def test_stats_count_requests_per_route_with_latency_and_the_services_counts(service):
    for _ in range(3):
        assert service.post("/v1/recommendations", json={"user_id": "2", "num_results": 3}).status_code == 200
    health = service.get("/healthz").json()
    time.sleep(1.1)  # the current second is left out of the window
    stats = service.get("/v1/stats", params={"window_s": 60}).json()
    recommendations = stats["routes"]["POST /v1/recommendations"]
    assert recommendations["requests"] >= 3 and recommendations["p50_ms"] > 0
    assert recommendations["p99_ms"] >= recommendations["p50_ms"] and len(recommendations["per_second"]) == 60
    assert sum(recommendations["per_second"]) == recommendations["requests"]
    assert stats["model_version"] == health["model_version"] and stats["window_s"] == 60
    assert stats["users"] == sum(s["users"] for s in stats["user_shards"]) >= 900
    assert [s["shard"] for s in stats["user_shards"]] == list(range(health["user_shards"]))
    store = stats["store"]
    assert store["items"] >= 1600 and store["item_log_seq"] > 0 and store["event_log_seq"] > 0
    assert store["backend"] in ("sqlite", "redis")
    assert service.get("/v1/stats", params={"window_s": 5}).status_code == 422


def test_each_shard_says_how_far_it_is_behind_the_store(service):
    """A shard's catalogue reads the log in the background (every 0.5 s in the test config), so a
    quiet moment after a write every shard has applied it, and each shard's lag is the store's
    position less its own."""
    assert service.post("/v1/events", json={"events": [{"user_id": u, "item_id": "50", "event_type": "view"}
                                                       for u in ("lag-a", "lag-b", "lag-c")]}).json()["accepted"] == 3
    time.sleep(2)
    stats = service.get("/v1/stats").json()
    store = stats["store"]
    for shard in stats["user_shards"]:
        assert (shard["event_log_seq"], shard["event_lag"]) == (store["event_log_seq"], 0), shard
        assert (shard["item_log_seq"], shard["item_lag"]) == (store["item_log_seq"], 0), shard


def poster_upload(data_dir, which: int, title: str) -> tuple[bytes, dict]:
    """An item to PUT with the `which`-th ML-1M poster (ML-100k has none), and the poster's bytes."""
    poster = sorted((data_dir / "ml-1m-posters" / "posters").glob("*.jpg"))[which].read_bytes()
    return poster, {"title": title, "text": "A poster, a plot and a week of behaviour.", "categories": ["Drama"],
                    "image": base64.b64encode(poster).decode()}


def test_an_items_image_and_its_behaviour_over_time(service, data_dir):
    poster, item = poster_upload(data_dir, 1, "A film with a few days of events")
    assert service.put("/v1/items/activity-film", json=item).status_code == 200
    image = service.get("/v1/items/activity-film/image")
    assert image.status_code == 200 and image.content == poster and image.headers["content-type"] == "image/jpeg"
    assert service.get("/v1/items/activity-film").json()["text"] == item["text"]
    assert service.put("/v1/items/activity-film", json={**item, "image": None}).json()["has_image"] is False
    assert service.get("/v1/items/activity-film/image").status_code == 404  # replaced without one: none shown
    assert service.get("/v1/items/50/image").status_code == 404  # ML-100k has no posters

    now = int(time.time())
    day = 86400
    events = [("impression", now - 2 * day), ("impression", now - 2 * day), ("click", now - 2 * day),
              ("rating", now - day), ("impression", now), ("view", now - 40 * day)]
    sent = service.post("/v1/events", json={"events": [
        {"user_id": f"activity-{n}", "item_id": "activity-film", "event_type": kind, "timestamp": ts, "value": 4}
        for n, (kind, ts) in enumerate(events)]})
    assert sent.json()["accepted"] == len(events)
    daily = service.get("/v1/items/activity-film/activity", params={"bucket": "day", "buckets": 5}).json()
    assert daily["bucket_s"] == day and daily["start"] == (now // day - 4) * day and daily["last_event"] == now
    assert daily["counts"] == {"impression": [0, 0, 2, 0, 1], "click": [0, 0, 1, 0, 0], "rating": [0, 0, 0, 1, 0],
                               "view": [0] * 5}  # its view is older than the window
    assert daily["totals"] == {"impression": 3, "click": 1, "rating": 1, "view": 1}
    assert daily["exploration"]["explorable"] and daily["exploration"]["clicks"] == 0  # no click named a list
    hourly = service.get("/v1/items/activity-film/activity", params={"bucket": "hour", "buckets": 3}).json()
    assert hourly["counts"]["impression"] == [0, 0, 1]
    assert service.get("/v1/items/no-such-item/activity").status_code == 404


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: scripts/test.sh installs it (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is missing: scripts/test.sh installs it")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def shot(page, name: str) -> None:
    if SHOTS:
        page.wait_for_load_state("networkidle")
        page.screenshot(path=os.path.join(SHOTS, f"ui-{name}.png"), full_page=False)


def rows(page) -> list[str]:
    return page.locator("#rec-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.itemId)")


def row(page, item_id: str):
    return page.locator(f'#rec-table tbody tr[data-item-id="{item_id}"]')


def test_inspector_pages_in_a_browser(service, browser, data_dir):
    if not str(service.config_path).endswith("sqlite.yaml"):
        pytest.skip("the browser run once, on the SQLite store")
    # an item with a poster and a few days of behaviour, for the item page
    poster, item = poster_upload(data_dir, 0, "The inspected film")
    assert service.put("/v1/items/inspected-film", json=item).status_code == 200
    now, day = int(time.time()), 86400
    behaviour = [("impression", now - 3 * day)] * 4 + [("click", now - 3 * day), ("rating", now - 2 * day)] \
        + [("impression", now - day)] * 6 + [("click", now - day)] * 2 + [("rating", now)] * 3
    assert service.post("/v1/events", json={"events": [
        {"user_id": f"inspector-{n}", "item_id": "inspected-film", "event_type": kind, "timestamp": ts, "value": 5}
        for n, (kind, ts) in enumerate(behaviour)]}).json()["accepted"] == len(behaviour)
    # a user with a history and interests: earlier tests on this app (schemathesis among them) may erase a few
    candidates = (service.get(f"/v1/users/{u['user_id']}").json()
                  for u in service.get("/v1/segments/projection", params={"limit": 100}).json()["users"])
    user_id = next(c["user_id"] for c in candidates if len(c["recent"]) >= 5 and c["interests"])
    origin = urlsplit(service.base).netloc
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requested, sent_elsewhere, failed, errors = [], [], [], []
    page.on("request", lambda request: requested.append(request))
    page.on("requestfailed", lambda request: failed.append((request.url, request.failure)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    # uncaught script errors and console errors, but not Chromium's note on each 4xx the test provokes
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    page.route(lambda url: urlsplit(url).netloc != origin, lambda route: (sent_elsewhere.append(route.request.url), route.abort()))
    try:
        # the user page: history and recommendations as the API gives them
        with page.expect_response(lambda r: r.url.endswith("/v1/recommendations")) as listed:
            page.goto(service.base + f"/ui#/user/{user_id}", wait_until="networkidle", timeout=60_000)
        shown_list = listed.value.json()
        page.wait_for_selector("#rec-table tbody tr", timeout=30_000)
        assert rows(page) == [item["item_id"] for item in shown_list["items"]] and len(shown_list["items"]) == 10
        assert page.locator("#rec-model").inner_text() == shown_list["model_version"]
        first = page.locator("#rec-table tbody tr").first
        assert first.locator("td").nth(3).inner_text() == shown_list["items"][0]["reason"]
        user = service.get(f"/v1/users/{user_id}").json()
        timeline = page.locator("#timeline li").evaluate_all("items => items.map(i => i.dataset.itemId)")
        assert timeline == [entry["item_id"] for entry in user["recent"]] and timeline
        assert page.locator("#history-length").inner_text() == str(user["history_length"])
        assert user["segment"]["label"] in page.locator("#user-segment").inner_text()
        labels = page.locator("#user-interests .interest-label").all_inner_texts()
        assert labels == [interest["label"] for interest in user["interests"]] and labels  # the largest first

        # the diversity slider and a category filter ask again, with what they set
        with page.expect_request(lambda r: r.url.endswith("/v1/recommendations")) as asked:
            page.locator("#exclude-categories").fill("Drama")
        assert json.loads(asked.value.post_data)["filters"]["exclude_categories"] == ["Drama"]
        with page.expect_request(lambda r: r.url.endswith("/v1/recommendations")) as asked:
            page.locator("#diversity").fill("0.8")
        assert json.loads(asked.value.post_data)["diversity"] == 0.8
        page.wait_for_load_state("networkidle")

        # writes need the key: without it the page says so; with it the event lands and the list moves
        before = rows(page)
        page.locator("#rec-table tbody tr").first.locator("[data-action=rate]").click()
        page.wait_for_selector("#message:not([hidden])")
        assert "API key" in page.locator("#message").inner_text()
        page.locator("#api-key").fill(API_KEY)
        page.locator("#key-form button[type=submit]").click()
        page.wait_for_selector("#rec-table tbody tr", timeout=30_000)
        page.wait_for_load_state("networkidle")
        before = rows(page)
        # the new film takes explored slots, so it may head the list: its behaviour is counted on its
        # own page below, and the item page checked next is one without an image, so rate another
        rated = next(i for i in before if not service.get(f"/v1/items/{i}").json()["has_image"])
        with page.expect_response(lambda r: r.url.endswith("/v1/events")) as posted:
            row(page, rated).locator("[data-action=rate]").click()
        assert posted.value.status == 200 and posted.value.json()["accepted"] == 1
        assert json.loads(posted.value.request.post_data)["events"][0]["item_id"] == rated
        page.wait_for_selector("#rec-changed", timeout=30_000)
        after = rows(page)
        assert rated not in after and after != before  # rated, so seen, so out of the list
        assert page.locator("#timeline li").first.get_attribute("data-item-id") == rated
        shot(page, "user")
        # a click names the list it came from
        shown_id = page.locator("#rec-id").inner_text()
        with page.expect_response(lambda r: r.url.endswith("/v1/events")) as clicked:
            row(page, next(i for i in after if i != "inspected-film")).locator("[data-action=click]").click()
        event = json.loads(clicked.value.request.post_data)["events"][0]
        assert event["event_type"] == "click" and event["recommendation_id"] == shown_id  # the list clicked on
        assert clicked.value.json()["accepted"] == 1 and clicked.value.json().get("attributed", [0]) == [0]

        # interests from a description made up here: a share bar each, as wide as its share; and a
        # description without the field (a service from before it) shows no section and nothing in its place
        described = service.get(f"/v1/users/{user_id}").json()
        answers = {"body": {**described, "interests": [
            {"label": "Late-night comedies", "top_categories": ["Comedy", "Romance"], "share": 0.6},
            {"label": "War dramas", "top_categories": ["War"], "share": 0.25}]}}
        page.route(f"**/v1/users/{user_id}", lambda route: route.fulfill(json=answers["body"]))
        page.reload()
        page.wait_for_selector("#user-interests li")
        shown = page.locator("#user-interests li")
        assert shown.count() == 2 and "Late-night comedies" in shown.first.inner_text() and "Comedy" in shown.first.inner_text()
        widths = page.locator("#user-interests .share-bar span").evaluate_all("bars => bars.map(b => b.style.width)")
        assert widths == ["60%", "25%"]
        answers["body"] = {key: value for key, value in described.items() if key != "interests"}
        page.reload()
        page.wait_for_selector("#history-length")
        assert page.locator("#user-interests").count() == 0
        assert not {"null", "undefined"} & set(page.locator("#user-profile").inner_text().split())
        page.unroute(f"**/v1/users/{user_id}")

        # a bad id reads as a message, not a blank page
        page.goto(service.base + "/ui#/user/not%20an%20id")
        page.wait_for_selector("#user-error")
        assert "user_id" in page.locator("#user-error").inner_text()

        # an item and what it sits next to
        page.goto(service.base + f"/ui#/item/{rated}")
        page.wait_for_selector("#item-similar tbody tr", timeout=30_000)
        assert page.locator("#item-detail h2").inner_text() == service.get(f"/v1/items/{rated}").json()["title"]
        assert page.locator("#item-similar tbody tr").count() == 10
        assert page.locator("#item-image img").count() == 0 and "no image" in page.locator("#item-image").inner_text()

        # an item with its poster, text, behaviour over time and place in exploration
        with page.expect_response(lambda r: "/v1/items/inspected-film/activity" in r.url) as answered:
            page.goto(service.base + "/ui#/item/inspected-film")
        activity = answered.value.json()
        page.wait_for_selector("#item-image img", timeout=30_000)
        size = page.locator("#item-image img").evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])")
        assert tuple(size) == Image.open(io.BytesIO(poster)).size  # decoded: the poster itself, whole
        assert page.locator("#item-text").inner_text() == item["text"]
        drawn = page.locator("#activity-chart g.series").evaluate_all(
            "groups => Object.fromEntries(groups.map(g => [g.dataset.type, g.dataset.counts.split(',').map(Number)]))")
        # today's impressions also count the explored slots the Ranker showed the new film in, above
        explored = activity["exploration"]["shown"]
        assert drawn == activity["counts"] and drawn["impression"][-4:] == [4, 0, 6, explored]
        assert drawn["rating"][-4:] == [0, 1, 0, 3] and drawn["click"][-4:] == [1, 0, 2, 0]
        # a point for each bucket with events, labelled with its day, count and type
        points = page.locator("#activity-chart circle title").all_text_contents()
        days = [time.strftime("%Y-%m-%d", time.gmtime(activity["start"] + i * activity["bucket_s"])) for i in range(30)]
        assert sorted(points) == sorted(f"{days[i]}: {v} {kind}" for kind, counts in drawn.items()
                                        for i, v in enumerate(counts) if v)
        totals = page.locator("#activity-summary [data-type]").evaluate_all(
            "spans => Object.fromEntries(spans.map(s => [s.dataset.type, parseInt(s.innerText)]))")
        assert totals == activity["totals"] == {"impression": 10 + explored, "click": 3, "rating": 4}
        exploration = page.locator("#item-exploration").inner_text()
        assert "explorable" in exploration and "not explorable" not in exploration  # uploaded just now
        assert f"{explored} attributed impressions, 0 clicks" in exploration
        with page.expect_response(lambda r: "bucket=hour" in r.url) as hourly:
            page.locator("#activity-bucket").select_option("hour:48")
        page.wait_for_selector("#activity-chart[data-buckets='48']")
        by_hour = page.locator("#activity-chart g.series[data-type=rating]").get_attribute("data-counts").split(",")
        assert len(by_hour) == 48 and by_hour[-1] == "3" and hourly.value.json()["counts"]["rating"][-1] == 3
        page.locator("#activity-bucket").select_option("day:30")
        page.wait_for_selector("#activity-chart[data-buckets='30']")
        shot(page, "item")

        # segments: the scatter, each segment's profile and list; a point opens its user
        segments = service.get("/v1/segments").json()
        page.goto(service.base + "/ui#/segments")
        page.wait_for_selector("#scatter circle", timeout=60_000)
        assert page.locator("#scatter circle").count() >= 900
        assert page.locator("#segment-cards .segment").count() == segments["k"]
        page.wait_for_selector("#segment-cards .segment ol li", timeout=30_000)
        point = page.locator("#scatter circle").last  # drawn last, so on top of any it overlaps
        clicked_user = point.get_attribute("data-user-id")
        point.hover()
        assert f"user {clicked_user}" in page.locator("#hover").inner_text()
        shot(page, "segments")
        point.click()
        page.wait_for_selector("#rec-table tbody tr", timeout=30_000)
        assert page.evaluate("location.hash") == f"#/user/{clicked_user}"

        # health: the served model, counts, rates and latencies from the service's own figures, and
        # each shard's position in the store's logs
        health = service.get("/healthz").json()
        with page.expect_response(lambda r: "/v1/stats" in r.url) as answered:
            page.goto(service.base + "/ui#/health")
        stats = answered.value.json()
        page.wait_for_selector("#routes tbody tr", timeout=30_000)
        shard_rows = page.locator("#shard-lag tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText))")
        assert len(shard_rows) == health["user_shards"] == len(stats["user_shards"])
        for cells, shard in zip(shard_rows, stats["user_shards"]):
            assert cells[:2] == [str(shard["shard"]), str(shard["users"])]
            assert cells[3:7] == [str(shard["event_log_seq"]), str(shard["event_lag"]), str(shard["item_log_seq"]),
                                  str(shard["item_lag"])]
        assert page.locator("#health-model").inner_text() == health["model_version"]
        assert int(page.locator("#health-users").inner_text()) >= 900
        assert "items" in page.locator("#health-items").inner_text()
        assert "POST /v1/recommendations" in page.locator("#routes").inner_text()
        assert "ms" in page.locator("#health-recommendations").inner_text()
        shot(page, "health")
        key_kept = page.evaluate("[localStorage.length, sessionStorage.getItem('dynrec.inspector.apiKey')]")
    finally:
        page.close()
        context.close()
    assert sent_elsewhere == [] and failed == [], (sent_elsewhere, failed)
    assert all(urlsplit(r.url).netloc == origin for r in requested if urlsplit(r.url).scheme in ("http", "https"))
    assert errors == []
    assert key_kept == [0, API_KEY]  # in this tab's sessionStorage only
    assert not any(API_KEY in r.url for r in requested)  # never in a URL
    keyed = [r for r in requested if "/v1/" in r.url and r.headers.get("x-api-key") == API_KEY]
    assert keyed  # sent as X-API-Key once given
