"""Faults under load: kill the UserState replica, then a Ranker replica, and count what is lost.

    .venv/bin/python -m bench.faults [--rate 8] [--seconds 60]

Starts `serve run serve_config.yaml` (ML-1M, the embedded SQLite state store) and sends an
open-loop mix at `--rate`: half event posts, each from a user of its own (so every acknowledged
event can be checked afterwards), half recommendation requests. A third of the way in, the
UserState replica's actor is killed (Serve starts a new one, which recovers from its snapshot and
the log); two thirds in, a Ranker replica's. Then every acknowledged event is looked up through
`GET /v1/users/{id}`.

Writes bench/results/faults.json with `acked_events_lost` (must be 0), `failed_requests`, and
`back_s` (from the kill until the first answer to a request sent after it: the replacement
replica serving), `recovery_s` (from the kill until the last request it failed or held up for more
than a second, among those sent before the replica was back, was answered), per fault too
(`user_state_recovery_s`, `ranker_recovery_s`), and prints a table. Both count from the moment of
the kill (the killing driver's own start-up, seconds under load, is not the service's), and both
include Ray starting the replacement's process and importing the model stack, as well as its boot
from the store's snapshots. Requests slow for other reasons after the replica is back (this
machine's other load) do not count as held up by the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import requests
import yaml

from bench.common import ROOT, cluster_address, machine, start_serve, stop_serve, write_results
from dynrec.client import wait_until_ok

BASE = "http://127.0.0.1:8000"
STALL_S = 1.0  # a request answered later than this after a kill counts as held up by it


def start_service(folder: Path):
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    for app in config["applications"]:
        app["logging_config"] = {"enable_access_log": False}
    path = folder / "serve_faults.yaml"
    path.write_text(yaml.safe_dump(config))
    return start_serve(path, folder / "serve.log")


def wait_healthy(timeout_s: float = 900) -> None:
    wait_until_ok(lambda: requests.get(f"{BASE}/healthz", timeout=5), timeout_s, every_s=2)


def kill_replica(deployment: str, address: str) -> tuple[str, float]:
    """Kill one replica actor of `deployment` (Serve replaces it), from a driver on the cluster;
    returns the replica's name and the wall-clock time of the kill."""
    script = (
        "import ray, sys\n"
        f"ray.init(address='{address}', namespace='serve', log_to_driver=False)\n"
        "names = [a['name'] for a in ray.util.list_named_actors(all_namespaces=True)\n"
        f"         if a['name'].startswith('SERVE_REPLICA::dynrec#{deployment}#')]\n"
        "import time\n"
        "ray.kill(ray.get_actor(names[0], namespace='serve'), no_restart=True)\n"
        "print(names[0], repr(time.time()))\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    name, at = done.stdout.strip().splitlines()[-1].split()
    return name, float(at)


async def load(rate: float, seconds: float, kills: dict[float, str], address: str) -> dict:
    """Open-loop load; fires the kills at their offsets; returns acks, failures and kill times."""
    acked: list[tuple[str, str]] = []
    failures: list[tuple[float, str]] = []
    latencies: list[tuple[float, float]] = []  # (sent, seconds) of successful requests
    killed_at: dict[str, float] = {}
    killed: dict[str, str] = {}
    items = [str(i) for i in (1, 2, 10, 34, 39, 50, 110, 260, 296, 318, 356, 480, 527, 589, 593)]

    async def one(session, n: int):
        sent = time.monotonic()
        if n % 2:
            user, item = f"fault-{n}", items[n % len(items)]
            body, path = {"events": [{"user_id": user, "item_id": item, "event_type": "rating", "value": 4}]}, "/v1/events"
        else:
            body, path = {"user_id": str(1 + n % 2999), "num_results": 10}, "/v1/recommendations"
        try:
            async with session.post(BASE + path, json=body) as response:
                payload = await response.json(content_type=None)
                if response.status == 200:
                    latencies.append((sent, time.monotonic() - sent))
                    if path == "/v1/events" and payload.get("accepted") == 1:
                        acked.append((user, item))
                    return
                failures.append((sent, f"{path} {response.status}"))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            failures.append((sent, f"{path} {type(exc).__name__}"))

    async def fire(offset: float, deployment: str, start: float):
        await asyncio.sleep(offset)
        killed[deployment], wall = await asyncio.to_thread(kill_replica, deployment, address)
        killed_at[deployment] = time.monotonic() - (time.time() - wall)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()
        killers = [asyncio.create_task(fire(offset, deployment, start)) for offset, deployment in kills.items()]
        tasks = []
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, n)))
        await asyncio.gather(*tasks, *killers)
    return {"acked": acked, "failures": failures, "latencies": latencies, "killed_at": killed_at, "killed": killed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = start_service(Path(folder))
        try:
            wait_healthy()
            kills = {args.seconds / 3: "UserState", 2 * args.seconds / 3: "Ranker"}
            load_before = os.getloadavg()  # other work on the machine shows here
            outcome = asyncio.run(load(args.rate, args.seconds, kills, cluster_address(server)))
            wait_healthy()
            lost = []
            for user, item in outcome["acked"]:
                described = requests.get(f"{BASE}/v1/users/{user}", timeout=30).json()
                if item not in [r["item_id"] for r in described.get("recent", [])]:
                    lost.append(user)
        finally:
            stop_serve(server)
    ordered = sorted(outcome["killed_at"].items(), key=lambda kv: kv[1])
    phases = {}
    for index, (deployment, at) in enumerate(ordered):
        until = ordered[index + 1][1] if index + 1 < len(ordered) else float("inf")
        failed = [t for t, _ in outcome["failures"] if at <= t < until]
        # back: the first answer to a request sent after the kill (the old replica cannot have served it)
        back = min((t + d for t, d in outcome["latencies"] if at <= t < until), default=until)
        # requests the dead replica held up: sent before it was back, then failed or answered only after STALL_S
        stalled = [t + d for t, d in outcome["latencies"] if at - STALL_S <= t < back and d > STALL_S]
        ends = stalled + [t for t in failed]
        phases[deployment] = {"replica": outcome["killed"][deployment], "failed_requests": len(failed),
                              "stalled_requests": len(stalled), "back_s": back - at,
                              "recovery_s": (max(ends) - at) if ends else 0.0,
                              "max_latency_s": max((d for t, d in outcome["latencies"] if at <= t < until), default=0.0)}
    results = {
        "acked_events_lost": len(lost),
        "acked_events": len(outcome["acked"]),
        "failed_requests": len(outcome["failures"]),
        "failure_kinds": sorted({kind for _, kind in outcome["failures"]}),
        "recovery_s": max((p["recovery_s"] for p in phases.values()), default=0.0),
        "user_state_recovery_s": phases.get("UserState", {}).get("recovery_s"),
        "ranker_recovery_s": phases.get("Ranker", {}).get("recovery_s"),
        "user_state_back_s": phases.get("UserState", {}).get("back_s"),
        "ranker_back_s": phases.get("Ranker", {}).get("back_s"),
        "faults": phases,
        "settings": vars(args),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
    }
    path = write_results("faults", results)
    print(f"\n{'fault':<12}{'failed':>8}{'held up':>9}{'back s':>8}{'recovery s':>12}{'max latency s':>15}")
    for deployment, phase in phases.items():
        print(f"{deployment:<12}{phase['failed_requests']:>8}{phase['stalled_requests']:>9}{phase['back_s']:>8.1f}"
              f"{phase['recovery_s']:>12.1f}{phase['max_latency_s']:>15.1f}")
    print(f"\nacknowledged events: {results['acked_events']}, lost: {results['acked_events_lost']}\nwrote {path}")


if __name__ == "__main__":
    main()
