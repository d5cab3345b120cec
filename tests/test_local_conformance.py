"""The built-in ``local`` backend joins the conformance suite (pytest_sd.conformance)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_sd.conformance import *  # noqa: F403
from pytest_sd.conformance import Conformance, Faults


def _wipe(root: Path) -> None:
    """The directory loses its state: every entry file goes (as in a reboot of a tmpfs)."""
    for entry in root.rglob("*"):
        if entry.is_file():
            entry.unlink(missing_ok=True)


@pytest.fixture
def sd_conformance(tmp_path: Path) -> Conformance:
    root = tmp_path / "sd"
    return Conformance(
        backend="local",
        options={"path": str(root)},
        capabilities={
            "discovery",
            "registration",
            "tags",
            "meta",
            "weight",
            "zone",
            "process_death",
            "restore",
        },
        faults=Faults(wipe=lambda: _wipe(root)),
        ttl=2.0,
        propagation=2.0,
        death_margin=2.0,
        recovery=2.0,
    )
