"""What instancers cost, per watch style: threads, memory and sockets for 100 and 1,000
instancers, and the CPU of an idle process holding 100.

Styles: blocking (a function in a thread each), async (coroutines on the core's one loop),
push (the backend's callbacks, no thread of ours), each over an in-memory registry; and the
real Consul backend (blocking queries) on one agent through ``pytest_sd``: 100 instancers of
one service (one shared watch) and 100 of 100 services (one shared client).

Run: ``uv run python bench/bench_kit.py [--quick] [--idle SECONDS]``. Each figure is the
increase over the process before the instancers existed; memory is the Python heap traced by
tracemalloc (which slows the creation times printed) and the resident set size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from sd_core import Instance, Instancer
from sd_core._async_watch import AsyncWatchContext, AsyncWatchInstancer
from sd_core._connections import connections
from sd_core._push import PushContext, PushInstancer
from sd_core._watch import WatchContext, WatchInstancer

A = Instance("10.0.0.1", 1, id="a")


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def blocking(_: int) -> Instancer:
    def watch(ctx: WatchContext) -> None:
        ctx.publish([A])
        ctx.wait(None)

    return WatchInstancer(watch, name="bench-blocking")


def asynchronous(_: int) -> Instancer:
    async def watch(ctx: AsyncWatchContext) -> None:
        ctx.publish([A])
        await asyncio.Event().wait()

    return AsyncWatchInstancer(watch, name="bench-async")


def push(_: int) -> Instancer:
    def start(ctx: PushContext) -> None:
        ctx.publish([A])

    return PushInstancer(start, name="bench-push")


def measure(
    label: str, make: Callable[[int], Instancer], count: int, idle: float, backend: str = ""
) -> None:
    gc.collect()
    threads0, rss0, socks0 = threading.active_count(), rss_kib(), sockets()
    heap0 = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    instancers = [make(n) for n in range(count)]
    for instancer in instancers:  # every one has answered
        with instancer.subscribe() as sub:
            sub.get(30)
    made = time.perf_counter() - started
    gc.collect()
    threads, rss, socks = threading.active_count(), rss_kib(), sockets()
    heap = tracemalloc.get_traced_memory()[0] - heap0
    cpu = ""
    if idle and count == 100:
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(idle)
        share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        cpu = f"  idle CPU {share * 100:6.3f} % of a core"
    clients = f"  clients {connections().count(backend)}" if backend else ""
    for instancer in instancers:
        instancer.stop()
    print(
        f"{label:<28}{count:>6}  threads +{threads - threads0:<5} "
        f"heap +{heap / count / 1024:6.1f} KiB each (RSS +{(rss - rss0) / 1024:5.1f} MiB)  "
        f"sockets +{socks - socks0:<4} made in {made:6.2f} s{clients}{cpu}"
    )


def consul_rows(idle: float, quick: bool) -> None:
    from pytest_sd.consul import ConsulServer

    import sd_core

    with tempfile.TemporaryDirectory() as folder:
        server = ConsulServer(Path(folder))
        server.start()
        try:
            options = {"address": server.address, "wait": 30.0}

            def one_service(_: int) -> Instancer:
                return sd_core.instancer("consul", "bench-one", **options)

            def own_service(n: int) -> Instancer:
                return sd_core.instancer("consul", f"bench-{n}", **options)

            measure("consul, one service", one_service, 100, idle, "consul")
            if not quick:
                measure("consul, 100 services", own_service, 100, idle, "consul")
            print(f"  consul clients open afterwards: {connections().count('consul')}")
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that checks it works")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measurement")
    args = parser.parse_args()
    tracemalloc.start()
    idle = 0.5 if args.quick else args.idle
    counts = (100,) if args.quick else (100, 1000)
    print(f"{'style':<28}{'count':>6}  (each figure: the increase over the process before)")
    for label, make in (
        ("blocking (thread each)", blocking),
        ("async (core loop)", asynchronous),
        ("push (callbacks)", push),
    ):
        for count in counts:
            measure(label, make, count, idle)
    consul_rows(idle, args.quick)


if __name__ == "__main__":
    main()
