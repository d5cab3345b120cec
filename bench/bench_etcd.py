"""etcd backend: propagation latency, a service of many instances, many instancers.

Starts its own etcd (3.5 by default, ``--etcd 3.4`` for the other) on loopback ports with
pytest-sd's ``EtcdServer`` (install it with ``bash scripts/install-backends``), then measures

* register -> subscriber sees the instance, and deregister -> subscriber sees it gone, over
  ``--trials`` trials (p50 / p99 / max; target p99 <= 50 ms on loopback), from the moment the
  call returned and from the moment it was made;
* a service of ``--instances`` instances (written in transactions of 128 keys): the time from
  making the instancer to its first full set, and the memory it holds (Python heap, by
  tracemalloc, and the growth of the process's resident set);
* ``--instancers`` instancers of as many services: the threads, the clients (gRPC channels)
  and the TCP connections to etcd they add, and the time until each has its first set.

Run: ``uv run python bench/bench_etcd.py [--trials 200] [--instances 10000]
[--instancers 1000]``; ``--quick`` runs a small version of each in a few seconds. Bounded:
every wait has a deadline. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from pytest_sd.etcd import EtcdServer

import sd_core
from sd_core import Event, Registration
from sd_core.plugin import connections

TIMEOUT = 10.0
TXN_OPS = 128
"""etcd's default --max-txn-ops."""


def wait(sub: sd_core.Subscription, check: object, what: str, timeout: float = TIMEOUT) -> Event:
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        event: Event = sub.get(remaining)
        if callable(check) and check(event):
            return event
    raise TimeoutError(f"no event with {what} within {timeout:g} s")


def quantiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"p50 {statistics.median(ms):6.2f} ms   p99 {p99:6.2f} ms   max {ms[-1]:6.2f} ms"
        f"   (n={len(ms)})"
    )


def propagation(address: str, trials: int) -> None:
    service = "bench-propagation"
    times: dict[str, list[float]] = {"up": [], "up_call": [], "down": [], "down_call": []}
    instancer = sd_core.instancer("etcd", service, address=address)
    try:
        with instancer.subscribe() as sub:
            wait(sub, lambda e: e.ok, "a first set")
            for trial in range(trials):
                reg = Registration(service, "127.0.0.1", 30000 + trial % 1000, id=f"i{trial}")
                registrar = sd_core.registrar("etcd", reg, address=address)
                try:
                    called = time.perf_counter()
                    registrar.register()
                    returned = time.perf_counter()
                    wait(sub, lambda e, r=reg.id: any(i.id == r for i in e.instances), reg.id)
                    seen = time.perf_counter()
                    times["up"].append(seen - returned)
                    times["up_call"].append(seen - called)
                    called = time.perf_counter()
                    registrar.deregister()
                    returned = time.perf_counter()
                    wait(sub, lambda e: e.ok and not e.instances, f"{reg.id} gone")
                    seen = time.perf_counter()
                    times["down"].append(seen - returned)
                    times["down_call"].append(seen - called)
                finally:
                    registrar.close()
    finally:
        instancer.stop()
    print(f"propagation over {trials} trials (subscriber sees the change):")
    print(f"  register   after the call returned: {quantiles(times['up'])}")
    print(f"  register   from the call:           {quantiles(times['up_call'])}")
    print(f"  deregister after the call returned: {quantiles(times['down'])}")
    print(f"  deregister from the call:           {quantiles(times['down_call'])}")


async def _write(address: str, prefix: str, count: int) -> None:
    import aetcd  # type: ignore[import-untyped]

    host, port = address.rsplit(":", 1)
    async with aetcd.Client(host, int(port), timeout=30) as client:
        for start in range(0, count, TXN_OPS):
            puts = [
                client.transactions.put(
                    f"{prefix}i{n:05d}".encode(),
                    f'{{"host":"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",'
                    f'"port":8080,"tags":["bench"],"meta":{{"n":"{n}"}},"weight":1}}'.encode(),
                )
                for n in range(start, min(count, start + TXN_OPS))
            ]
            await client.transaction(compare=[], success=puts, failure=[])


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _first_full_set(address: str, service: str, count: int) -> float:
    made = time.perf_counter()
    instancer = sd_core.instancer("etcd", service, address=address, timeout=30)
    try:
        with instancer.subscribe() as sub:
            wait(sub, lambda e: len(e.instances) == count, f"{count} instances", 60.0)
            return time.perf_counter() - made
    finally:
        instancer.stop()


def large_service(address: str, count: int) -> None:
    service = "bench-large"
    started = time.perf_counter()
    asyncio.run(_write(address, f"/services/{service}/", count))
    print(f"a service of {count:,} instances ({time.perf_counter() - started:.1f} s to write):")
    first = [_first_full_set(address, service, count) for _ in range(3)]
    best, worst = min(first) * 1000, max(first) * 1000
    print(f"  time to the first full set: {best:8.1f} ms (best of 3; worst {worst:.1f} ms)")
    # Memory on its own run: tracemalloc slows every allocation down.
    gc.collect()
    tracemalloc.start()
    heap_before, rss_before = tracemalloc.get_traced_memory()[0], _rss()
    instancer = sd_core.instancer("etcd", service, address=address, timeout=30)
    try:
        with instancer.subscribe() as sub:
            wait(sub, lambda e: len(e.instances) == count, f"{count} instances", 60.0)
            gc.collect()
            heap = tracemalloc.get_traced_memory()[0] - heap_before
            rss = _rss() - rss_before
    finally:
        instancer.stop()
        tracemalloc.stop()
    print(f"  memory of the instancer:    {heap / 1e6:8.1f} MB Python heap (tracemalloc)")
    print(f"                              {rss / 1e6:8.1f} MB resident set growth")


def _tcp_connections_to(port: int) -> int:
    wanted = f":{port:04X}"
    count = 0
    inodes = set()
    for entry in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(wanted) and fields[9] in inodes and fields[3] == "01":
                count += 1
    return count


def many_instancers(address: str, count: int) -> None:
    port = int(address.rsplit(":", 1)[1])
    threads_before = threading.active_count()
    clients_before = connections().count("etcd")
    started = time.perf_counter()
    instancers = [
        sd_core.instancer("etcd", f"bench-many-{i}", address=address) for i in range(count)
    ]
    try:
        for instancer in instancers:
            with instancer.subscribe() as sub:
                wait(sub, lambda e: e.ok, "a first set", 60.0)
        ready = time.perf_counter() - started
        threads = threading.active_count() - threads_before
        clients = connections().count("etcd") - clients_before
        sockets = _tcp_connections_to(port)
    finally:
        for instancer in instancers:
            instancer.stop()
    print(f"{count:,} instancers of {count:,} services:")
    print(f"  threads added: {threads}   clients (gRPC channels) added: {clients}")
    print(f"  TCP connections to etcd: {sockets}")
    print(f"  every first set within {ready:.2f} s of making the first instancer")
    print(f"  etcd clients open afterwards: {connections().count('etcd') - clients_before}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--instancers", type=int, default=1_000)
    parser.add_argument("--etcd", choices=("3.4", "3.5"), default="3.5")
    parser.add_argument("--quick", action="store_true", help="small figures, in seconds")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.instances, args.instancers = 20, 1_000, 100
    with tempfile.TemporaryDirectory() as folder:
        server = EtcdServer(Path(folder), args.etcd, name="etcd-bench")
        server.start()
        try:
            print(f"etcd {args.etcd} at {server.address}")
            propagation(server.address, args.trials)
            large_service(server.address, args.instances)
            many_instancers(server.address, args.instancers)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
