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
# (an item's image is fetched with the key, like any read, and shown from a blob: URL)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'; object-src 'none'"
)
# an item's image, as served: never rendered as a document, whatever its bytes hold
IMAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff",
                 "Cache-Control": "no-cache"}
# the formats the image encoder reads, by their first bytes (WebP: RIFF, a size, then WEBP)
IMAGE_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF87a", "image/gif"),
                    (b"GIF89a", "image/gif"), (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff", "application/octet-stream")


def image_media_type(data: bytes) -> str:
    """The media type an image file's bytes declare; application/octet-stream for any other."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((media for signature, media in IMAGE_SIGNATURES if data.startswith(signature)), "application/octet-stream")


def inspector_page() -> FileResponse:
    return FileResponse(UI_DIR / "index.html", media_type="text/html",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"})
