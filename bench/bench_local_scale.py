"""The ``local`` backend at scale: propagation and CPU with many instances and many watchers.

Scenarios (issue 14, item 5), each run ``--runs`` times, reported as min / median:

- **one watcher over 1,000 instances**: a writer process keeps 1,000 entries alive as their
  registrars would (each rewritten every ``ttl / 3``, ttl 10 s: 300 writes a second); a probe
  registers and deregisters an instance in a loop. Prints the probe's propagation (register
  → seen, deregister → gone) and this process's CPU share over the probing window.
  Targets: p99 ≤ 50 ms, CPU ≤ 10 % of a core.
- **50 watchers over 100 instances**: 50 instancers of one service (made by the backend
  itself, so that only the backend's own sharing helps) over 100 live entries; the latency
  is until every one of the 50 saw the change. Target: p99 ≤ 50 ms. A second row spreads
  the 100 instances over 50 services, one watcher each.
- **idle, 50 watchers**: the same 50 instancers with nothing changing. Target: ≤ 0.2 % of
  a core.

Every figure is printed next to its reference measured in the same run: the probe's
latency with no other entries in the folder (the floor on this machine now), the writer
process's own CPU (what 300 writes a second cost the writers), and the idle CPU of this
process before any instancer existed.

    uv run python bench/bench_local_scale.py [--quick] [--runs 3] [--window 10]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sd_core import Event, Instancer, Registration
from sd_core._dispatch import never_blocks
from sd_core.local import LocalBackend
from sd_core.local._store import Entry, entry_path, write_atomic
from sd_core.plugin import BaseInstancer

WAIT = 5.0
"""The longest a probe waits for a change to show (a miss is reported, not raised)."""
TTL = 10.0
IDLE_TTL = 3600.0
"""The entries of the idle scenario: nothing expires while it is measured."""
SERVICE = "bench"


# -- the writer: another process keeping entries alive ---------------------------------------
def writer_main(root: Path, services: list[str], count: int, ttl: float, keepalive: bool) -> None:
    """Write ``count`` entries spread over ``services``; rewrite each every ``ttl / 3`` while
    ``keepalive``; run until stdin closes."""
    registered = time.time()
    regs = [
        Registration(services[n % len(services)], "127.0.0.1", 20000 + n, id=f"i{n}", ttl=ttl)
        for n in range(count)
    ]
    paths = [entry_path(root, reg.service, reg.id) for reg in regs]
    for path in {p.parent for p in paths}:
        path.mkdir(parents=True, exist_ok=True)

    def write(n: int) -> None:
        entry = Entry.for_this_process(regs[n], time.time(), registered)
        write_atomic(paths[n], entry.to_json())

    for n in range(count):
        write(n)
    print("ready", flush=True)
    stop = threading.Event()

    def until_closed() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_closed, daemon=True).start()
    if not keepalive or count == 0:
        stop.wait()
        return
    period = ttl / 3 / count
    due = time.monotonic()
    n = 0
    while not stop.is_set():
        write(n)
        n = (n + 1) % count
        due += period
        delay = due - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class Writer:
    """The writer process: its entries are live (its pid runs on this host)."""

    def __init__(
        self,
        root: Path,
        services: list[str],
        count: int,
        *,
        keepalive: bool = True,
        ttl: float = TTL,
    ) -> None:
        command = [
            sys.executable,
            __file__,
            "--writer",
            str(root),
            str(count),
            str(ttl),
            "1" if keepalive else "0",
            *services,
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            self.close()
            raise RuntimeError(f"the writer did not start: {line!r}")

    def cpu(self) -> float:
        """The writer's CPU seconds so far (0 where there is no /proc)."""
        try:
            with open(f"/proc/{self.process.pid}/stat", "rb") as file:
                data = file.read().decode()
        except OSError:
            return 0.0
        fields = data[data.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- the probe: how long a change takes to reach every watcher -------------------------------
class Probe:
    """Times a change until each watcher of the service changed has published it."""

    def __init__(self, instancers: Sequence[Instancer], services: Sequence[str]) -> None:
        self._changed = threading.Condition()
        self._target: tuple[str, bool] | None = None
        self._services = [services[n % len(services)] for n in range(len(instancers))]
        self._seen: dict[int, float | None] = {}
        for n, instancer in enumerate(instancers):
            instancer.register(self._callback(n))

    def _callback(self, n: int) -> Callable[[Event], None]:
        @never_blocks
        def seen(event: Event) -> None:
            now = time.perf_counter()
            with self._changed:
                target = self._target
                if target is None or self._seen.get(n, 0.0) is not None:
                    return
                if any(i.id == target[0] for i in event.instances) == target[1]:
                    self._seen[n] = now
                    self._changed.notify_all()

        return seen

    def time(
        self, service: str, instance_id: str, present: bool, change: Callable[[], object]
    ) -> float | None:
        """Seconds from ``change()`` until every watcher of ``service`` shows
        ``instance_id`` (or shows it gone); None when one did not within :data:`WAIT`."""
        with self._changed:
            self._target = (instance_id, present)
            self._seen = {n: None for n, s in enumerate(self._services) if s == service}
        start = time.perf_counter()
        change()
        with self._changed:
            done = self._changed.wait_for(lambda: None not in self._seen.values(), WAIT)
            self._target = None
            seen = [s for s in self._seen.values() if s is not None]
        return max(seen) - start if done else None


@dataclass
class Latencies:
    samples: list[float] = field(default_factory=list)
    misses: int = 0

    def add(self, sample: float | None) -> None:
        if sample is None:
            self.misses += 1
        else:
            self.samples.append(sample)

    def p(self, q: int) -> float:
        """Percentile ``q`` in ms (nan without samples)."""
        if len(self.samples) < 2:
            return float("nan")
        cuts = statistics.quantiles(self.samples, n=100, method="inclusive")
        return cuts[q - 1] * 1000


def probe_loop(
    root: Path, probe: Probe, services: Sequence[str], seconds: float, latencies: Latencies
) -> None:
    """Register and deregister probe instances for ``seconds``, about ten a second."""
    backend = LocalBackend()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        service = services[n % len(services)]
        reg = Registration(service, "127.0.0.1", 30000 + n % 1000, id=f"probe-{n}", ttl=TTL)
        registrar = backend.registrar(reg, path=str(root))
        latencies.add(probe.time(service, reg.id, True, registrar.register))
        latencies.add(probe.time(service, reg.id, False, registrar.close))
        n += 1
        time.sleep(0.05)


@contextlib.contextmanager
def watchers(root: Path, services: Sequence[str], count: int) -> Iterator[list[BaseInstancer]]:
    backend = LocalBackend()
    made: list[BaseInstancer] = []
    try:
        for n in range(count):
            made.append(backend.instancer(services[n % len(services)], path=str(root)))
        yield made
    finally:
        for instancer in made:
            instancer.stop()


def wait_all(instancers: Sequence[BaseInstancer], counts: Sequence[int]) -> None:
    """Until each instancer shows its expected number of instances."""
    deadline = time.monotonic() + 30
    for instancer, expected in zip(instancers, counts, strict=True):
        while True:
            state = instancer.state
            if state is not None and len(state.instances) == expected:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{instancer!r} never showed {expected} instances")
            time.sleep(0.01)


def cpu_share(seconds: float, during: Callable[[], object] | None = None) -> float:
    """This process's CPU over ``seconds`` (running ``during`` or sleeping), in % of a core."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    if during is None:
        time.sleep(seconds)
    else:
        during()
    return (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100


# -- scenarios -------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    unit: str
    values: list[float] = field(default_factory=list)
    references: list[float] = field(default_factory=list)
    target: float | None = None
    reference: str = ""


def scenario_many_instances(
    rows: dict[str, Row], count: int, window: float, watcher_count: int, services: list[str]
) -> None:
    """``watcher_count`` watchers of ``services`` over ``count`` live entries, kept alive."""
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as folder:
        root = Path(folder)
        with watchers(root, services, watcher_count) as made:
            probe = Probe(made, services)
            wait_all(made, [0] * len(made))
            floor = Latencies()
            probe_loop(root, probe, services, min(window, 3.0), floor)
            writer = Writer(root, services, count)
            try:
                per_service = [count // len(services)] * len(services)
                for n in range(count % len(services)):
                    per_service[n] += 1
                expected = [per_service[services.index(s)] for s in services]
                wait_all(made, [expected[n % len(services)] for n in range(len(made))])
                writer0, wall0 = writer.cpu(), time.monotonic()
                steady = cpu_share(window)  # keepalives only
                writer_cpu = (writer.cpu() - writer0) / (time.monotonic() - wall0) * 100
                latencies = Latencies()
                probing = cpu_share(
                    window, lambda: probe_loop(root, probe, services, window, latencies)
                )
            finally:
                writer.close()
    key = f"{watcher_count}x{len(services)}x{count}"
    shape = (
        f"{watcher_count} watcher{'s' if watcher_count > 1 else ''}"
        f"{' of one service' if len(services) == 1 and watcher_count > 1 else ''}"
        f"{f', one per service ({len(services)})' if len(services) > 1 else ''}"
        f", {count:,} instances"
    )
    p99 = rows.setdefault(
        f"{key} p99",
        Row(f"{shape}: propagation p99", "ms", target=50.0, reference="no other entries"),
    )
    p99.values.append(latencies.p(99))
    p99.references.append(floor.p(99))
    p50 = rows.setdefault(
        f"{key} p50", Row(f"{shape}: propagation p50", "ms", reference="no other entries")
    )
    p50.values.append(latencies.p(50))
    p50.references.append(floor.p(50))
    if latencies.misses:
        print(f"  {shape}: {latencies.misses} probes not seen within {WAIT} s", file=sys.stderr)
    cpu = rows.setdefault(
        f"{key} cpu",
        Row(
            f"{shape}: CPU with keepalives",
            "% core",
            target=10.0 if watcher_count == 1 else None,
            reference="the writers' own CPU",
        ),
    )
    cpu.values.append(steady)
    cpu.references.append(writer_cpu)
    probed = rows.setdefault(
        f"{key} cpu probing",
        Row(f"{shape}: CPU while probing", "% core", reference="with keepalives only"),
    )
    probed.values.append(probing)
    probed.references.append(steady)


def scenario_idle(rows: dict[str, Row], count: int, watcher_count: int, window: float) -> None:
    """``watcher_count`` watchers over ``count`` entries that do not change."""
    bare = cpu_share(window)
    with tempfile.TemporaryDirectory(prefix="sd-bench-") as folder:
        root = Path(folder)
        writer = Writer(root, [SERVICE], count, keepalive=False, ttl=IDLE_TTL)
        try:
            with watchers(root, [SERVICE], watcher_count) as made:
                wait_all(made, [count] * len(made))
                time.sleep(0.2)  # let the first scans settle
                cpu = cpu_share(window)
        finally:
            writer.close()
    row = rows.setdefault(
        "idle",
        Row(
            f"idle, {watcher_count} watchers over {count} instances: CPU",
            "% core",
            target=0.2,
            reference="this process with no instancer",
        ),
    )
    row.values.append(cpu)
    row.references.append(bare)


def report(rows: dict[str, Row], runs: int) -> None:
    print(f"local backend at scale, {runs} run{'s' if runs > 1 else ''} (min / median)")
    for row in rows.values():
        values = [v for v in row.values if not math.isnan(v)]
        refs = [v for v in row.references if not math.isnan(v)]
        if not values:
            print(f"  {row.label}: no figure")
            continue
        low, mid = min(values), statistics.median(values)
        ref = f"{min(refs):.2f} / {statistics.median(refs):.2f}" if refs else "n/a"
        verdict = ""
        if row.target is not None:
            verdict = f"  target <= {row.target:g}: {'met' if mid <= row.target else 'NOT met'}"
        print(
            f"  {row.label:<62} {low:8.2f} / {mid:8.2f} {row.unit:<6}"
            f"  ({row.reference}: {ref}){verdict}"
        )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        root, count, ttl, keepalive, *services = sys.argv[2:]
        writer_main(Path(root), services, int(count), float(ttl), keepalive == "1")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run that checks it works")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per figure")
    parser.add_argument("--instances", type=int, default=1000)
    args = parser.parse_args()
    runs, window = (1, 0.5) if args.quick else (args.runs, args.window)
    rows: dict[str, Row] = {}
    many = [f"{SERVICE}-{n}" for n in range(50)]
    for _ in range(runs):
        scenario_many_instances(rows, args.instances, window, 1, [SERVICE])
        scenario_many_instances(rows, 100, window, 50, [SERVICE])
        scenario_many_instances(rows, 100, window, 50, many)
        scenario_idle(rows, 100, 50, window)
    report(rows, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
