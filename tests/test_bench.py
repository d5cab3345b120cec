"""The benchmarks under bench/ still run (briefly; their figures are not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("bench_core.py", ["--quick"], "update of 10,000 instances"),
        ("bench_local_propagation.py", ["--trials", "5"], "register   -> seen"),
        ("bench_consul.py", ["--trials", "5", "--idle", "1"], "idle instancer CPU"),
        ("bench_kit.py", ["--quick"], "consul clients open afterwards: 0"),
        ("bench_etcd.py", ["--quick"], "etcd clients open afterwards: 0"),
        ("bench_zookeeper.py", ["--quick"], "zookeeper sessions open afterwards: 0"),
        ("bench_local_scale.py", ["--quick"], "idle, 50 watchers over 100 instances"),
        ("bench_dnssrv.py", ["--quick"], "propagation after a dynamic update (TTL 1 s"),
        ("bench_httpx.py", ["--quick"], "requests per second with 3 instances"),
        ("bench_eureka.py", ["--quick"], "propagation with refresh = 1 s"),
        ("bench_balancing.py", ["--quick"], "targets (the figure of each run"),
    ],
)
def test_benchmark_runs(script: str, args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout
