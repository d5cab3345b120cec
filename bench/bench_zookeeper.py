"""ZooKeeper backend: propagation latency, and what watching 1,000 services costs.

Starts its own ZooKeeper 3.8 server on a loopback port with pytest-sd's ``ZooKeeperServer``
(install it with ``bash scripts/install-backends``), then measures

* register -> subscriber sees the instance, and deregister -> subscriber sees it gone, over
  ``--trials`` trials (p50 / p99 / max; target p99 <= 50 ms on loopback);
* ``--services`` instancers of distinct services with one instance each, in this process:
  sessions (shared clients) open, threads, the time until every one has its set, and memory
  (RSS, and the Python heap by tracemalloc).

Run: ``uv run python bench/bench_zookeeper.py [--trials 200] [--services 1000]``;
``--quick`` runs in a few seconds. Bounded: every wait has a deadline, and a trial that times
out is reported as a failure. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from pytest_sd.zookeeper import ZooKeeperServer

import sd_core
from sd_core import Event, Registration
from sd_core.plugin import connections

TIMEOUT = 5.0


def wait(sub: sd_core.Subscription, present: bool, instance_id: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        event: Event = sub.get(remaining)
        seen = any(i.id == instance_id for i in event.instances)
        if event.ok and seen is present:
            return
    raise TimeoutError(f"instance {instance_id} {'not seen' if present else 'not gone'}")


def quantiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"p50 {statistics.median(ms):6.2f} ms   p99 {p99:6.2f} ms   max {ms[-1]:6.2f} ms"
        f"   (n={len(ms)})"
    )


def propagation(options: dict[str, object], trials: int) -> dict[str, list[float]]:
    service = "bench-propagation"
    times: dict[str, list[float]] = {"up": [], "down": []}
    with (
        sd_core.instancer("zookeeper", service, **options) as instancer,
        instancer.subscribe() as sub,
    ):
        first = sub.get(TIMEOUT)
        assert first.ok, first
        for trial in range(trials):
            reg = Registration(service, "127.0.0.1", 30000 + trial % 1000, id=f"i{trial}")
            registrar = sd_core.registrar("zookeeper", reg, **options)
            start = time.perf_counter()
            registrar.register()
            wait(sub, True, reg.id)
            times["up"].append(time.perf_counter() - start)
            start = time.perf_counter()
            registrar.deregister()
            wait(sub, False, reg.id)
            times["down"].append(time.perf_counter() - start)
            registrar.close()
    return times


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def many_services(options: dict[str, object], count: int) -> None:
    base_threads, base_rss = threading.active_count(), rss_mib()
    names = [f"bench-svc-{n}" for n in range(count)]
    registrars = [
        sd_core.registrar(
            "zookeeper", Registration(name, "127.0.0.1", 40000 + n % 1000, id="a"), **options
        )
        for n, name in enumerate(names)
    ]
    start = time.perf_counter()
    for registrar in registrars:
        registrar.register()
    registered = time.perf_counter() - start
    tracemalloc.start()
    heap_before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    instancers = [sd_core.instancer("zookeeper", name, **options) for name in names]
    subs = [instancer.subscribe() for instancer in instancers]
    deadline = time.monotonic() + 60
    for sub in subs:
        while True:
            event = sub.get(max(0.01, deadline - time.monotonic()))
            if event.ok and len(event.instances) == 1:
                break
    ready = time.perf_counter() - start
    heap = tracemalloc.get_traced_memory()[0] - heap_before
    tracemalloc.stop()
    print(f"{count} services registered in {registered:.2f} s; watched, every set in {ready:.2f} s")
    print(
        f"sessions open: {connections().count('zookeeper')}   threads: +"
        f"{threading.active_count() - base_threads} (of which registrars' keepalive "
        f"threads: {sum(t.name.startswith('sd-keepalive') for t in threading.enumerate())})"
    )
    print(
        f"memory: RSS +{rss_mib() - base_rss:.1f} MiB   Python heap of the instancers "
        f"{heap / 1024 / 1024:.1f} MiB ({heap / count / 1024:.1f} KiB per service)"
    )
    for sub in subs:
        sub.close()
    for instancer in instancers:
        instancer.stop()
    for registrar in registrars:
        registrar.close()
    print(f"zookeeper sessions open afterwards: {connections().count('zookeeper')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="20 trials, 100 services")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.services = 20, 100
    with tempfile.TemporaryDirectory() as tmp:
        server = ZooKeeperServer(Path(tmp) / "zookeeper")
        server.start()
        try:
            options: dict[str, object] = {"address": server.address, "chroot": "/bench"}
            times = propagation(options, args.trials)
            print(f"register   -> seen : {quantiles(times['up'])}")
            print(f"deregister -> gone : {quantiles(times['down'])}")
            many_services(options, args.services)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
