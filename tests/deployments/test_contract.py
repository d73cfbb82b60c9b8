"""Over HTTP against the real Serve app: the v1 API's contract as a client sees it through Serve's
proxy. Framework errors in the documented shape, `Allow` on 405 and OPTIONS, the body limit on
the bytes of a chunked upload, exact types, and docs pages served from the service itself."""

import re
import select
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.deployments.conftest import API_KEY

TWENTY_MB = 20 * 1024 * 1024


def test_unknown_routes_and_methods_answer_in_the_error_shape(service):
    missing = service.get("/v1/nothing-here")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    wrong = service.get("/v1/events")
    assert wrong.status_code == 405 and set(wrong.json()) == {"error", "detail"}
    assert wrong.headers["allow"] == "OPTIONS, POST"


def test_options_lists_every_method_of_the_path(service):
    paths = service.get("/openapi.json").json()["paths"]
    for path, template in (("/v1/items/50", "/v1/items/{item_id}"), ("/v1/users/7", "/v1/users/{user_id}"),
                           ("/v1/recommendations", "/v1/recommendations"), ("/healthz", "/healthz")):
        response = service.request("OPTIONS", path)
        assert response.status_code == 204, (path, response.text)
        assert {m.strip() for m in response.headers["allow"].split(",")} == {m.upper() for m in paths[template]} | {"OPTIONS"}
    assert service.request("PATCH", "/v1/items/50").headers["allow"] == "DELETE, GET, OPTIONS, PUT"


def spaces(total: int, chunk: int = 256 * 1024):
    """`total` bytes of JSON whitespace, in chunks."""
    return (b" " * chunk for _ in range(total // chunk))


def chunked_post(base: str, path: str, chunks) -> tuple[int, int, bytes]:
    """POSTs `chunks` with Transfer-Encoding: chunked (no Content-Length), as a careful client does:
    it sends only while the socket takes more, and stops sending once an answer arrives, the socket
    takes nothing for 3 s, or after 20 s (a server that refuses the body early stops reading it;
    HAProxy in front of the replica may hold the answer until the client stops). Returns (status,
    body bytes sent, response)."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    head = (f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {API_KEY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    frames = (b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    pending, sent, answered, idle = head, 0, False, 0
    stop_sending, deadline = time.monotonic() + 20, time.monotonic() + 80
    sock.setblocking(False)
    try:
        while not answered and idle < 3 and time.monotonic() < stop_sending:
            if not pending:
                frame = next(frames, None)
                if frame is None:
                    break
                pending = frame
            readable, writable, _ = select.select([sock], [sock], [], 1)
            idle = 0 if readable or writable else idle + 1  # 3 s taking nothing: the server stopped reading
            if readable:
                answered = True
            elif writable:
                try:
                    taken = sock.send(pending)
                    pending, sent = pending[taken:], sent + taken
                except BlockingIOError:
                    pass
        if not answered and idle < 3 and time.monotonic() < stop_sending:
            sock.settimeout(60)
            sock.sendall(pending + b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass  # the server closed the connection after answering, or stopped reading
    sock.settimeout(max(1.0, deadline - time.monotonic()))
    answer = b""
    while time.monotonic() < deadline and not complete(answer):
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        answer += data
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, sent, answer


def complete(answer: bytes) -> bool:
    """A whole response: its head, and the body its Content-Length announces (the connection may
    stay open while the client has not finished its request)."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(sep) and length is not None and len(body) >= int(length.group(1))


def test_a_chunked_upload_over_the_limit_gets_413(service):
    """413, not the 422 of a body read whole and parsed. The Ingress stops reading at the limit
    (tests/api/test_ingress_contract.py counts what it reads); how much more the client gets to
    send before it sees the answer is up to what sits in front of the replica (HAProxy)."""
    status, sent, answer = chunked_post(service.base, "/v1/events", spaces(TWENTY_MB))
    assert status == 413, answer[:300]
    assert b'"error"' in answer and b"larger than" in answer


def test_a_chunked_upload_under_the_limit_is_read_and_applied(service):
    body = b'{"events": [{"user_id": "chunked-user", "item_id": "50", "event_type": "view"}]}'
    status, _, answer = chunked_post(service.base, "/v1/events", [body[:20], body[20:], *spaces(1024 * 1024)])
    assert status == 200, answer[-300:]
    assert service.get("/v1/users/chunked-user").json()["known"] is True


@pytest.mark.parametrize("body", [
    {"events": [{"user_id": "typed-user", "item_id": "50", "event_type": "rating", "value": False}]},
    {"events": [{"user_id": "typed-user", "item_id": "50", "event_type": "view", "timestamp": "1700000000"}]},
])
def test_a_boolean_or_string_is_not_a_number(service, body):
    response = service.post("/v1/events", json=body)
    assert response.status_code == 422 and set(response.json()) == {"error", "detail"}
    assert service.get("/v1/users/typed-user").json()["known"] is False


def test_a_boolean_exploration_weight_is_refused(service):
    response = service.post("/v1/recommendations", json={"user_id": "7", "exploration": {"weight": False}})
    assert response.status_code == 422


@pytest.mark.parametrize("page, assets", [("/docs", 3), ("/redoc", 2)])
def test_docs_pages_and_their_assets_come_from_the_service(anonymous, page, assets):
    html = anonymous.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html.text)
    assert not [u for u in urls if re.match(r"(?:https?:)?//", u)], urls
    local = [u for u in urls if u.startswith("/docs/assets/")]
    assert len(local) >= assets, urls
    for url in local:
        assert anonymous.get(url).status_code == 200, url


def test_schemathesis_with_every_check_finds_no_failure(service, tmp_path):
    """The issue's yardstick: schemathesis with all its checks (status codes, headers, response
    schemas, positive data accepted, negative data rejected, methods and Allow) over its examples,
    coverage and fuzzing phases, bounded. A refit per case would only repeat one slow call."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", service.base + "/openapi.json",
        "--checks", "all", "--header", f"X-API-Key: {API_KEY}", "--phases", "examples,coverage,fuzzing",
        "--max-examples", "15", "--seed", "23", "--workers", "1", "--request-timeout", "60",
        "--exclude-path", "/v1/segments/recompute", "--suppress-health-check", "all", "--no-color",
    ]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.deployments.schemathesis_hooks", "PYTHONPATH": str(root)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    failures = result.stdout[result.stdout.find("=== FAILURES ==="):] if "=== FAILURES ===" in result.stdout else result.stdout
    assert result.returncode == 0, failures[:30000] + result.stderr[-2000:]
