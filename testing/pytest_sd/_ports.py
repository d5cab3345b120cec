"""Free loopback ports for test servers."""

from __future__ import annotations

import random
import socket
import threading

HOST = "127.0.0.1"

# Ports are drawn below Linux's ephemeral range (32768+), so that the kernel never hands one of
# them to an outgoing connection between the check here and the server's bind.
_LOW, _HIGH = 15000, 32000
_handed_out: set[int] = set()
_lock = threading.Lock()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                return False
    return True


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports free on 127.0.0.1 for both TCP and UDP.

    A port is never handed out twice in one process, so servers that are stopped and started
    again keep their ports without another server taking them.
    """
    ports: list[int] = []
    with _lock:
        for _ in range(10_000):
            if len(ports) == count:
                return ports
            port = random.randint(_LOW, _HIGH)
            if port in _handed_out or not _bindable(port):
                continue
            _handed_out.add(port)
            ports.append(port)
    raise RuntimeError(f"could not find {count} free loopback ports")


def free_port() -> int:
    """Return one free loopback port (TCP and UDP)."""
    return free_ports(1)[0]


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
