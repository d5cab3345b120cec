"""How long a change takes to reach a subscriber through the ``local`` backend.

Runs ``--trials`` rounds of register → the subscriber sees the instance, and deregister →
the subscriber sees it gone, and prints p50/p90/p99/max of each. Every wait is bounded;
the whole run stops at ``--deadline`` seconds. Exits 0 unless ``--strict`` is given and
the p99 is over ``--budget-ms``.

    uv run python bench/bench_local_propagation.py [--trials 200] [--budget-ms 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from sd_core import Event, Registration, Subscription
from sd_core.local import LocalBackend

WAIT = 2.0


def wait_until(sub: Subscription, check: Callable[[Event], bool]) -> float:
    """Take events until ``check`` holds; the perf_counter time it did, or raise."""
    deadline = time.monotonic() + WAIT
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the subscriber did not see the change within {WAIT} s")
        event = sub.get(remaining)
        if check(event):
            return time.perf_counter()


def has(instance_id: str) -> Callable[[Event], bool]:
    return lambda event: any(i.id == instance_id for i in event.instances)


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {cuts[49]:6.2f}  p90 {cuts[89]:6.2f}  p99 {cuts[98]:6.2f}  max {ms[-1]:6.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when p99 > budget")
    args = parser.parse_args()

    backend = LocalBackend()
    appear: list[float] = []
    vanish: list[float] = []
    stop_at = time.monotonic() + args.deadline
    with (
        tempfile.TemporaryDirectory(prefix="sd-bench-") as path,
        backend.instancer("bench", path=path) as instancer,
        instancer.subscribe() as sub,
    ):
        sub.get(WAIT)  # the initial, empty set
        for trial in range(args.trials):
            if time.monotonic() > stop_at:
                print(f"deadline reached after {trial} trials", file=sys.stderr)
                break
            reg = Registration("bench", "127.0.0.1", 10000 + trial % 50000, ttl=30)
            registrar = backend.registrar(reg, path=path)
            start = time.perf_counter()
            registrar.register()
            appear.append(wait_until(sub, has(reg.id)) - start)
            start = time.perf_counter()
            registrar.close()
            vanish.append(wait_until(sub, lambda e: not e.instances) - start)

    if len(appear) < 2:
        print("too few trials to report", file=sys.stderr)
        return 1
    print(f"local backend propagation, {len(appear)} trials")
    print(f"  register   -> seen:  {percentiles(appear)}")
    print(f"  deregister -> gone:  {percentiles(vanish)}")
    worst = max(statistics.quantiles(s, n=100, method="inclusive")[98] for s in (appear, vanish))
    verdict = "within" if worst * 1000 <= args.budget_ms else "OVER"
    print(f"  p99 {worst * 1000:.2f} ms: {verdict} the {args.budget_ms:g} ms budget")
    return 1 if args.strict and verdict == "OVER" else 0


if __name__ == "__main__":
    sys.exit(main())
