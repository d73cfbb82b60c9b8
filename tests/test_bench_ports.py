"""The side ports a Serve app under test gets for HAProxy (bench/common.py)."""

import socket

from bench.common import RAY_WORKER_PORTS_MAX, ephemeral_ports_start, haproxy_side_ports


def test_haproxy_side_ports_are_free_distinct_and_outside_ray_and_ephemeral_ports():
    """Outside the ephemeral range, no outgoing connection can take one before HAProxy binds it."""
    for _ in range(20):
        ports = [int(port) for port in haproxy_side_ports().values()]
        assert len(set(ports)) == 2
        assert all(RAY_WORKER_PORTS_MAX < port < ephemeral_ports_start() for port in ports)
        for port in ports:
            with socket.socket() as sock:
                sock.bind(("0.0.0.0", port))
