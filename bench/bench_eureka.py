"""Eureka backend: propagation latency with a 1 s refresh, and the CPU cost of an idle
process whose 100 instancers share one registry poller.

Starts its own Spring Cloud Eureka server (with basic auth) with pytest-sd's
``EurekaServer`` (install it with ``bash scripts/install-backends``), then measures

* register -> subscriber sees the instance, and deregister -> subscriber sees it gone, over
  ``--trials`` trials, with ``refresh`` = 1 s (p50 / p99 / max), each change made at a random
  moment between two polls: it waits for the next one, so expect about half the refresh at
  p50 and the whole of it at p99;
* the process CPU time over ``--idle`` seconds of 100 instancers of 100 applications, each
  with one instance (registered through the REST API with a long lease, so that no renewal
  of this process counts), polled by the connection's one poller every second, and the
  threads they add (the poller is a task on the core's event loop, not a thread); then that
  no client stays open once they stopped.

Run: ``uv run python bench/bench_eureka.py [--trials 100] [--idle 30]``; ``--quick`` runs 5
trials and 2 s of idling (most of its time is the server's start). Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pytest_sd.eureka import EurekaServer

import sd_core
from sd_core import Event, Registration
from sd_core.plugin import connections

TIMEOUT = 10.0
REFRESH = 1.0
INSTANCERS = 100


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
        f"p50 {statistics.median(ms):7.1f} ms   p99 {p99:7.1f} ms   max {ms[-1]:7.1f} ms"
        f"   (n={len(ms)})"
    )


def propagation(options: dict[str, Any], trials: int) -> dict[str, list[float]]:
    service = "bench-propagation"
    times: dict[str, list[float]] = {"up": [], "down": []}
    instancer = sd_core.instancer("eureka", service, **options, refresh=REFRESH)
    try:
        with instancer.subscribe() as sub:
            for trial in range(trials):
                reg = Registration(service, "127.0.0.1", 30000 + trial % 1000, id=f"i{trial}")
                registrar = sd_core.registrar("eureka", reg, **options)
                try:
                    # Changes come at any time between two polls, not just after one.
                    time.sleep(random.uniform(0, REFRESH))
                    registrar.register()
                    returned = time.perf_counter()
                    wait(sub, True, reg.id)
                    times["up"].append(time.perf_counter() - returned)
                    time.sleep(random.uniform(0, REFRESH))
                    registrar.deregister()
                    returned = time.perf_counter()
                    wait(sub, False, reg.id)
                    times["down"].append(time.perf_counter() - returned)
                finally:
                    registrar.close()
    finally:
        instancer.stop()
    return times


def idle_cpu(server: EurekaServer, options: dict[str, Any], seconds: float) -> tuple[float, int]:
    """The CPU time of ``seconds`` of idling, and the threads the instancers added."""
    services = [f"bench-idle-{n}" for n in range(INSTANCERS)]
    for n, service in enumerate(services):
        app = service.upper()
        document = {
            "instance": {
                "instanceId": f"idle-{n}",
                "app": app,
                "hostName": "127.0.0.1",
                "ipAddr": "127.0.0.1",
                "vipAddress": service,
                "status": "UP",
                "port": {"$": 31000 + n, "@enabled": "true"},
                "dataCenterInfo": {
                    "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
                    "name": "MyOwn",
                },
                "leaseInfo": {"renewalIntervalInSecs": 300, "durationInSecs": 3600},
            }
        }
        assert server.api("POST", f"/apps/{app}", document).status == 204
    threads = threading.active_count()
    instancers = [sd_core.instancer("eureka", s, **options, refresh=REFRESH) for s in services]
    try:
        for n, instancer in enumerate(instancers):
            with instancer.subscribe() as sub:
                wait(sub, True, f"idle-{n}")
        threads = threading.active_count() - threads
        cpu = time.process_time()
        time.sleep(seconds)
        return time.process_time() - cpu, threads
    finally:
        for instancer in instancers:
            instancer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle watching")
    parser.add_argument("--quick", action="store_true", help="5 trials, 2 s of idling")
    args = parser.parse_args()
    trials, idle = (5, 2.0) if args.quick else (args.trials, args.idle)
    with tempfile.TemporaryDirectory(prefix="sd-bench-eureka-") as tmp:
        server = EurekaServer(Path(tmp))
        started = time.monotonic()
        server.start()
        try:
            print(f"Eureka server at {server.url} (started in {time.monotonic() - started:.1f} s)")
            options = {
                "address": server.address,
                "username": server.username,
                "password": server.password,
            }
            times = propagation(options, trials)
            print(f"propagation with refresh = {REFRESH:g} s, from the call returning:")
            print(f"  register   -> seen:  {quantiles(times['up'])}")
            print(f"  deregister -> gone:  {quantiles(times['down'])}")
            cpu, threads = idle_cpu(server, options, idle)
            print(
                f"idle CPU of {INSTANCERS} instancers (one poller, refresh = {REFRESH:g} s): "
                f"{cpu * 1000:.1f} ms over {idle:g} s ({cpu / idle * 100:.3f} % of one core)"
            )
            print(f"  threads added by the {INSTANCERS} instancers: {threads}")
            print(f"  eureka clients open afterwards: {connections().count('eureka')}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
