"""Serving replicas run at the default CPU priority, not at the nice 15 Ray gives its workers:
otherwise anything started at the default priority beside them, a training job's driver or a
worker still booting, takes the CPU first."""

import os
from pathlib import Path

PREFIX = "ray::ServeReplica:dynrec:"


def replica_nice_values(deployment: str) -> list[int]:
    """Nice values of this machine's processes that Ray titled as the deployment's replicas."""
    values = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        # "ray::ServeReplica:dynrec:Ranker", or with ".<method>" while it runs a call
        if title.startswith(PREFIX) and title[len(PREFIX):].split(".")[0].split(" ")[0] == deployment:
            values.append(os.getpriority(os.PRIO_PROCESS, int(entry.name)))
    return values


def test_replicas_run_at_the_default_priority(service):
    assert service.get("/healthz").status_code == 200
    ranker, ingress = replica_nice_values("Ranker"), replica_nice_values("Ingress")
    assert len(ranker) >= 2 and ingress  # the fixture starts two Ranker replicas
    assert set(ranker + ingress) == {0}
