"""Cost of picking and updating in sd_core; prints a table (run: python bench/bench_core.py).

Targets (this machine's CPython): RoundRobin.endpoint() within 3x of a bare
itertools.cycle step; LeastPending choose() enter+exit <= 3 us; an update of 10,000
instances in which one changed <= 10 ms.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import timeit
from collections.abc import Callable

from sd_core import (
    ConsistentHash,
    EndpointCache,
    Endpointer,
    Event,
    FixedInstancer,
    Instance,
    LeastPending,
    Random,
    RoundRobin,
    Weighted,
)

SIZES = (3, 100, 10_000)
BALANCERS = (RoundRobin, Random, LeastPending, Weighted, ConsistentHash)


NUMBER, REPEAT, ROUNDS = 200_000, 5, 30


def per_call_ns(stmt: Callable[[], object]) -> float:
    """Best-of-``REPEAT`` nanoseconds per call (the minimum is the least disturbed run)."""
    return min(timeit.repeat(stmt, number=NUMBER, repeat=REPEAT)) / NUMBER * 1e9


def instances(n: int, port_base: int = 1000) -> list[Instance]:
    return [
        Instance(
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
            port_base + i % 50_000,
            id=f"svc-{i}",
            weight=1 + i % 4,
        )
        for i in range(n)
    ]


def bench_picks() -> tuple[dict[int, float], list[tuple[str, int, float, float]]]:
    rows = []
    bare: dict[int, float] = {}
    for size in SIZES:
        endpointer = Endpointer(FixedInstancer(instances(size)))
        cycle = itertools.cycle(endpointer.endpoints())
        bare[size] = per_call_ns(lambda cycle=cycle: next(cycle))
        for kind in BALANCERS:
            balancer = kind(endpointer)
            key = "user-42" if kind is ConsistentHash else None
            endpoint = balancer.endpoint
            choose = balancer.choose
            balancer.endpoint(key)  # builds per-set state (ring, heap) outside the timing

            def pick_endpoint(
                endpoint: Callable[..., object] = endpoint, key: object = key
            ) -> None:
                endpoint(key)

            def pick_choose(choose: Callable[..., object] = choose, key: object = key) -> None:
                with choose(key):  # type: ignore[attr-defined]
                    pass

            if kind is RoundRobin:
                pick_endpoint = endpoint  # type: ignore[assignment]
            rows.append((kind.__name__, size, per_call_ns(pick_endpoint), per_call_ns(pick_choose)))
        endpointer.close()
    return bare, rows


def bench_update(size: int = 10_000) -> tuple[float, float, float]:
    """Milliseconds for an update of ``size`` instances in which one changed: the cache alone,
    the Event built from fresh Instance objects, and the whole instancer -> endpointer path."""
    base = instances(size)
    cache: EndpointCache[Instance] = EndpointCache()
    cache.update(Event(base))
    cache_times, event_times, path_times = [], [], []
    instancer = FixedInstancer(base)
    endpointer = Endpointer(instancer)
    timer = timeit.default_timer
    for r in range(ROUNDS):
        changed = list(base)
        changed[r] = Instance("192.0.2.1", 9000 + r, id=f"svc-{r}")
        fresh = [Instance(i.host, i.port, id=i.id, weight=i.weight) for i in changed]
        t0 = timer()
        event = Event(fresh)
        t1 = timer()
        cache.update(event)
        t2 = timer()
        instancer.set(fresh)
        t3 = timer()
        event_times.append((t1 - t0) * 1e3)
        cache_times.append((t2 - t1) * 1e3)
        path_times.append((t3 - t2) * 1e3)
        cache.update(Event(base))
        instancer.set(base)
    endpointer.close()
    return (
        statistics.median(cache_times),
        statistics.median(event_times),
        statistics.median(path_times),
    )


def main() -> None:
    global NUMBER, REPEAT, ROUNDS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run that checks it works")
    if parser.parse_args().quick:
        NUMBER, REPEAT, ROUNDS = 2_000, 1, 3
    bare, rows = bench_picks()
    print("bare step: next() on an itertools.cycle over the same endpoints, called the same way")
    print(
        f"{'balancer':<16}{'endpoints':>10}{'endpoint() ns':>16}{'choose() ns':>14}"
        f"{'bare step ns':>14}{'endpoint()/bare':>17}"
    )
    for name, size, endpoint_ns, choose_ns in rows:
        print(
            f"{name:<16}{size:>10}{endpoint_ns:>16.1f}{choose_ns:>14.1f}"
            f"{bare[size]:>14.1f}{endpoint_ns / bare[size]:>17.2f}"
        )
    print()
    cache_ms, event_ms, path_ms = bench_update()
    print(f"update of 10,000 instances, one changed (median of {ROUNDS}):")
    print(f"  EndpointCache.update         {cache_ms:7.2f} ms")
    print(f"  Event(10,000 instances)      {event_ms:7.2f} ms")
    print(f"  instancer -> endpointer      {path_ms:7.2f} ms  (Event + dedup + cache)")


if __name__ == "__main__":
    main()
