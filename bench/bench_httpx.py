"""Cost of calling through sd_core.httpx (run: python bench/bench_httpx.py [--quick]).

1. Overhead per request of ``Transport`` over a plain ``httpx.Client`` to one fixed server:
   the same sequential GETs to the same server, through both, in short alternating rounds of
   one run (sync, then async); wall-clock and CPU time (of this process only: the least
   disturbed by a loaded machine) per request, minimum and median over the rounds, and their
   ratios.
2. Requests per second with 3 instances: several threads (sync) or tasks (async) sharing one
   client whose transport balances over three servers, beside a plain client to one server
   with the same concurrency (httpx's own pool is slower under concurrency than alone).

The servers are minimal keep-alive HTTP/1.1 servers (asyncio), each in a process of its own, so
that the figures measure the client. Figures vary with the machine and its load: compare the
rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx

from sd_core import FixedInstancer, Instance, LeastPending
from sd_core.httpx import AsyncTransport, Transport

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# -- the servers ---------------------------------------------------------------------------------


class _Answer(asyncio.Protocol):
    """Answers every request (GETs without a body) with RESPONSE, keeping the connection."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4 :]
            self.transport.write(RESPONSE)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Answer, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


class Servers:
    """Server processes on loopback ports."""

    def __init__(self, count: int) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
            )
            for _ in range(count)
        ]
        try:
            self.ports = [int(proc.stdout.readline()) for proc in self.procs]  # type: ignore[union-attr]
        except ValueError:
            self.close()
            raise

    def instances(self) -> list[Instance]:
        return [Instance("127.0.0.1", port, id=f"server-{i}") for i, port in enumerate(self.ports)]

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


# -- measuring -----------------------------------------------------------------------------------


def per_request(get: Callable[[], object], requests: int) -> tuple[float, float]:
    """(wall-clock, CPU) microseconds per request of ``requests`` sequential calls; the CPU
    time is this process's only (the server runs in another), the least disturbed by load."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        get()
    return (
        (time.perf_counter() - wall) / requests * 1e6,
        (time.process_time() - cpu) / requests * 1e6,
    )


async def aper_request(client: httpx.AsyncClient, url: str, requests: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await client.get(url)
    return (
        (time.perf_counter() - wall) / requests * 1e6,
        (time.process_time() - cpu) / requests * 1e6,
    )


def report_overhead(
    kind: str, plain: list[tuple[float, float]], routed: list[tuple[float, float]], size: int
) -> None:
    print(
        f"{kind} overhead per request over a plain client to one fixed server "
        f"({len(plain)} alternating rounds of {size}):"
    )
    print("                 wall min   wall median    CPU min   CPU median")
    figures = []
    for name, rounds in (("plain httpx", plain), ("sd Transport", routed)):
        wall = [w for w, _ in rounds]
        cpu = [c for _, c in rounds]
        row = (min(wall), statistics.median(wall), min(cpu), statistics.median(cpu))
        figures.append(row)
        print((f"  {name:<13}" + "".join(f"{x:9.1f} us " for x in row)).rstrip())
    ratios = [r / p for p, r in zip(*figures, strict=True)]
    print((f"  {'ratio':<13}" + "".join(f"{x:9.2f}    " for x in ratios)).rstrip())
    extra = figures[1][3] - figures[0][3]
    print(f"  the transport adds {extra:.1f} us of CPU a request (medians)")


def bench_overhead(port: int, instance: Instance, requests: int, rounds: int) -> None:
    url = f"http://127.0.0.1:{port}/"
    plain_client = httpx.Client()
    routed_client = httpx.Client(transport=Transport({"svc": FixedInstancer([instance])}))
    try:
        plain_client.get(url)  # connections open, outside the timing
        routed_client.get("http://svc/")
        plain: list[tuple[float, float]] = []
        routed: list[tuple[float, float]] = []
        for _ in range(rounds):
            plain.append(per_request(lambda: plain_client.get(url), requests))
            routed.append(per_request(lambda: routed_client.get("http://svc/"), requests))
    finally:
        plain_client.close()
        routed_client.close()
    report_overhead("sync", plain, routed, requests)


async def abench_overhead(port: int, instance: Instance, requests: int, rounds: int) -> None:
    url = f"http://127.0.0.1:{port}/"
    transport = AsyncTransport({"svc": FixedInstancer([instance])})
    async with (
        httpx.AsyncClient() as plain_client,
        httpx.AsyncClient(transport=transport) as routed_client,
    ):
        await plain_client.get(url)
        await routed_client.get("http://svc/")
        plain: list[tuple[float, float]] = []
        routed: list[tuple[float, float]] = []
        for _ in range(rounds):
            plain.append(await aper_request(plain_client, url, requests))
            routed.append(await aper_request(routed_client, "http://svc/", requests))
    report_overhead("async", plain, routed, requests)


def _shares(served: Counter[str], instances: list[Instance]) -> str:
    return ", ".join(str(served[i.id]) for i in instances)


def bench_throughput(port: int, instances: list[Instance], threads: int, requests: int) -> None:
    """Sync: ``threads`` threads sharing one client, ``requests`` GETs each."""
    served: Counter[str] = Counter()
    lock = threading.Lock()

    def run(client: httpx.Client, url: str) -> float:
        def work() -> None:
            mine: Counter[str] = Counter()
            for _ in range(requests):
                instance = client.get(url).extensions.get("sd_instance")
                mine[instance.id if instance is not None else "plain"] += 1
            with lock:
                served.update(mine)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return threads * requests / (time.perf_counter() - started)

    with httpx.Client() as client:
        plain = run(client, f"http://127.0.0.1:{port}/")
    transport = Transport({"svc": FixedInstancer(instances)}, balancer=LeastPending)
    with httpx.Client(transport=transport) as client:
        routed = run(client, "http://svc/")
    print(
        f"  sync,  {threads} threads: plain httpx to 1 server {plain:6.0f}/s, "
        f"sd Transport over 3 {routed:6.0f}/s (per instance: {_shares(served, instances)})"
    )


async def abench_throughput(
    port: int, instances: list[Instance], tasks: int, requests: int
) -> None:
    """Async: ``tasks`` tasks sharing one client, ``requests`` GETs each."""
    served: Counter[str] = Counter()

    async def run(client: httpx.AsyncClient, url: str) -> float:
        async def work() -> None:
            for _ in range(requests):
                instance = (await client.get(url)).extensions.get("sd_instance")
                served[instance.id if instance is not None else "plain"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(tasks)))
        return tasks * requests / (time.perf_counter() - started)

    async with httpx.AsyncClient() as client:
        plain = await run(client, f"http://127.0.0.1:{port}/")
    transport = AsyncTransport({"svc": FixedInstancer(instances)}, balancer=LeastPending)
    async with httpx.AsyncClient(transport=transport) as client:
        routed = await run(client, "http://svc/")
    print(
        f"  async, {tasks} tasks:  plain httpx to 1 server {plain:6.0f}/s, "
        f"sd Transport over 3 {routed:6.0f}/s (per instance: {_shares(served, instances)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (for the tests)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve())
        return
    requests, rounds = (50, 6) if args.quick else (100, 40)
    servers = Servers(3)
    try:
        instances = servers.instances()
        bench_overhead(servers.ports[0], instances[0], requests, rounds)
        asyncio.run(abench_overhead(servers.ports[0], instances[0], requests, rounds))
        print("requests per second with 3 instances (LeastPending):")
        port = servers.ports[0]
        bench_throughput(port, instances, 4, 25 if args.quick else 500)
        asyncio.run(abench_throughput(port, instances, 16, 6 if args.quick else 120))
    finally:
        servers.close()


if __name__ == "__main__":
    main()
