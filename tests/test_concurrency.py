"""Many threads picking while another pushes updates: no error, no double close, no leak."""

from __future__ import annotations

import random
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
