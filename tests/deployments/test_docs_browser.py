"""In a real browser (headless Chromium from Debian, driven by Playwright for Python): the docs
pages render from the real app, and no page requests any host but the service's.

ReDoc's sidebar asks for a logo on its vendor's CDN; the pages' Content-Security-Policy makes the
browser block that before it is sent. So two checks: nothing for another host reaches the
network (every such request is caught by a route, recorded and aborted), and whatever a page
tried was blocked by its policy."""

import shutil
from urllib.parse import urlsplit

import pytest

CHROMIUM = next((path for path in map(shutil.which, ("chromium", "chromium-browser")) if path), None)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: scripts/test.sh installs it (apt-get install chromium); "
                    "it could not here")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is missing: scripts/test.sh installs it")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.mark.parametrize("page_path, rendered", [
    ("/docs", ".swagger-ui .opblock-summary-path"),  # an operation, drawn by Swagger UI from /openapi.json
    ("/redoc", "[data-section-id^='operation/']"),  # the same, drawn by ReDoc
])
def test_docs_pages_render_and_request_no_other_host(service, browser, page_path, rendered):
    origin = urlsplit(service.base).netloc
    page = browser.new_page()
    requested, failed, sent_elsewhere = [], {}, []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.update({request.url: request.failure}))
    page.route(lambda url: urlsplit(url).netloc != origin,
               lambda route: (sent_elsewhere.append(route.request.url), route.abort()))
    try:
        page.goto(service.base + page_path, wait_until="networkidle", timeout=60_000)
        page.wait_for_selector(rendered, timeout=30_000)
        assert page.locator(rendered).count() >= 5  # the API's operations, not an empty page
    finally:
        page.close()
    assert sent_elsewhere == [], f"{page_path} requested other hosts: {sent_elsewhere}"
    tried_elsewhere = [url for url in requested if urlsplit(url).scheme in ("http", "https", "ws", "wss")
                       and urlsplit(url).netloc != origin]
    assert all(failed.get(url) == "csp" for url in tried_elsewhere), failed
    assert any("/docs/assets/" in url for url in requested) and service.base + "/openapi.json" in requested
    assert [url for url in failed if url not in tried_elsewhere] == []  # everything of its own loaded
