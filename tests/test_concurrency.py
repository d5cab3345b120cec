"""Many threads picking while another pushes updates: no error, no double close, no leak."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter

from sd_core import Endpointer, FixedInstancer, Instance, LeastPending, RoundRobin, Weighted

DURATION = 3.0


def test_eight_pickers_and_an_updater() -> None:
    closes: Counter[int] = Counter()
    made: list[object] = []
    made_lock = threading.Lock()
    errors: list[BaseException] = []

    class Conn:
        def __init__(self, instance: Instance) -> None:
            self.instance = instance
            self.closed = False
            with made_lock:
                made.append(self)

        def close(self) -> None:
            closes[id(self)] += 1
            self.closed = True

    pool = [Instance("10.0.0.1", 2000 + i, id=f"i{i}", weight=1 + i % 3) for i in range(20)]
    instancer = FixedInstancer(pool[:10])
    endpointer = Endpointer(instancer, Conn, drain_timeout=10)
    balancers = [LeastPending(endpointer), RoundRobin(endpointer), Weighted(endpointer)]
    stop = threading.Event()
    picks = Counter[str]()

    def picker(n: int) -> None:
        rng = random.Random(n)
        balancer = balancers[n % len(balancers)]
        try:
            while not stop.is_set():
                with balancer.choose(timeout=1) as conn:
                    assert not conn.closed, "an endpoint was used after it was closed"
                    if rng.random() < 0.1:
                        time.sleep(0)
                picks[balancer.__class__.__name__] += 1
        except BaseException as exc:
            errors.append(exc)

    def updater() -> None:
        rng = random.Random(99)
        try:
            while not stop.is_set():
                instancer.set(rng.sample(pool, rng.randint(1, len(pool))))
                time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=picker, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=updater))
    for thread in threads:
        thread.start()
    time.sleep(DURATION)
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert errors == []
    assert all(e.pending == 0 for e in endpointer._cache.entries())
    assert sum(picks.values()) > 1000
    endpointer.close()
    assert len(made) > 10
    assert all(closes[id(c)] == 1 for c in made), "every endpoint closed exactly once"


def test_invalidation_racing_recovery_never_serves_a_closed_endpoint() -> None:
    from sd_core import BackendUnavailableError, EndpointCache, Event

    closes: Counter[int] = Counter()
    made: list[object] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    class Conn:
        def __init__(self, instance: Instance) -> None:
            self.closed = False
            with lock:
                made.append(self)
            time.sleep(0)  # let a reader run in the middle of an update

        def close(self) -> None:
            with lock:
                closes[id(self)] += 1
            self.closed = True

    pool = [Instance("10.0.0.1", 3000 + i, id=f"i{i}") for i in range(6)]
    cache: EndpointCache[Conn] = EndpointCache(Conn, invalidate_on_error=0.0002)
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                for entry in cache.entries():
                    if cache.acquire(entry):
                        assert not entry.endpoint.closed, "a closed endpoint was handed out"
                        cache.release(entry)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    for thread in readers:
        thread.start()
    rng = random.Random(5)
    deadline = time.monotonic() + 2
    try:
        while time.monotonic() < deadline:
            cache.update(Event(rng.sample(pool, rng.randint(1, len(pool)))))
            # After a recovery nothing can expire until the next error: every endpoint is open.
            open_now = cache.endpoints()
            assert not [c for c in open_now if c.closed], "the set serves closed endpoints"
            cache.update(Event(error=BackendUnavailableError("flapping")))
            time.sleep(0.0003)
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
        sys.setswitchinterval(interval)
    cache.close()
    assert errors == []
    assert len(made) > 10
    assert all(closes[id(c)] == 1 for c in made)
