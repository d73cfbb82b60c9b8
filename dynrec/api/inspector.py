"""The inspector: a page at /ui that reads the v1 API from the browser (plain JS in `ui/`, no
build step, nothing loaded from another host), for people asking why a user got a list, what an
item sits next to, what the segments are, and whether the service keeps up."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

UI_DIR = Path(__file__).parent / "ui"
PAGE_PATH = "/ui"
ASSETS_PATH = "/ui/static"  # where UI_DIR is mounted; open like the page, even when reads need a key
# the page's scripts, styles and requests stay on the service; no inline script or style at all
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'; object-src 'none'"
)


def inspector_page() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"})
