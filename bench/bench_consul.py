"""Consul backend: propagation latency and the CPU cost of an idle instancer.

Starts its own Consul 1.8 agent on loopback ports with pytest-sd's ``ConsulServer`` (install it
with ``bash scripts/install-backends``), then measures

* register -> subscriber sees the instance, and deregister -> subscriber sees it gone,
  over ``--trials`` trials (p50 / p99 / max; target p99 <= 50 ms on loopback);
* the process CPU time of one idle instancer (blocking queries, nothing changing) over
  ``--idle`` seconds.

Run: ``uv run python bench/bench_consul.py [--trials 200] [--idle 60]``. Bounded: every
wait has a deadline, and a trial that times out is reported as a failure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_sd.consul import ConsulServer

import sd_core
from sd_core import Event, Registration

TIMEOUT = 5.0


def wait(sub: sd_core.Subscription, present: bool, instance_id: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        event: Event = sub.get(remaining)
        # Consul instance ids are node/ID.
        seen = any(i.id.endswith(f"/{instance_id}") for i in event.instances)
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


def propagation(address: str, trials: int) -> dict[str, list[float]]:
    service = "bench-propagation"
    instancer = sd_core.instancer("consul", service, address=address)
    times: dict[str, list[float]] = {"up": [], "up_call": [], "down": [], "down_call": []}
    try:
        with instancer.subscribe() as sub:
            for trial in range(trials):
                reg = Registration(
                    service, "127.0.0.1", 30000 + trial % 1000, id=f"i{trial}", ttl=10
                )
                registrar = sd_core.registrar("consul", reg, address=address)
                try:
                    called = time.perf_counter()
                    registrar.register()
                    returned = time.perf_counter()
                    wait(sub, True, reg.id)
                    seen = time.perf_counter()
                    times["up"].append(seen - returned)
                    times["up_call"].append(seen - called)
                    called = time.perf_counter()
                    registrar.deregister()
                    returned = time.perf_counter()
                    wait(sub, False, reg.id)
                    seen = time.perf_counter()
                    times["down"].append(seen - returned)
                    times["down_call"].append(seen - called)
                finally:
                    registrar.close()
    finally:
        instancer.stop()
    return times


def idle_cpu(address: str, seconds: float) -> float:
    service = "bench-idle"
    registrar = sd_core.registrar(
        "consul", Registration(service, "127.0.0.1", 31000, id="idle", ttl=60), address=address
    )
    registrar.register()  # its keepalive runs every 20 s: a small share of the figure
    instancer = sd_core.instancer("consul", service, address=address)
    try:
        with instancer.subscribe() as sub:
            wait(sub, True, "idle")
            cpu = time.process_time()
            time.sleep(seconds)
            return time.process_time() - cpu
    finally:
        instancer.stop()
        registrar.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle watching")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sd-bench-consul-") as tmp:
        server = ConsulServer(Path(tmp))
        server.start()
        try:
            print(f"Consul agent at {server.address}")
            times = propagation(server.address, args.trials)
            print("from the call returning (the agent often answers the blocking query first):")
            print(f"  register   -> seen:  {quantiles(times['up'])}")
            print(f"  deregister -> gone:  {quantiles(times['down'])}")
            print("from the call starting:")
            print(f"  register   -> seen:  {quantiles(times['up_call'])}")
            print(f"  deregister -> gone:  {quantiles(times['down_call'])}")
            cpu = idle_cpu(server.address, args.idle)
            print(
                f"idle instancer CPU: {cpu * 1000:.1f} ms over {args.idle:g} s "
                f"({cpu / args.idle * 100:.3f} % of one core)"
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
