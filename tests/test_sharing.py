"""Instancers of the same backend, service and options in a process share one watch."""

from __future__ import annotations

import threading
from pathlib import Path

from pytest_sd import wait_for_event

import sd_core
from sd_core import Registration


def watch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sd-watch-local:")]


def test_instancers_of_one_service_share_one_watch_until_the_last_stops(tmp_path: Path) -> None:
    instancers = [sd_core.instancer("local:///web", path=str(tmp_path)) for _ in range(50)]
    other = sd_core.instancer("local:///web", path=str(tmp_path / "elsewhere"))
    api = sd_core.instancer("local:///api", path=str(tmp_path))
    # One watch of web, shared by the fifty; the local backend runs one thread per directory.
    assert len({instancer.source for instancer in instancers}) == 1  # type: ignore[attr-defined]
    assert other.source is not instancers[0].source  # type: ignore[attr-defined]
    assert sorted(watch_threads()) == sorted(
        [f"sd-watch-local:{tmp_path}", f"sd-watch-local:{tmp_path / 'elsewhere'}"]
    )
    subscriptions = [instancer.subscribe() for instancer in instancers]
    with sd_core.registrar("local", Registration("web", "127.0.0.1", 8080), path=str(tmp_path)):
        for sub in subscriptions:
            wait_for_event(sub, lambda e: len(e.instances) == 1, 5, "the instance")
        for instancer in instancers[:-1]:
            instancer.stop()
        assert subscriptions[0].closed
        assert len(watch_threads()) == 2  # the last user keeps the watch
        assert instancers[-1].state is not None and len(instancers[-1].state.instances) == 1
    wait_for_event(subscriptions[-1], lambda e: e.ok and not e.instances, 5, "the instance gone")
    instancers[-1].stop()
    other.stop()
    api.stop()
    assert watch_threads() == []
    assert instancers[0].source.stopped  # type: ignore[attr-defined]


def test_each_user_of_a_shared_watch_has_its_own_subscribers(tmp_path: Path) -> None:
    first = sd_core.instancer("local", "web", path=str(tmp_path))
    second = sd_core.instancer("local", "web", path=str(tmp_path))
    seen: list[int] = []
    first.register(lambda event: seen.append(1))
    second.register(lambda event: seen.append(2))
    with first.subscribe() as sub:
        assert sub.get(5).ok
    assert first.settle() and second.settle()  # type: ignore[attr-defined]
    assert sorted(set(seen)) == [1, 2]
    first.stop()
    with second.subscribe() as sub:  # the other user is not affected
        assert sub.get(5).ok
    second.stop()
