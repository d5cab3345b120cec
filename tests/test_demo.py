"""The README's first run: the demo on the local backend serves every request."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_serves_every_request_while_a_service_stops() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sd_core.demo", "--duration", "4", "--plain"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "; 0 failed;" in out
    served = re.search(r"ada (\d+), grace (\d+), linus (\d+)", out)
    assert served is not None, out
    ada, grace, linus = map(int, served.groups())
    assert ada > 0 and linus > 0
    assert grace < ada and grace < linus  # grace was stopped halfway through
    registry = re.search(r"local backend \((\S+)\)", out)
    assert registry is not None
    assert not Path(registry.group(1)).exists()
