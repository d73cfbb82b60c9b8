"""The API's documentation pages, Swagger UI at /docs and ReDoc at /redoc, on assets the service
serves itself (vendored in `static/`, see its README): no page loads anything from another host."""

from __future__ import annotations

from pathlib import Path

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_PATH = "/docs/assets"  # where STATIC_DIR is mounted; open like the pages, even when reads need a key
SWAGGER_UI_VERSION = "5.35.0"  # npm swagger-ui-dist
REDOC_VERSION = "2.5.4"  # npm redoc
# the pages may load only from the service itself: the browser enforces it, whatever the bundles
# reach for (ReDoc's sidebar draws a logo from its vendor's CDN; blocked, it is left out). Inline
# script and style: the pages' own start-up code and the bundles' styles
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'", "script-src 'self' 'unsafe-inline'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "font-src 'self' data:", "worker-src 'self' blob:", "connect-src 'self'",
    "base-uri 'self'", "form-action 'self'", "frame-ancestors 'self'",
))


def _own_assets_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def swagger_ui_page(openapi_url: str, title: str, oauth2_redirect_url: str | None = None) -> HTMLResponse:
    return _own_assets_only(get_swagger_ui_html(
        openapi_url=openapi_url, title=f"{title} - Swagger UI", oauth2_redirect_url=oauth2_redirect_url,
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # never send the schema to swagger.io's validator
    ))


def redoc_page(openapi_url: str, title: str) -> HTMLResponse:
    return _own_assets_only(get_redoc_html(
        openapi_url=openapi_url, title=f"{title} - ReDoc", with_google_fonts=False,
        redoc_js_url=f"{ASSETS_PATH}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_PATH}/swagger-ui/favicon-32x32.png",
    ))


def oauth2_redirect_page() -> HTMLResponse:
    return _own_assets_only(get_swagger_ui_oauth2_redirect_html())
