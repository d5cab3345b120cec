"""Run the demo: ``python -m sd_core.demo [--duration SECONDS] [--plain]``."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

import sd_core
import sd_core.httpx

SERVICE = "hello"
NAMES = ("ada", "grace", "linus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_service(url: str, port: int, name: str, log: Path) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "sd_core.cli", "run", url, "--port", str(port), "--ttl", "2"),
        *("--meta", f"name={name}", "--"),
        *(sys.executable, "-m", "sd_core.demo.hello", str(port), name),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def view(
    counts: Counter[str],
    names: dict[str, str],
    stopped: set[str],
    stats: dict[str, int],
    elapsed: float,
) -> Table:
    total = sum(counts.values()) or 1
    table = Table(title=f"requests per instance of '{SERVICE}' (LeastPending)  {elapsed:4.1f} s")
    table.add_column("instance")
    table.add_column("address")
    table.add_column("state")
    table.add_column("requests", justify="right")
    table.add_column("share")
    for address, name in names.items():
        n = counts[address]
        state = "[red]stopped[/red]" if address in stopped else "[green]up[/green]"
        table.add_row(name, address, state, str(n), "█" * round(30 * n / total))
    table.caption = (
        f"{stats['ok']} served, {stats['failed']} failed, "
        f"{stats['retried']} retried on another instance"
    )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sd_core.demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds (default 12)")
    parser.add_argument("--plain", action="store_true", help="no live view; a summary only")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory(prefix="sd-demo-") as tmp:
        url = f"local:///{SERVICE}?path={tmp}/registry"
        ports = [free_port() for _ in NAMES]
        names = {f"127.0.0.1:{p}": n for p, n in zip(ports, NAMES, strict=True)}
        log = Path(tmp) / "services.log"
        console.print(f"starting {len(NAMES)} services under `sd run` on the local backend ({tmp})")
        procs = [start_service(url, p, n, log) for p, n in zip(ports, NAMES, strict=True)]
        instancer = sd_core.instancer(url)
        stats = {"ok": 0, "failed": 0, "retried": 0}
        counts: Counter[str] = Counter()
        stopped: set[str] = set()
        lock = threading.Lock()
        done = threading.Event()
        client: httpx.Client | None = None
        try:
            with instancer.subscribe() as sub:
                deadline = time.monotonic() + 30
                while True:
                    event = sub.get(timeout=max(0.1, deadline - time.monotonic()))
                    if event.ok and len(event.instances) == len(NAMES):
                        break
            console.print(f"all {len(NAMES)} registered; a client balances requests over them")

            def on_failure(attempt: int, error: Exception) -> bool:
                with lock:
                    stats["retried"] += 1
                return True

            # http://hello/ goes to an instance of "hello": one connection pool per instance,
            # LeastPending over them, a failed attempt tried again on another instance.
            transport = sd_core.httpx.Transport(
                {SERVICE: instancer},
                balancer=sd_core.LeastPending,
                max_attempts=3,
                deadline=5.0,
                retry_statuses={502, 503},
                callback=on_failure,
            )
            client = httpx.Client(transport=transport, timeout=2.0)

            def worker() -> None:
                while not done.is_set():
                    try:
                        response = client.get(f"http://{SERVICE}/")
                    except (sd_core.RetryError, sd_core.NoEndpointsError):
                        response = None
                    if response is None or response.status_code != 200:
                        with lock:
                            stats["failed"] += 1
                        continue
                    answer = response.text.strip()  # "hello from NAME"
                    address = next(a for a, n in names.items() if answer.endswith(n))
                    with lock:
                        stats["ok"] += 1
                        counts[address] += 1

            workers = [threading.Thread(target=worker, name=f"demo-client-{i}") for i in range(4)]
            for thread in workers:
                thread.start()
            started = time.monotonic()
            victim = procs[1]
            victim_address = f"127.0.0.1:{ports[1]}"
            with Live(console=console, auto_refresh=False, transient=args.plain) as live:
                while (elapsed := time.monotonic() - started) < args.duration:
                    if victim_address not in stopped and elapsed >= args.duration / 2:
                        victim.send_signal(signal.SIGTERM)
                        stopped.add(victim_address)
                    if not args.plain:
                        with lock:
                            live.update(view(counts, names, stopped, stats, elapsed), refresh=True)
                    time.sleep(0.1)
                done.set()
                for thread in workers:
                    thread.join()
                if not args.plain:
                    live.update(view(counts, names, stopped, stats, args.duration), refresh=True)
        finally:
            done.set()
            if client is not None:
                client.close()  # closes every instance's pool
            instancer.stop()
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

        console.print(
            f"served {stats['ok']} requests: "
            + ", ".join(f"{names[a]} {counts[a]}" for a in names)
            + f"; {stats['failed']} failed; {stats['retried']} attempts retried on another "
            f"instance after {NAMES[1]} stopped at {args.duration / 2:.0f} s"
        )
        console.print("services stopped and deregistered; the temporary registry is removed")
        return 0 if stats["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
