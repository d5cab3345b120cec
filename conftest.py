"""Shared by every test of the repository (core and plugins): no sd_core thread left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sd_core._dispatch import dispatcher
from sd_core._loop import core_loop


def _sd_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("sd-") and t.is_alive()}


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Fail a test that leaves a thread of sd_core (named ``sd-…``) running.

    The delivery threads and the core's event loop are shared by the process; the idle ones
    are ended first, so a thread stuck in a callback, or a loop still running a task the test
    left behind, is reported."""
    before = _sd_threads()
    yield
    dispatcher().quiesce(5)
    if core_loop().settle(5):  # a loop still running a task is a task left behind
        core_loop().stop()
    deadline = time.monotonic() + 5
    left = _sd_threads() - before
    while left and time.monotonic() < deadline:
        next(iter(left)).join(0.05)
        left = _sd_threads() - before
    assert not left, f"threads left behind: {sorted(t.name for t in left)}"
