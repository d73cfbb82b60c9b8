"""API keys and rate limits in-process: where keys come from, what needs one, and the buckets."""

from dynrec.api.security import ApiKeys, RateLimiter, bucket_id, presented_key
from dynrec.config import SecurityConfig


def test_keys_come_from_the_environment_and_a_secret_file(monkeypatch, tmp_path):
    secret = tmp_path / "keys"
    secret.write_text("# comment\nfrom-file\n\n")
    monkeypatch.setenv("MY_KEYS", "a-key, b-key")
    keys = ApiKeys.from_config(SecurityConfig(api_keys_env="MY_KEYS", api_keys_file=str(secret)))
    assert keys.enabled and all(keys.valid(k) for k in ("a-key", "b-key", "from-file"))
    assert not keys.valid("# comment") and not keys.valid("") and not keys.valid(None) and not keys.valid("a-ke")
    monkeypatch.delenv("MY_KEYS")
    assert not ApiKeys.from_config(SecurityConfig(api_keys_env="MY_KEYS")).enabled


def test_writes_need_a_key_reads_only_when_protected():
    open_reads, closed = ApiKeys(["k"]), ApiKeys(["k"], protect_reads=True)
    for method, path in (("POST", "/v1/events"), ("PUT", "/v1/items/a"), ("DELETE", "/v1/users/u"), ("POST", "/v1/segments/recompute")):
        assert open_reads.required(method, path) and closed.required(method, path)
    for method, path in (("POST", "/v1/recommendations"), ("GET", "/v1/items/a"), ("GET", "/v1/segments")):
        assert not open_reads.required(method, path) and closed.required(method, path)
    assert not closed.required("GET", "/healthz") and not ApiKeys([]).required("POST", "/v1/events")


def test_headers_and_buckets_never_carry_the_key():
    assert presented_key({"x-api-key": "k1"}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2" and presented_key({"authorization": "Basic x"}) is None
    assert "secret" not in bucket_id("secret", "10.0.0.1") and bucket_id(None, "10.0.0.1") == "addr:10.0.0.1"


def test_rate_limiter_allows_the_burst_then_refills_at_the_rate():
    limiter = RateLimiter(rate_per_s=10, burst=3)
    assert [limiter.allow("a", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.allow("a", now=100.0)
    assert 0.09 < wait <= 0.1
    assert limiter.allow("b", now=100.0) == 0.0  # buckets are separate
    assert limiter.allow("a", now=100.2) == 0.0  # two tokens refilled
