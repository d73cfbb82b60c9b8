"""The docs pages' vendored assets: shipped in the package, pinned, with their licences, and as
the notes in dynrec/api/static/README.md say."""

import hashlib
import re
import tomllib
from pathlib import Path

from dynrec.api.docs import REDOC_VERSION, STATIC_DIR, SWAGGER_UI_VERSION

ROOT = Path(__file__).resolve().parents[2]


def test_every_asset_is_package_data():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    globs = package_data["dynrec.api"]
    package = STATIC_DIR.parent
    shipped = {p for pattern in globs for p in package.glob(pattern) if p.is_file()}
    files = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert files and files <= shipped, sorted(str(p.relative_to(package)) for p in files - shipped)


def test_assets_are_pinned_with_their_licences_and_hashes():
    notes = (STATIC_DIR / "README.md").read_text()
    assert f"| `swagger-ui-dist` | {SWAGGER_UI_VERSION} |" in notes and f"| `redoc` | {REDOC_VERSION} |" in notes
    for folder in ("swagger-ui", "redoc"):
        assert (STATIC_DIR / folder / "LICENSE").is_file()
    hashes = dict((path, digest) for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", notes, re.M))
    assert set(hashes) == {"swagger-ui/swagger-ui-bundle.js", "swagger-ui/swagger-ui.css", "redoc/redoc.standalone.js"}
    for path, digest in hashes.items():
        assert hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest() == digest, path
