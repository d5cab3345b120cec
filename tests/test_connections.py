"""Shared connections: one client per backend and connection options, closed by its last user."""

from __future__ import annotations

import asyncio
import threading

from sd_core._connections import Connections


class Client:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class AsyncClient:
    def __init__(self) -> None:
        self.closed_on: str | None = None

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.closed_on = threading.current_thread().name


def test_one_client_per_backend_and_options_closed_by_the_last_user() -> None:
    registry = Connections()
    opened: list[Client] = []

    def open_client() -> Client:
        opened.append(Client(f"c{len(opened)}"))
        return opened[-1]

    leases = [
        registry.lease("consul", {"address": "a:1", "tags": ["x"]}, open_client) for _ in range(5)
    ]
    other = registry.lease("consul", {"address": "b:1", "tags": ["x"]}, open_client)
    etcd = registry.lease("etcd", {"address": "a:1", "tags": ["x"]}, open_client)
    assert len(opened) == 3
    assert {lease.client for lease in leases} == {opened[0]}
    assert registry.count("consul") == 2 and registry.count() == 3
    for lease in leases[:-1]:
        lease.release()
        lease.release()  # idempotent
    assert opened[0].closed == 0
    assert registry.users("consul", {"address": "a:1", "tags": ["x"]}) == 1
    leases[-1].release()
    assert opened[0].closed == 1
    again = registry.lease("consul", {"address": "a:1", "tags": ["x"]}, open_client)
    assert again.client is opened[3]  # a new client once the old one closed
    registry.close_all()
    assert [c.closed for c in opened] == [1, 1, 1, 1]
    other.release()  # after close_all: nothing to do
    etcd.release()


def test_an_async_client_is_closed_on_the_core_loop() -> None:
    registry = Connections()
    client = AsyncClient()
    lease = registry.lease("etcd", {"address": "a:1"}, lambda: client)
    lease.release()
    assert client.closed_on == "sd-loop"
