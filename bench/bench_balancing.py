"""Balancing around slow and failing backends: each balancer next to an oracle that knows
every queue (run: uv run python bench/bench_balancing.py [--quick] [--seeds N]).

The model: 10 backends, each serving one request at a time in arrival order (a FIFO queue),
with service times drawn around their mean (lognormal, sigma 0.2: "~1 ms"); 32 requests in
flight (a closed loop: each caller sends its next request when the last one ended). Scenarios:
one backend 10x slower (9 x 1 ms, 1 x 10 ms); equal backends (10 x 1 ms); one backend that
fails at once (9 x 1 ms, 1 failing), each call made with up to 3 attempts, with retry's avoid
list (later attempts avoid the endpoints that failed, as ``retry()`` does) and without it.

The oracle is a balancer that reads the queues: it picks the backend with the least expected
completion time, (requests queued or in service + 1) x mean service time, and never a failing
one. Every figure is printed next to the oracle's of the same run, as a ratio.

Two drivers call the balancers' real ``choose()`` / ``achoose()``:

- virtual time: an event-driven simulation in which the core's clock is the simulated time
  (``use_clock``), 20,000 calls, several seeds (ratios: min / median over the seeds);
- real time: an asyncio run with ``achoose()`` (and the real ``aretry()``), each backend an
  ``asyncio.Lock`` held for an ``asyncio.sleep`` of its service time; smaller, and as noisy as
  the machine's timers (a 1 ms sleep takes 1-2 ms).

The targets (issue 14): ``PeakEwma`` p99 <= 1.3x the oracle's with the slow backend, and no
worse than ``LeastPending`` with equal ones; with the failing backend and ``Ejecting``, <= 2 %
of attempts to it after the first second, and 0 % of calls failed with 3 attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sd_core import (
    Balancer,
    Candidate,
    Ejecting,
    Endpointer,
    FixedInstancer,
    Instance,
    LeastPending,
    PeakEwma,
    Random,
    RetryError,
    RoundRobin,
    aretry,
)
from sd_core.plugin import Clock, use_clock

SIGMA = 0.2  # lognormal spread of the service times
FAST, SLOW = 0.001, 0.010
CONCURRENCY = 32
ATTEMPTS = 3  # attempts per call in the failing scenarios

Make = Callable[[Endpointer[Any]], Balancer[Any]]


# -- backends and the oracle ------------------------------------------------------------------


@dataclass(eq=False)
class Backend:
    """One backend: a FIFO queue with one server (``fails``: it fails every request at once,
    until ``recovers_at`` seconds after the start)."""

    name: str
    mean: float
    fails: bool = False
    recovers_at: float = math.inf
    elapsed: Callable[[], float] = field(default=lambda: 0.0)  # seconds since the start
    answered: Callable[[Backend], None] | None = None  # real time: told of each success
    rng: random.Random = field(default_factory=random.Random)
    dones: list[float] = field(default_factory=list)  # virtual time: completion times queued
    free_at: float = 0.0
    queued: int = 0  # real time: requests waiting or in service
    lock: asyncio.Lock | None = None
    tally: Callable[[Backend], None] | None = None  # real time: counts each attempt

    def service(self) -> float:
        return self.mean * math.exp(self.rng.gauss(-SIGMA * SIGMA / 2, SIGMA))

    def failing(self) -> bool:
        return self.fails and self.elapsed() < self.recovers_at

    # virtual time
    def in_system(self, now: float) -> int:
        dones = self.dones
        while dones and dones[0] <= now:
            heapq.heappop(dones)
        return len(dones)

    def submit(self, now: float) -> float:
        """The completion time of a request arriving at ``now`` (``now`` itself: it fails)."""
        if self.failing():
            return now
        done = max(now, self.free_at) + self.service()
        self.free_at = done
        heapq.heappush(self.dones, done)
        return done

    # real time
    async def __call__(self) -> str:
        if self.tally is not None:
            self.tally(self)
        if self.failing():
            raise ConnectionRefusedError(f"{self.name} refuses")
        assert self.lock is not None
        self.queued += 1
        try:
            async with self.lock:
                await asyncio.sleep(self.service())
        finally:
            self.queued -= 1
        if self.answered is not None:
            self.answered(self)
        return self.name


class Oracle(Balancer[Backend]):
    """Knows every queue: the backend with the least expected completion time."""

    now: Callable[[], float] = staticmethod(lambda: 0.0)

    def pick(self, candidates: Sequence[Candidate[Backend]], key: object) -> Candidate[Backend]:
        now = self.now()
        best, best_cost = candidates[0], math.inf
        for candidate in candidates:
            backend = candidate.endpoint
            if backend.failing():
                continue
            queued = backend.queued if backend.lock is not None else backend.in_system(now)
            cost = (queued + 1) * backend.mean
            if cost < best_cost:
                best, best_cost = candidate, cost
        return best


def backends(kind: str, rng: random.Random, recovers_at: float = math.inf) -> list[Backend]:
    last = {
        "slow": Backend("b9", SLOW, rng=rng),
        "equal": Backend("b9", FAST, rng=rng),
        "failing": Backend("b9", FAST, fails=True, rng=rng),
        "recovering": Backend("b9", FAST, fails=True, recovers_at=recovers_at, rng=rng),
    }[kind]
    return [*(Backend(f"b{i}", FAST, rng=rng) for i in range(9)), last]


def endpointer(group: list[Backend]) -> Endpointer[Backend]:
    instances = [Instance("10.0.0.1", 9000 + i, id=b.name) for i, b in enumerate(group)]
    by_id = {b.name: b for b in group}
    return Endpointer(FixedInstancer(instances), lambda instance: by_id[instance.id])


# -- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    latencies: list[float]
    span: float
    attempts: int = 0
    to_last: int = 0  # attempts sent to the slow / failing backend
    late_attempts: int = 0  # attempts after the first second
    late_to_last: int = 0
    failed_calls: int = 0
    # The recovering backend: when it answered again (seconds since the start), and the
    # longest ejection of it in force between its recovery and then (seconds).
    back_at: float = math.nan
    ejection: float = math.nan
    after_back_attempts: int = 0  # attempts once it answered again
    after_back_to_last: int = 0

    def quantile(self, q: float) -> float:
        ordered = self.latencies
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.span if self.span > 0 else 0.0


def _finish(result: Result) -> Result:
    result.latencies.sort()
    return result


class _Recovery:
    """Follows the recovering backend: the longest ejection of it in force from its recovery
    until it answers again (read from the Ejecting balancer's state)."""

    def __init__(self, balancer: Balancer[Any], source: Endpointer[Any], last: Backend) -> None:
        self.balancer = balancer if isinstance(balancer, Ejecting) else None
        self.source = source
        self.last = last
        self.longest = 0.0

    def note(self, result: Result, elapsed: float) -> None:
        """Called as the time passes: notes the ejection in force while it matters."""
        if (
            self.balancer is None
            or elapsed < self.last.recovers_at
            or result.back_at == result.back_at
        ):
            return
        for candidate in self.source._cache.entries():
            if candidate.endpoint is self.last:
                state = self.balancer._out.get(candidate)
                if state is not None:
                    duration = min(self.balancer._base * state.times, self.balancer._max_time)
                    self.longest = max(self.longest, duration)

    def answered(self, result: Result, elapsed: float) -> None:
        if result.back_at != result.back_at and elapsed >= self.last.recovers_at:
            result.back_at = elapsed
            result.ejection = self.longest or (
                self.balancer._base if self.balancer is not None else math.nan
            )


# -- the virtual-time driver -------------------------------------------------------------------


class SimClock(Clock):
    """The simulated time, as the core's clock."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


def simulate(
    make: Make, kind: str, calls: int, retry: str, seed: int, *, recovers_at: float = math.inf
) -> Result:
    """``calls`` calls from ``CONCURRENCY`` callers; ``retry``: "none", "avoid" or "again"
    (up to ``ATTEMPTS`` attempts, later ones avoiding the endpoints that failed, or not)."""
    rng = random.Random(seed)
    group = backends(kind, rng, recovers_at)
    last = group[-1]
    sim = SimClock()
    result = Result([], 0.0)
    with use_clock(sim), endpointer(group) as source:
        balancer = make(source)
        if isinstance(balancer, Oracle):
            balancer.now = lambda: sim.now
        events: list[tuple[float, int, Any, Backend, float, int, list[Backend], bool]] = []
        order = 0
        begin = sim.now
        for backend in group:
            backend.elapsed = lambda: sim.now - begin
        recovery = _Recovery(balancer, source, last)

        def attempt(began: float, tries: int, avoid: list[Backend]) -> None:
            nonlocal order
            choice = balancer.choose(avoid=avoid)
            backend = choice.__enter__()
            result.attempts += 1
            result.to_last += backend is last
            if sim.now - begin >= 1.0:
                result.late_attempts += 1
                result.late_to_last += backend is last
            if result.back_at == result.back_at:  # it answered again
                result.after_back_attempts += 1
                result.after_back_to_last += backend is last
            order += 1
            failed = backend.failing()
            done = backend.submit(sim.now)
            heapq.heappush(events, (done, order, choice, backend, began, tries, avoid, failed))

        started = min(CONCURRENCY, calls)
        for _ in range(started):
            attempt(sim.now, 1, [])
        while events:
            done, _, choice, backend, began, tries, avoid, failed = heapq.heappop(events)
            sim.now = done
            if recovers_at < math.inf:
                recovery.note(result, sim.now - begin)
            if failed:
                choice.__exit__(ConnectionRefusedError, ConnectionRefusedError(), None)
                if retry != "none" and tries < ATTEMPTS:
                    attempt(began, tries + 1, [*avoid, backend] if retry == "avoid" else avoid)
                    continue
                result.failed_calls += 1
            else:
                choice.__exit__(None, None, None)
                if backend is last:
                    recovery.answered(result, sim.now - begin)
            result.latencies.append(sim.now - began)
            if started < calls:
                started += 1
                attempt(sim.now, 1, [])
        result.span = sim.now - begin
    return _finish(result)


# -- the real-time driver (asyncio) --------------------------------------------------------------


async def _side(
    make: Make, kind: str, calls: int, seconds: float, retry: str, *, recovers_at: float
) -> Result:
    group = backends(kind, random.Random(7), recovers_at)
    last = group[-1]
    result = Result([], 0.0)
    begin = time.monotonic()
    recovery: _Recovery | None = None

    def tally(backend: Backend) -> None:  # every attempt reaches its backend: count it there
        result.attempts += 1
        result.to_last += backend is last
        elapsed = time.monotonic() - begin
        if elapsed >= 1.0:
            result.late_attempts += 1
            result.late_to_last += backend is last
        if result.back_at == result.back_at:  # it answered again
            result.after_back_attempts += 1
            result.after_back_to_last += backend is last
        if recovery is not None:
            recovery.note(result, elapsed)

    def answered(backend: Backend) -> None:
        if recovery is not None and backend is last:
            recovery.answered(result, time.monotonic() - begin)

    for backend in group:
        backend.lock = asyncio.Lock()
        backend.tally = tally
        backend.answered = answered
        backend.elapsed = lambda: time.monotonic() - begin
    async with endpointer(group) as source:
        balancer = make(source)
        if isinstance(balancer, Oracle):
            balancer.now = time.monotonic
        if recovers_at < math.inf:
            recovery = _Recovery(balancer, source, last)
        with_avoid = aretry(ATTEMPTS, None, balancer)

        async def call() -> None:
            if retry == "avoid":
                try:
                    await with_avoid()
                except RetryError:
                    result.failed_calls += 1
                return
            for tries in range(1, ATTEMPTS + 1):
                try:
                    async with balancer.achoose() as backend:
                        await backend()
                    return
                except ConnectionRefusedError:
                    if retry == "none" or tries == ATTEMPTS:
                        result.failed_calls += 1
                        return

        issued = 0
        begin = time.monotonic()
        deadline = begin + seconds

        async def caller() -> None:
            nonlocal issued
            while issued < calls and time.monotonic() < deadline:
                issued += 1
                began = time.monotonic()
                await call()
                result.latencies.append(time.monotonic() - began)

        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
        result.span = time.monotonic() - begin
    return _finish(result)


async def _both(
    make: Make, kind: str, calls: int, seconds: float, retry: str, *, recovers_at: float
) -> tuple[Result, Result]:
    mine, oracle = await asyncio.gather(
        _side(make, kind, calls, seconds, retry, recovers_at=recovers_at),
        _side(Oracle, kind, calls, seconds, retry, recovers_at=recovers_at),
    )
    return mine, oracle


def drive(
    make: Make, kind: str, calls: int, seconds: float, retry: str, *, recovers_at: float = math.inf
) -> tuple[Result, Result]:
    """The balancer and an oracle side by side in one event loop, at the same time: each with
    its own backends and callers, both delayed by the same timers and scheduling."""
    return asyncio.run(_both(make, kind, calls, seconds, retry, recovers_at=recovers_at))


# -- the report --------------------------------------------------------------------------------

BALANCERS: dict[str, Make] = {
    "oracle": Oracle,
    "RoundRobin": RoundRobin,
    "Random": Random,
    "LeastPending": LeastPending,
    "PeakEwma": PeakEwma,
    "PeakEwma(scan=0, choices=2)": lambda e: PeakEwma(e, scan=0, choices=2),
    "PeakEwma(scan=0, choices=3)": lambda e: PeakEwma(e, scan=0, choices=3),
    "Ejecting(RoundRobin)": lambda e: Ejecting(RoundRobin(e)),
    "Ejecting(LeastPending)": lambda e: Ejecting(LeastPending(e)),
    "Ejecting(PeakEwma)": lambda e: Ejecting(PeakEwma(e)),
}
LATENCY_ROWS = [
    "oracle",
    "RoundRobin",
    "Random",
    "LeastPending",
    "PeakEwma",
    "PeakEwma(scan=0, choices=2)",
    "PeakEwma(scan=0, choices=3)",
]
FAILING_ROWS = [
    "oracle",
    "RoundRobin",
    "LeastPending",
    "PeakEwma",
    "Ejecting(RoundRobin)",
    "Ejecting(LeastPending)",
    "Ejecting(PeakEwma)",
]
RECOVERING_ROWS = [
    "oracle",
    "Ejecting(RoundRobin), short",
    "Ejecting(LeastPending), short",
    "Ejecting(PeakEwma), short",
]
TITLES = {
    ("slow", "none"): "one backend 10x slower (9 x 1 ms, 1 x 10 ms)",
    ("equal", "none"): "equal backends (10 x 1 ms)",
    ("failing", "avoid"): "one backend failing at once, 3 attempts a call with retry's avoid list",
    ("failing", "again"): "one backend failing at once, 3 attempts a call without the avoid list",
    ("recovering", "avoid"): "one backend failing at once, then answering again, 3 attempts a "
    "call with retry's avoid list",
}


def short_ejections(ejection_time: float) -> None:
    """The balancers of the recovering scenario: ejections of ``ejection_time`` seconds."""
    for name in ("RoundRobin", "LeastPending", "PeakEwma"):
        inner = {"RoundRobin": RoundRobin, "LeastPending": LeastPending, "PeakEwma": PeakEwma}
        BALANCERS[f"Ejecting({name}), short"] = lambda e, make=inner[name]: Ejecting(
            make(e), ejection_time=ejection_time
        )


def _pair(values: list[float]) -> str:
    return f"{min(values):.2f}/{statistics.median(values):.2f}"


def _share(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else math.nan


Run = dict[str, tuple[Result, Result]]  # balancer: (its result, its oracle's in the same run)


def report_recovery(title: str, rows: list[str], runs: list[Run], recovers_at: float) -> None:
    """The recovering scenario: when the backend that failed is back, against the ejection in
    force when it recovered (ratio: time from its recovery until it answered again over that
    ejection time; <= 1 is back within its ejection time)."""
    print(title)
    print(
        f"  {'balancer':<32}{'back after (ms)':>16}{'ejection (s)':>14}{'ratio':>13}"
        f"{'to it after':>13}{'failed calls':>14}"
    )
    for name in rows[1:]:
        results = [run[name][0] for run in runs]
        back = [(r.back_at - recovers_at) * 1e3 for r in results]
        ratio = [(r.back_at - recovers_at) / r.ejection for r in results]
        share = [_share(r.after_back_to_last, r.after_back_attempts) for r in results]
        failed = [r.failed_calls for r in results]
        print(
            f"  {name:<32}{statistics.median(back):16.1f}"
            f"{statistics.median(r.ejection for r in results):14.2f}{_pair(ratio):>13}"
            f"{statistics.median(share):11.2f} %{max(failed):>9} calls"
        )
    print()


def report(title: str, rows: list[str], runs: list[Run], failing: bool) -> None:
    """One table: medians over the runs; ratios to the oracle of the same run, min/median."""
    print(title)
    head = f"  {'balancer':<28}{'p50 ms':>8}{'p99 ms':>9}{'p999 ms':>9}{'calls/s':>9}"
    head += f"{'p99/oracle':>12}{'p999/oracle':>13}{'calls/s ratio':>15}"
    head += (
        f"{'to failing':>12}{'after 1 s':>11}{'failed calls':>14}" if failing else f"{'to slow':>9}"
    )
    print(head)
    for name in rows:
        pairs = [run[name] for run in runs]
        results = [result for result, _ in pairs]

        def median(figure: Callable[[Result], float], results: list[Result] = results) -> float:
            return statistics.median(figure(r) for r in results)

        def ratios(
            figure: Callable[[Result], float], pairs: list[tuple[Result, Result]] = pairs
        ) -> str:
            return _pair([figure(result) / figure(oracle) for result, oracle in pairs])

        line = f"  {name:<28}{median(lambda r: r.quantile(0.5)) * 1e3:8.2f}"
        line += f"{median(lambda r: r.quantile(0.99)) * 1e3:9.2f}"
        line += f"{median(lambda r: r.quantile(0.999)) * 1e3:9.2f}"
        line += f"{median(lambda r: r.throughput):9.0f}"
        line += f"{ratios(lambda r: r.quantile(0.99)):>12}{ratios(lambda r: r.quantile(0.999)):>13}"
        line += f"{ratios(lambda r: r.throughput):>15}"
        share = median(lambda r: _share(r.to_last, r.attempts))
        if failing:
            late = median(lambda r: _share(r.late_to_last, r.late_attempts))
            failed = max(r.failed_calls for r in results)
            late_text = "-" if math.isnan(late) else f"{late:.2f} %"
            line += f"{share:10.2f} %{late_text:>11}{failed:>8} calls"
        else:
            line += f"{share:7.2f} %"
        print(line)
    print()


Targets = list[tuple[str, list[float], float]]


def _p99_ratio(pair: tuple[Result, Result]) -> float:
    result, oracle = pair
    return result.quantile(0.99) / oracle.quantile(0.99)


def targets_of(
    driver: str, tables: dict[tuple[str, str], list[Run]], recovers_at: float
) -> Targets:
    """(what, the figure of each run, its target) for the issue's targets."""
    slow, equal = tables[("slow", "none")], tables[("equal", "none")]
    rows: Targets = [
        (
            f"{driver}: PeakEwma p99 / oracle p99, slow backend",
            [_p99_ratio(run["PeakEwma"]) for run in slow],
            1.3,
        ),
        (
            f"{driver}: PeakEwma p99 / LeastPending p99 (each over its oracle), equal backends",
            [_p99_ratio(run["PeakEwma"]) / _p99_ratio(run["LeastPending"]) for run in equal],
            1.0,
        ),
    ]
    for retry in ("avoid", "again"):
        runs = tables[("failing", retry)]
        how = "with" if retry == "avoid" else "without"
        for name in [n for n in runs[0] if n.startswith("Ejecting")]:
            late = [_share(r.late_to_last, r.late_attempts) for r, _ in (run[name] for run in runs)]
            if not any(math.isnan(x) for x in late):
                rows.append(
                    (
                        f"{driver}: {name} % of attempts to the failing backend after 1 s, "
                        f"{how} avoid list",
                        late,
                        2.0,
                    )
                )
            rows.append(
                (
                    f"{driver}: {name} % of calls failed (3 attempts), {how} avoid list",
                    [
                        _share(r.failed_calls, len(r.latencies))
                        for r, _ in (run[name] for run in runs)
                    ],
                    0.0,
                )
            )
    runs = tables[("recovering", "avoid")]
    for name in [n for n in runs[0] if n.startswith("Ejecting")]:
        results = [run[name][0] for run in runs]
        rows.append(
            (
                f"{driver}: {name}: time from recovery until back / its ejection time",
                [(r.back_at - recovers_at) / r.ejection for r in results],
                1.0,
            )
        )
        rows.append(
            (
                f"{driver}: {name}: % of calls failed (3 attempts), failing then recovering",
                [_share(r.failed_calls, len(r.latencies)) for r in results],
                0.0,
            )
        )
    return rows


def measure(
    name: str, kind: str, retry: str, *, seed: int, virtual: bool, sizes: dict[str, float]
) -> tuple[Result, Result]:
    """One balancer in one scenario, with the oracle of the same run."""
    make = BALANCERS[name]
    if kind == "recovering":
        recovers_at = sizes["recovers_at"]
        if virtual:
            calls = int(sizes["recovering_calls"])
            oracle = simulate(Oracle, kind, calls, retry, seed, recovers_at=recovers_at)
            result = simulate(make, kind, calls, retry, seed, recovers_at=recovers_at)
            return result, oracle
        return drive(make, kind, 10**9, sizes["recovering_seconds"], retry, recovers_at=recovers_at)
    failing = kind == "failing"
    if virtual:
        calls = int(sizes["failing_calls" if failing else "calls"])
        oracle = simulate(Oracle, kind, calls, retry, seed)
        result = oracle if name == "oracle" else simulate(make, kind, calls, retry, seed)
        return result, oracle
    if failing:
        return drive(make, kind, 10**9, sizes["real_seconds"], retry)
    return drive(make, kind, int(sizes["real_calls"]), math.inf, retry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that checks it works")
    parser.add_argument("--seeds", type=int, default=5, help="virtual-time runs per scenario")
    parser.add_argument("--runs", type=int, default=3, help="real-time runs per scenario")
    parser.add_argument(
        "--driver", choices=("both", "virtual", "real"), default="both", help="which driver to run"
    )
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    runs = 1 if args.quick else args.runs
    sizes = {
        "calls": 3_000 if args.quick else 20_000,
        "failing_calls": 12_000 if args.quick else 30_000,  # lasts more than a second
        "real_calls": 300 if args.quick else 3_000,
        "real_seconds": 0.5 if args.quick else 2.5,
        # The recovering backend: answers again this long after the start, ejections last
        # ejection_time; the run lasts long enough for a second ejection and its probe.
        "recovers_at": 0.3 if args.quick else 1.5,
        "ejection_time": 0.5 if args.quick else 1.0,
        "recovering_calls": 12_000 if args.quick else 40_000,
        "recovering_seconds": 1.0 if args.quick else 4.0,
    }
    short_ejections(sizes["ejection_time"])
    recovering_rows = ["oracle", "Ejecting(PeakEwma), short"] if args.quick else RECOVERING_ROWS
    latency_rows = ["oracle", "LeastPending", "PeakEwma"] if args.quick else LATENCY_ROWS
    failing_rows = (
        ["oracle", "LeastPending", "Ejecting(LeastPending)", "Ejecting(PeakEwma)"]
        if args.quick
        else FAILING_ROWS
    )
    print(__doc__.split("\n\n")[1].replace("\n", " "))
    print("Ratios are to the oracle of the same run (min/median over the runs); other figures")
    print("are medians. In real time each balancer runs beside its own oracle, at the same time")
    print(f"in the same event loop. {CONCURRENCY} requests in flight.\n")
    targets: Targets = []
    for driver in ("virtual time", "real time (asyncio)"):
        virtual = driver == "virtual time"
        if args.driver != "both" and virtual != (args.driver == "virtual"):
            continue
        how = f"{seeds} seeds" if virtual else f"{runs} runs"
        tables: dict[tuple[str, str], list[Run]] = {}
        for (kind, retry), title in TITLES.items():
            failing = kind == "failing"
            if kind == "recovering":
                rows = recovering_rows
            else:
                rows = failing_rows if failing else latency_rows
            table: list[Run] = []
            for seed in range(1, (seeds if virtual else runs) + 1):
                run: Run = {}
                for name in rows:
                    if name != "oracle" or virtual:
                        run[name] = measure(
                            name, kind, retry, seed=seed, virtual=virtual, sizes=sizes
                        )
                if not virtual:  # the oracle row: the oracle run beside the first balancer
                    oracle = run[rows[1]][1]
                    run["oracle"] = (oracle, oracle)
                table.append(run)
            tables[(kind, retry)] = table
            if kind == "recovering":
                size = (
                    f"{int(sizes['recovering_calls']):,} calls"
                    if virtual
                    else f"{sizes['recovering_seconds']} s"
                )
                report_recovery(
                    f"{driver}, {title}: answers again at {sizes['recovers_at']} s, ejections "
                    f"of {sizes['ejection_time']} s, {size}, {how}",
                    rows,
                    table,
                    sizes["recovers_at"],
                )
                continue
            if virtual:
                size = f"{int(sizes['failing_calls' if failing else 'calls']):,} calls"
            else:
                size = (
                    f"{sizes['real_seconds']} s"
                    if failing
                    else f"{int(sizes['real_calls']):,} calls"
                )
            report(f"{driver}, {title}: {size}, {how}", rows, table, failing)
        targets += targets_of(driver, tables, sizes["recovers_at"])
    print("targets (the figure of each run: min / median / max; ratios to the same run):")
    for what, values, target in targets:
        median = statistics.median(values)
        verdict = "met" if median <= target else "NOT met"
        every = "in every run" if max(values) <= target else "not in every run"
        print(
            f"  {what}: {min(values):.3g} / {median:.3g} / {max(values):.3g}"
            f"  (target <= {target:g}: {verdict} by the median, {every})"
        )


if __name__ == "__main__":
    main()
