"""Shared by the benchmarks: where results go and how they are written."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from deployments.common import SERVE_ENVIRONMENT

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, data: dict[str, Any], merge: bool = False) -> Path:
    """Write `bench/results/<name>.json`; with `merge`, update the top-level keys of what is there."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    if merge and path.exists():
        existing = json.loads(path.read_text())
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(existing.get(key), dict):
                existing[key].update(value)
            else:
                existing[key] = value
        data = existing
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def machine() -> dict[str, Any]:
    """The host a figure came from: CPU count and model, and the units that pick the encoder paths."""
    import os

    from dynrec.encoders.paths import cpu_label, cpuinfo

    return {"cpus": os.cpu_count(), "cpu_model": cpuinfo().get("model name", ""), "cpu_units": cpu_label(),
            "python": platform.python_version(), "machine": platform.machine()}


ROOT = Path(__file__).resolve().parent.parent


RAY_WORKER_PORTS_MAX = 19999  # Ray's default max_worker_port: its workers listen on 10002-19999


def ephemeral_ports_start() -> int:
    """The first port the kernel hands to outgoing connections (Linux's default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def haproxy_side_ports() -> dict[str, str]:
    """Free ports for HAProxy's stats and metrics listeners (Serve's defaults, 8404 and 9101, are
    fixed), so this app can start while another Serve app runs on the machine.

    They are drawn between Ray's worker ports and the kernel's ephemeral range: a port from the
    ephemeral range, free when drawn, was once taken by one of Ray's outgoing connections before
    HAProxy bound it, and the app failed to start (a CI run, 61 tests)."""
    import random

    ports: dict[str, str] = {}
    low, high = RAY_WORKER_PORTS_MAX + 1, max(RAY_WORKER_PORTS_MAX + 2, ephemeral_ports_start() - 1)
    for key in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
        while key not in ports:
            port = random.randint(low, high)
            with socket.socket() as sock:
                try:
                    sock.bind(("0.0.0.0", port))
                except OSError:
                    continue
            if str(port) not in ports.values():
                ports[key] = str(port)
    return ports


def start_serve(config: Path, log: Path, port: int = 8000, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`serve run <config>` in its own process group (so it can be stopped whole), logging to `log`,
    with `env` added to this process's environment.
    Refuses to start while something listens on `port`: HAProxy binds with SO_REUSEPORT, so a
    second app on the port would silently take a share of the bench's requests."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} is in use: stop the other service first")
    environment = {**SERVE_ENVIRONMENT, **os.environ, **haproxy_side_ports(), "RAY_AUTH_MODE": "disabled",
                   "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log, "w") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "serve"), "run", str(config)], cwd=ROOT, env=environment,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def process_tree(root: int) -> list[int]:
    """`root` and every descendant, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def cluster_address(server: subprocess.Popen, timeout_s: float = 120) -> str:
    """The GCS address of the Ray cluster `serve run` (started as `server`) runs on, read from its
    raylet's command line: `address="auto"` would pick whichever cluster on the machine started
    last."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in process_tree(server.pid):
            try:
                arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(a.endswith(b"/raylet") for a in arguments[:1]):
                for argument in arguments:
                    if argument.startswith(b"--gcs-address="):
                        return argument.split(b"=", 1)[1].decode()
        time.sleep(1)
    raise TimeoutError("no raylet of the serve run process found")


def started_at(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), which tells it from a later one with its id."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def stop_serve(server: subprocess.Popen) -> None:
    """Ctrl-C to the whole group (Serve shuts down cleanly), then a kill if it takes over a minute;
    then SIGTERM to any process of the app still alive. HAProxy runs in a process group of its own
    and outlives a killed Ray, still holding port 8000, so it is stopped here by its id."""
    started = {pid: started_at(pid) for pid in process_tree(server.pid)}
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    for pid, start in started.items():
        if start is not None and started_at(pid) == start:
            with contextlib.suppress(ProcessLookupError):  # it may end between the two lines
                os.kill(pid, signal.SIGTERM)
