"""API keys and per-key rate limits for the HTTP API.

Keys come from an environment variable (comma-separated) or a file (one per line, e.g. a mounted
Kubernetes secret), are compared in constant time, and are never logged or stored beyond a
digest: the rate limiter buckets requests by a hash of the key, or by client address when the
API is open.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from pathlib import Path

from dynrec.config import SecurityConfig

WRITE_METHODS = frozenset({"PUT", "DELETE", "PATCH"})
# the pages (docs, the /ui inspector) open without a key: they hold no data, and the inspector's
# API calls send the key its user types in
OPEN_PATHS = frozenset({"/healthz", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc", "/ui"})
# the pages' own scripts and styles (dynrec.api.docs.ASSETS_PATH, dynrec.api.inspector.ASSETS_PATH)
OPEN_PREFIXES = ("/docs/assets/", "/ui/static/")
READ_POSTS = frozenset({"/v1/recommendations"})  # POST for its body, but it only reads


class ApiKeys:
    def __init__(self, keys: list[str], protect_reads: bool = False):
        self._keys = [k.encode() for k in keys if k]
        self.protect_reads = protect_reads

    @classmethod
    def from_config(cls, config: SecurityConfig) -> "ApiKeys":
        keys = [k.strip() for k in os.environ.get(config.api_keys_env, "").split(",")]
        if config.api_keys_file:
            keys += [line.strip() for line in Path(config.api_keys_file).read_text().splitlines()]
        return cls([k for k in keys if k and not k.startswith("#")], config.protect_reads)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def required(self, method: str, path: str) -> bool:
        """Writes need a key whenever keys exist; reads only with `protect_reads`."""
        if not self._keys or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return False
        writes = method in WRITE_METHODS or (method == "POST" and path not in READ_POSTS)
        return writes or self.protect_reads

    def valid(self, presented: str | None) -> bool:
        """Constant-time against every key, so timing reveals neither a match nor which key."""
        if not presented:
            return False
        candidate = presented.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


def presented_key(headers) -> str | None:
    """`X-API-Key: <key>` or `Authorization: Bearer <key>`."""
    key = headers.get("x-api-key")
    if key:
        return key
    authorization = headers.get("authorization", "")
    return authorization[7:].strip() if authorization.lower().startswith("bearer ") else None


def bucket_id(key: str | None, client: str | None) -> str:
    """Who a request counts against: a digest of its key (never the key), else its address."""
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"addr:{client or 'unknown'}"


class RateLimiter:
    """Token buckets: `rate_per_s` sustained, `burst` at once, per bucket id."""

    def __init__(self, rate_per_s: float, burst: int, max_buckets: int = 100_000):
        self.rate, self.burst, self.max_buckets = rate_per_s, burst, max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, bucket: str, now: float | None = None) -> float:
        """0 when the request may proceed, else seconds until it would."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, since = self._buckets.get(bucket, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) * self.rate)
            if tokens >= 1:
                self._store(bucket, tokens - 1, now)
                return 0.0
            self._store(bucket, tokens, now)
            return (1 - tokens) / self.rate

    def _store(self, bucket: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.max_buckets and bucket not in self._buckets:
            self._buckets.clear()  # a flood of new ids cannot grow memory without bound
        self._buckets[bucket] = (tokens, now)
