"""The /ui inspector: shipped in the package, loading nothing from elsewhere, open without a key
like the docs pages while the data it reads stays behind the key wherever reads are protected."""

import re
import tomllib
from pathlib import Path

from dynrec.api.inspector import CONTENT_SECURITY_POLICY, UI_DIR
from dynrec.api.security import ApiKeys

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
    for path in ("/v1/users/1", "/v1/stats", "/v1/segments/projection", "/v1/segments", "/v1/items/1", "/ui/../v1/stats",
                 "/uiv1", "/ui/other"):
        assert keys.required("GET", path), path
    assert keys.required("POST", "/v1/events")
    assert not ApiKeys(["k"], protect_reads=False).required("GET", "/v1/stats")
