"""DNS SRV backend: the cost of one refresh, and propagation after a dynamic update.

Starts its own BIND 9 servers on loopback ports with pytest-sd's ``BindServer`` (Debian:
``apt-get install bind9 bind9-utils``; see docs/testing-backends.md), then measures

* the resolution cost per refresh: one lookup of a service of ``--instances`` instances as
  the instancer makes it (SRV, then the targets' addresses), wall time and this process's CPU
  time, with the addresses in the additional section (BIND's default) and without (BIND with
  ``minimal-responses yes``: one A and one AAAA query per target);
* propagation after a dynamic update: a registrar publishes an instance with TTL 1 s and an
  instancer with the default options (TTL-driven refresh, min_refresh 1 s) sees it; the delay
  from ``register()`` returning to the subscriber's event, and the same for ``deregister()``,
  over ``--trials`` trials. The expected delay is up to one TTL (the watch sleeps until the
  TTL of the last answer runs out), about half of it on average: each change is made at a
  random moment of the refresh cycle.

Run: ``uv run python bench/bench_dnssrv.py [--instances 100] [--lookups 200] [--trials 20]``,
or ``--quick`` for a run of a few seconds. Bounded: every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_sd.dns import BindServer
from sd_dnssrv._backend import Transport, new_client
from sd_dnssrv._instancer import Refresh, SrvWatch

import sd_core
from sd_core import Event, Registration
from sd_core.plugin import parse_address

TIMEOUT = 5.0
SERVICE = "bench"


def quantiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))]
    return (
        f"p50 {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms   max {ms[-1]:7.2f} ms"
        f"   (n={len(ms)})"
    )


def publish(bind: BindServer, instances: int) -> None:
    """``instances`` SRV records, each with its own target and A record, in one update."""
    commands = []
    for i in range(instances):
        target = f"i{i}.{SERVICE}.{bind.zone}"
        commands.append(f"update add _{SERVICE}._tcp.{bind.zone} 30 SRV 0 1 {20000 + i} {target}")
        commands.append(f"update add {target} 30 A 127.0.{i // 250}.{i % 250 + 1}")
    bind.nsupdate(*commands)


def resolution_cost(bind: BindServer, lookups: int) -> tuple[str, int, int]:
    """One line of figures for ``lookups`` lookups, the number of instances found and the
    number of targets whose addresses came in the SRV answer's additional section."""
    address = parse_address(bind.address, 53, schemes=())
    client = new_client((address,), Transport(timeout=2.0))
    name = f"_{SERVICE}._tcp.{bind.zone}"
    watch = SrvWatch(client, SERVICE, name, Refresh())

    async def run() -> tuple[list[float], float, int, int]:
        found = len((await watch.lookup())[0])  # warm-up
        given = len((await client.srv(name)).additional or {})
        times = []
        cpu = time.process_time()
        for _ in range(lookups):
            started = time.perf_counter()
            await watch.lookup()
            times.append(time.perf_counter() - started)
        return times, (time.process_time() - cpu) / lookups, found, given

    times, cpu, found, given = asyncio.run(run())
    return f"{quantiles(times)}   CPU {cpu * 1000:6.2f} ms per refresh", found, given


def wait(sub: sd_core.Subscription, present: bool, port: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        event: Event = sub.get(remaining)
        if event.ok and any(i.port == port for i in event.instances) is present:
            return
    raise TimeoutError(f"instance on port {port} {'not seen' if present else 'not gone'}")


def propagation(bind: BindServer, trials: int) -> dict[str, list[float]]:
    options = {
        "address": bind.address,
        "domain": bind.zone,
        "key_name": bind.tsig_key_name,
        "key_secret": bind.tsig_secret,
    }
    service = "bench-propagation"
    times: dict[str, list[float]] = {"up": [], "down": []}
    # One instance stays: the name exists throughout, so that the instancer's refresh follows
    # the records' TTL (an absent name is asked again after the zone's negative TTL, 5 s).
    resident = Registration(service, "127.0.0.1", 29999, id="resident", ttl=1)
    with (
        sd_core.registrar("dnssrv", resident, **options),
        sd_core.instancer("dnssrv", service, **options) as instancer,
        instancer.subscribe() as sub,
    ):
        wait(sub, True, resident.port)
        for trial in range(trials):
            time.sleep(random.uniform(0, 1))  # a random phase of the instancer's refresh
            port = 30000 + trial
            reg = Registration(service, "127.0.0.1", port, id=f"i{trial}", ttl=1)
            with sd_core.registrar("dnssrv", reg, **options) as registrar:
                returned = time.perf_counter()
                wait(sub, True, port)
                times["up"].append(time.perf_counter() - returned)
                time.sleep(random.uniform(0, 1))
                registrar.deregister()
                returned = time.perf_counter()
                wait(sub, False, port)
                times["down"].append(time.perf_counter() - returned)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100, help="instances of the service")
    parser.add_argument("--lookups", type=int, default=200, help="lookups timed per layout")
    parser.add_argument("--trials", type=int, default=20, help="propagation trials")
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.lookups, args.trials = 10, 10, 2
    with tempfile.TemporaryDirectory(prefix="bench-dnssrv-") as tmp:
        full = BindServer(Path(tmp) / "bind")
        minimal = BindServer(Path(tmp) / "bind-minimal", minimal_responses=True)
        try:
            started = time.perf_counter()
            for bind in (full, minimal):
                bind.start(wait=False)
            for bind in (full, minimal):
                bind.wait_ready()
            print(f"(two BIND servers ready in {time.perf_counter() - started:.1f} s)")
            for bind in (full, minimal):
                publish(bind, args.instances)
            print(f"resolution cost per refresh, {args.instances} instances, BIND 9 on loopback:")
            for what, bind in (("BIND's default", full), ("minimal-responses", minimal)):
                line, found, given = resolution_cost(bind, args.lookups)
                assert found == args.instances, f"{found} instances found ({what})"
                queries = 1 + 2 * (args.instances - given)
                print(f"  {what:<17} ({given:3} addresses in the answer, {queries:3} queries)")
                print(f"    {line}")
            times = propagation(full, args.trials)
            print("propagation after a dynamic update (TTL 1 s, default min_refresh 1 s):")
            print(f"  register   -> seen   {quantiles(times['up'])}")
            print(f"  deregister -> gone   {quantiles(times['down'])}")
        finally:
            full.stop()
            minimal.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
