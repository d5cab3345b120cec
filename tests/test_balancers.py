"""Balancers: picking, in-flight accounting, failures, waiting for endpoints."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Container, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import sd_core._balance.base as base_module
from sd_core import (
    BackendUnavailableError,
    Balancer,
    Candidate,
    ConsistentHash,
    EndpointCache,
    Endpointer,
    Event,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    LeastPending,
    NoEndpointsError,
    PeakEwma,
    PriorityWeighted,
    Random,
    RoundRobin,
    Weighted,
)
from sd_core.plugin import FakeClock, use_clock

KINDS: list[type[Balancer[Instance]]] = [
    RoundRobin,
    Random,
    LeastPending,
    Weighted,
    ConsistentHash,
    PeakEwma,
    PriorityWeighted,
]


def instances(n: int) -> list[Instance]:
    return [Instance("10.0.0.1", 1000 + i, id=f"i{i}") for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_endpoint_raises_at_once_when_there_are_none(kind: type[Balancer[Instance]]) -> None:
    with Endpointer(FixedInstancer([])) as endpointer:
        balancer = kind(endpointer)
        with pytest.raises(NoEndpointsError):
            balancer.endpoint("k")
        with pytest.raises(NoEndpointsError), balancer.choose(key="k"):
            pass


@pytest.mark.parametrize("kind", KINDS)
def test_choose_counts_in_flight_and_records_failures(kind: type[Balancer[Instance]]) -> None:
    with Endpointer(FixedInstancer(instances(3))) as endpointer:
        balancer = kind(endpointer)
        entries = endpointer._cache.entries()
        with balancer.choose(key="k") as endpoint:
            (entry,) = [e for e in entries if e.endpoint is endpoint]
            assert entry.pending == 1
        assert entry.pending == 0
        assert entry.successes == 1 and entry.failures == 0
        with pytest.raises(ZeroDivisionError), balancer.choose(key="k") as endpoint:
            1 / 0  # noqa: B018
        assert sum(e.failures for e in entries) == 1
        assert sum(e.successes for e in entries) == 1
        assert all(e.pending == 0 for e in entries)


@pytest.mark.parametrize("kind", KINDS)
def test_choose_with_timeout_waits_for_an_endpoint(kind: type[Balancer[Instance]]) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer:
        balancer = kind(endpointer)
        timer = threading.Timer(0.05, instancer.set, args=(instances(1),))
        timer.start()
        with balancer.choose(key="k", timeout=5) as endpoint:
            assert endpoint == instances(1)[0]
        timer.join()
        instancer.set([])
        with pytest.raises(NoEndpointsError), balancer.choose(key="k", timeout=0.05):
            pass


@pytest.mark.parametrize("kind", KINDS)
async def test_achoose_waits_without_blocking_the_loop(kind: type[Balancer[Instance]]) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer:
        balancer = kind(endpointer)
        loop = asyncio.get_running_loop()
        loop.call_later(
            0.05, lambda: threading.Thread(target=instancer.set, args=(instances(2),)).start()
        )
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        async with balancer.achoose(key="k", timeout=5) as endpoint:
            assert endpoint in instances(2)
        task.cancel()
        assert ticks > 2
        instancer.set([])
        with pytest.raises(NoEndpointsError):
            async with balancer.achoose(key="k", timeout=0.05):
                pass


def test_round_robin_cycles_in_order() -> None:
    balancer = RoundRobin(FixedEndpointer(["a", "b", "c"]))
    assert [balancer.endpoint() for _ in range(7)] == list("abcabca")


def test_random_is_repeatable_with_a_seed_and_covers_all() -> None:
    fixed = FixedEndpointer(list(range(5)))
    first = [Random(fixed, seed=7).endpoint() for _ in range(1)]
    a, b = Random(fixed, seed=7), Random(fixed, seed=7)
    seq = [a.endpoint() for _ in range(200)]
    assert seq == [b.endpoint() for _ in range(200)]
    assert set(seq) == set(range(5)) and first[0] == seq[0]


def test_least_pending_avoids_the_busy_endpoint() -> None:
    balancer = LeastPending(FixedEndpointer(["busy", "idle"]), seed=1)
    busy = [balancer.choose() for _ in range(1)]
    held = busy[0].__enter__()
    picks = Counter()
    for _ in range(50):
        with balancer.choose() as endpoint:
            picks[endpoint] += 1
    other = "idle" if held == "busy" else "busy"
    assert picks == Counter({other: 50})
    busy[0].__exit__(None, None, None)


def test_weighted_follows_weights_smoothly() -> None:
    weighted = [
        Instance("h", 1, id="a", weight=5),
        Instance("h", 2, id="b", weight=1),
        Instance("h", 3, id="c", weight=1),
        Instance("h", 4, id="z", weight=0),
    ]
    with Endpointer(FixedInstancer(weighted)) as endpointer:
        balancer = Weighted(endpointer)
        picks = [balancer.endpoint().id for _ in range(70)]
    for start in range(0, 70, 7):
        assert Counter(picks[start : start + 7]) == Counter({"a": 5, "b": 1, "c": 1})
    longest = max(len(run) for run in "".join(picks).replace("b", " ").replace("c", " ").split())
    assert longest <= 5


def test_weighted_with_all_weights_zero_picks_evenly() -> None:
    zero = [Instance("h", i + 1, weight=0) for i in range(3)]
    with Endpointer(FixedInstancer(zero)) as endpointer:
        balancer = Weighted(endpointer)
        assert Counter(balancer.endpoint().port for _ in range(30)) == Counter(
            {1: 10, 2: 10, 3: 10}
        )


def test_consistent_hash_moves_only_the_keys_of_the_instance_that_left() -> None:
    instancer = FixedInstancer(instances(10))
    keys = [f"user-{k}" for k in range(10_000)]
    with Endpointer(instancer) as endpointer:
        balancer = ConsistentHash(endpointer)
        before = {k: balancer.endpoint(k).id for k in keys}
        assert len(set(before.values())) == 10
        assert all(balancer.endpoint(k).id == before[k] for k in keys[:100])
        instancer.set([i for i in instances(10) if i.id != "i3"])
        after = {k: balancer.endpoint(k).id for k in keys}
    moved = {k for k in keys if before[k] != after[k]}
    assert moved == {k for k in keys if before[k] == "i3"}
    assert 500 < len(moved) < 1500


def test_consistent_hash_needs_a_key() -> None:
    balancer = ConsistentHash(FixedEndpointer(["a"]))
    with pytest.raises(ValueError, match="needs a key"):
        balancer.endpoint()


def test_a_removed_endpoint_is_never_handed_out_after_close() -> None:
    instancer = FixedInstancer(instances(2))
    closed: list[str] = []

    class Conn:
        def __init__(self, i: Instance) -> None:
            self.id = i.id
            self.closed = False

        def close(self) -> None:
            self.closed = True
            closed.append(self.id)

    with Endpointer(instancer, Conn) as endpointer:
        balancer = RoundRobin(endpointer)
        instancer.set(instances(1))
        for _ in range(10):
            with balancer.choose() as conn:
                assert not conn.closed
    assert closed.count("i1") == 1


def test_round_robin_turn_stays_even_across_set_changes() -> None:
    instancer = FixedInstancer(instances(3))
    with Endpointer(instancer) as endpointer:
        balancer = RoundRobin(endpointer)
        assert {balancer.endpoint().id for _ in range(3)} == {"i0", "i1", "i2"}
        instancer.set(instances(5))
        picks = Counter(balancer.endpoint().id for _ in range(50))
        assert picks == Counter({f"i{n}": 10 for n in range(5)})
        with balancer.choose() as chosen:
            assert chosen in instances(5)


# -- keys that do not encode -------------------------------------------------------------


def test_consistent_hash_hashes_any_str_lone_surrogates_included() -> None:
    odd = [Instance("10.0.0.1", 1000 + n, id=ident) for n, ident in enumerate(["\ud800", "b", "c"])]
    with Endpointer(FixedInstancer(odd)) as endpointer:
        balancer = ConsistentHash(endpointer)
        keys = ["\udfff", "\ud800x", "plain", "caf\u00e9", b"raw", 42]
        picks = {repr(k): balancer.endpoint(k) for k in keys}
        assert all(balancer.endpoint(k) is picks[repr(k)] for k in keys)
        with balancer.choose(key="\udc80") as chosen:
            assert chosen in odd
        spread = Counter(balancer.endpoint(f"user-{n}").id for n in range(3000))
        assert set(spread) == {"\ud800", "b", "c"}


def test_consistent_hash_keys_did_not_move_for_ordinary_strings() -> None:
    # "surrogatepass" encodes every other str exactly as UTF-8 did: no key moves.
    import hashlib

    from sd_core._balance.consistent_hash import _key_hash

    for key in ("user-1", "caf\u00e9", "\u2603", ""):
        digest = hashlib.md5(key.encode(), usedforsecurity=False).digest()[:4]
        assert _key_hash(key) == int.from_bytes(digest, "little")


# -- waiting without limit ----------------------------------------------------------------


def _wait_until(ready: Callable[[], bool], what: str, bound: float = 5.0) -> None:
    deadline = time.monotonic() + bound
    pause = threading.Event()
    while not ready():
        assert time.monotonic() < deadline, f"not ready within {bound} s: {what}"
        pause.wait(0.001)


@pytest.mark.parametrize("kind", KINDS)
def test_choose_with_an_infinite_timeout_waits_until_an_endpoint_appears(
    kind: type[Balancer[Instance]],
) -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer:
        balancer = kind(endpointer)
        notifier = endpointer._cache.notifier
        got: list[object] = []

        def choose() -> None:
            try:
                with balancer.choose(key="k", timeout=math.inf) as endpoint:
                    got.append(endpoint)
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=choose, daemon=True)
        thread.start()
        _wait_until(lambda: bool(notifier._cond._waiters) or bool(got), "choose() waiting")
        assert got == [], f"choose(timeout=inf) did not wait: {got}"
        adder = threading.Thread(target=instancer.set, args=(instances(1),))
        adder.start()
        thread.join(5)
        adder.join(5)
        assert got == instances(1)


async def test_achoose_with_an_infinite_timeout_waits_until_an_endpoint_appears() -> None:
    instancer = FixedInstancer([])
    with Endpointer(instancer) as endpointer:
        balancer = RoundRobin(endpointer)
        notifier = endpointer._cache.notifier

        async def choose() -> Instance:
            async with balancer.achoose(timeout=math.inf) as endpoint:
                return endpoint

        task = asyncio.create_task(choose())
        for _ in range(1000):  # a few loop turns: the task runs until it awaits the notifier
            if notifier._futures or task.done():
                break
            await asyncio.sleep(0)
        assert notifier._futures and not task.done(), task
        threading.Thread(target=instancer.set, args=(instances(1),)).start()
        assert await asyncio.wait_for(task, 5) == instances(1)[0]


# -- a closed endpoint is never handed out ------------------------------------------------


class Conn:
    """An endpoint that records when it was closed, in the sequence shared with the picks."""

    __slots__ = ("close_seq", "id", "seq")

    def __init__(self, instance: Instance, seq: Iterator[int]) -> None:
        self.id = instance.id
        self.seq = seq
        self.close_seq: int | None = None

    def close(self) -> None:
        self.close_seq = next(self.seq)


def _recording(
    kind: type[Balancer[Any]],
    seq: Iterator[int],
    local: threading.local,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """``kind`` recording in ``local.picked`` a number of ``seq`` taken right after each pick.

    endpoint() checks the entry it picked after that pick: when it returns an endpoint, the
    endpoint was not closed at the check, so its closer ran (and took its number) after the
    pick's number. A closer number below the pick's means a closed endpoint was handed out.
    """
    if kind is RoundRobin:
        # RoundRobin implements turns(): endpoint() steps the base's cycle over them without
        # calling pick(). Record the steps of that cycle, not of an overridden pick().
        class Stepped:
            def __init__(self, round_: list[Any]) -> None:
                self.inner = itertools.cycle(round_)

            def __iter__(self) -> Stepped:
                return self

            def __next__(self) -> Any:
                entry = next(self.inner)
                local.picked = next(seq)
                return entry

        monkeypatch.setattr(base_module, "itertools", SimpleNamespace(cycle=Stepped))
        return RoundRobin

    class Recording(kind):  # type: ignore[valid-type,misc]
        def pick(self, candidates: Any, key: object) -> Any:
            entry = super().pick(candidates, key)
            local.picked = next(seq)
            return entry

    return Recording


@pytest.mark.parametrize("kind", KINDS)
def test_endpoint_never_returns_an_endpoint_closed_under_churn(
    kind: type[Balancer[Instance]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seq = itertools.count()
    local = threading.local()
    generation = itertools.count()

    def fresh() -> list[Instance]:  # new ids each time: every endpoint of the old set closes
        g = next(generation)
        return [Instance("10.0.0.1", 1000 + n, id=f"g{g}-{n}") for n in range(3)]

    instancer = FixedInstancer(fresh())
    stop = threading.Event()
    handed_closed: list[tuple[str, int, int]] = []
    picks: list[int] = []
    errors: list[BaseException] = []
    with Endpointer(instancer, lambda i: Conn(i, seq)) as endpointer:
        balancer = _recording(kind, seq, local, monkeypatch)(endpointer)

        def churn() -> None:
            try:
                while not stop.is_set():
                    instancer.set(fresh())
            except BaseException as exc:
                errors.append(exc)

        def picker() -> None:
            count = 0
            endpoint = balancer.endpoint
            try:
                while not stop.is_set():
                    conn = endpoint(count)
                    picked, closed = local.picked, conn.close_seq
                    if closed is not None and closed < picked:
                        handed_closed.append((conn.id, closed, picked))
                    count += 1
            except BaseException as exc:
                errors.append(exc)
            picks.append(count)

        threads = [threading.Thread(target=churn)]
        threads += [threading.Thread(target=picker) for _ in range(3)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads often: races show up within the run
        try:
            for thread in threads:
                thread.start()
            stop.wait(0.4)  # the length of the run, not a synchronisation
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
            sys.setswitchinterval(interval)
        assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert sum(picks) > 1000
    assert handed_closed == [], (
        f"{len(handed_closed)} of {sum(picks)} picks returned an endpoint closed before the pick"
    )


def _picking_after_churn(
    kind: type[Balancer[Conn]], churn: Callable[[], object]
) -> type[Balancer[Conn]]:
    """``kind`` whose first pick sees its snapshot of the set replaced (and its endpoints
    closed) just before it picks: the race of endpoint() with an update, made deterministic."""

    class Racing(kind):  # type: ignore[valid-type,misc]
        raced = False

        def pick(self, candidates: Any, key: object) -> Any:
            if not self.raced:
                self.raced = True
                churn()
            return super().pick(candidates, key)

    return Racing


@pytest.mark.parametrize("kind", KINDS)
def test_endpoint_picks_again_when_its_snapshot_was_replaced_and_closed(
    kind: type[Balancer[Conn]],
) -> None:
    seq = itertools.count()
    instancer = FixedInstancer(instances(3))
    replacement = [Instance("10.0.0.2", 2000 + n, id=f"new{n}") for n in range(3)]
    with Endpointer(instancer, lambda i: Conn(i, seq)) as endpointer:
        balancer = _picking_after_churn(kind, lambda: instancer.set(replacement))(endpointer)
        conn = balancer.endpoint("k")
        assert conn.close_seq is None, f"handed out {conn.id}, closed already"
        assert conn.id.startswith("new")


@pytest.mark.parametrize("kind", KINDS)
def test_the_fast_paths_honour_an_invalidation_that_came_due(kind: type[Balancer[Any]]) -> None:
    """endpoint() and choose() serve a set without asking the cache while nothing changed;
    an error with invalidate_on_error must stop that at its deadline, and a recovery restart
    it."""
    with use_clock(FakeClock()) as fake:
        assert isinstance(fake, FakeClock)
        cache: EndpointCache[Instance] = EndpointCache(invalidate_on_error=5)
        cache.update(Event(instances(3)))
        balancer = kind(SimpleNamespace(_cache=cache))  # type: ignore[arg-type]
        for _ in range(3):  # the per-set state and lanes are built
            balancer.endpoint("k")
            with balancer.choose("k"):
                pass
        cache.update(Event(error=BackendUnavailableError("down")))
        fake.advance(4.9)
        assert balancer.endpoint("k") in instances(3)  # the last good set, until the deadline
        fake.advance(0.2)
        with pytest.raises(NoEndpointsError, match="down"):
            balancer.endpoint("k")
        with pytest.raises(NoEndpointsError, match="down"), balancer.choose("k"):
            pass
        cache.update(Event(instances(2)))
        assert {balancer.endpoint("k").id for _ in range(20)} <= {"i0", "i1"}
        with balancer.choose("k") as chosen:
            assert chosen.id in {"i0", "i1"}
        cache.close(wait=False)


def test_round_robin_fast_path_never_returns_an_endpoint_closed_meanwhile() -> None:
    seq = itertools.count()
    instancer = FixedInstancer(instances(3))
    replacement = [Instance("10.0.0.2", 2000 + n, id=f"new{n}") for n in range(3)]
    with Endpointer(instancer, lambda i: Conn(i, seq)) as endpointer:
        balancer: RoundRobin[Conn] = RoundRobin(endpointer)
        balancer.endpoint()  # builds the cycle: the next pick takes the lock-free path
        cycle, live = balancer._Balancer__lane  # type: ignore[attr-defined]
        assert live == [True]

        class Racing:
            def __next__(self) -> Any:
                instancer.set(replacement)  # lands in the middle of the fast path's step
                return next(cycle)

        balancer._Balancer__lane = (Racing(), live)  # type: ignore[attr-defined]
        conn = balancer.endpoint()
        assert conn.close_seq is None, f"handed out {conn.id}, closed already"
        assert conn.id.startswith("new")
        assert live == []  # the set of that cycle is no longer served
        with balancer.choose() as chosen:  # the new set's own lane
            assert chosen.id.startswith("new") and chosen.close_seq is None


# ConsistentHash keeps no per-set state: its ring follows the set (tests/test_consistent_hash.py).
@pytest.mark.parametrize("kind", [RoundRobin, Weighted])
def test_a_stale_snapshot_does_not_rebuild_per_set_state(
    kind: type[Balancer[Conn]],
) -> None:
    seq = itertools.count()
    instancer = FixedInstancer(instances(3))
    replacement = [Instance("10.0.0.2", 2000 + n, id=f"new{n}", weight=2) for n in range(4)]
    with Endpointer(instancer, lambda i: Conn(i, seq)) as endpointer:
        cache = endpointer._cache
        balancer = kind(endpointer)
        stale = cache.entries()
        balancer.endpoint("k")
        instancer.set(replacement)
        balancer.endpoint("k")  # per-set state (cycle, schedule, ring) now of the new set
        builds = 0

        def state() -> object:  # the set the per-set state was built for
            if isinstance(balancer, RoundRobin):
                return balancer._Balancer__turns[0]  # type: ignore[attr-defined]
            return balancer._Balancer__state[0]  # type: ignore[attr-defined]

        current = cache.entries()
        assert state() is current
        for _ in range(5):  # a slow caller still holding the replaced snapshot
            entry = balancer.pick(stale, "k")
            builds += state() is not current
            assert entry in current, "picked from a replaced set"
            assert not entry.closed
        assert builds == 0


# -- the public contract ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_built_in_balancers_use_only_the_public_contract(kind: type[Balancer[Any]]) -> None:
    own = vars(kind)
    assert "pick" in own or "turns" in own
    assert not {"_pick", "_pick_avoiding", "endpoint", "choose", "achoose"} & set(own)
    source = Path(str(sys.modules[kind.__module__].__file__)).read_text()
    private = re.findall(
        r"\b_Entry\b|(?<!sd_core)\._cache\b|\._entries\b|\._deadline\b|_Balancer__|_latest", source
    )
    assert private == [], f"{kind.__name__} reaches into the cache or the base: {private}"


def test_public_candidates_are_the_cache_entries_themselves() -> None:
    seen: list[Any] = []

    class Spy(Balancer[str]):
        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            seen.append(candidates)
            return candidates[0]

    endpointer = FixedEndpointer(["a", "b"])
    balancer = Spy(endpointer)
    assert balancer.endpoint() == "a"
    with balancer.choose(key="k") as endpoint:
        assert endpoint == "a"
    assert seen[0] is seen[1] is endpointer._cache.entries()  # no copy, no view per pick
    (first, _) = seen[0]
    assert (first.endpoint, first.instance, first.pending) == ("a", None, 0)
    assert (first.successes, first.failures) == (1, 0)
    assert "pending=0" in repr(first)


def test_a_pick_that_returns_something_else_is_refused() -> None:
    class Sloppy(Balancer[str]):
        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            return candidates[0].endpoint  # type: ignore[return-value]

    balancer = Sloppy(FixedEndpointer(["a", "b"]))
    with pytest.raises(TypeError, match=r"Sloppy.pick\(\) must return one of the candidates"):
        balancer.endpoint()
    with pytest.raises(TypeError, match="must return one of the candidates"), balancer.choose():
        pass

    class SloppyAvoiding(RoundRobin[str]):
        def pick_avoiding(self, candidates: Any, key: object, avoided: Any) -> Any:
            return None

    avoiding = SloppyAvoiding(FixedEndpointer(["a", "b"]))
    with (
        pytest.raises(TypeError, match=r"pick_avoiding\(\) must return"),
        avoiding.choose(avoid=["a"]),
    ):
        pass


def test_turns_that_are_empty_or_not_candidates_are_refused() -> None:
    class Nothing(Balancer[str]):
        def turns(self, candidates: Sequence[Candidate[str]]) -> list[Candidate[str]]:
            return []

    class Strings(Balancer[str]):
        def turns(self, candidates: Sequence[Candidate[str]]) -> Any:
            return [c.endpoint for c in candidates]

    with pytest.raises(ValueError, match=r"Nothing.turns\(\) returned no candidates"):
        Nothing(FixedEndpointer(["a"])).endpoint()
    with pytest.raises(TypeError, match=r"Strings.turns\(\) returned 'a', not a candidate"):
        Strings(FixedEndpointer(["a"])).endpoint()

    class Neither(Balancer[str]):
        pass

    with pytest.raises(NotImplementedError, match="implements neither pick"):
        Neither(FixedEndpointer(["a"])).endpoint()


def test_turns_may_repeat_or_leave_out_candidates() -> None:
    class Heavy(Balancer[str]):
        def turns(self, candidates: Sequence[Candidate[str]]) -> list[Candidate[str]]:
            a, b, _ = candidates
            return [a, a, b]

    balancer = Heavy(FixedEndpointer(["a", "b", "c"]))
    assert [balancer.endpoint() for _ in range(6)] == list("aabaab")
    with balancer.choose() as endpoint:
        assert endpoint == "a"


def test_a_subclass_overriding_pick_of_a_turns_balancer_is_asked_for_every_pick() -> None:
    asked = Counter[str]()

    class Counting(RoundRobin[str]):
        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            chosen = super().pick(candidates, key)
            asked[chosen.endpoint] += 1
            return chosen

    balancer = Counting(FixedEndpointer(["a", "b"]))
    picks = [balancer.endpoint() for _ in range(6)]
    assert Counter(picks) == asked == Counter({"a": 3, "b": 3})


def test_pick_avoiding_is_told_which_candidates_to_avoid() -> None:
    told: list[tuple[Any, Any]] = []

    class Last(Balancer[str]):
        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            return candidates[-1]

        def pick_avoiding(
            self,
            candidates: Sequence[Candidate[str]],
            key: object,
            avoided: Container[Candidate[str]],
        ) -> Candidate[str]:
            told.append((candidates, avoided))
            return next(c for c in reversed(candidates) if c not in avoided)

    balancer = Last(FixedEndpointer(["a", "b", "c"]))
    with balancer.choose() as endpoint:
        assert endpoint == "c" and told == []
    with balancer.choose(avoid=["c", "zzz"]) as endpoint:
        assert endpoint == "b"
    ((candidates, avoided),) = told
    assert [c in avoided for c in candidates] == [False, False, True]
    assert "c" not in avoided  # it holds candidates, not endpoints


def test_the_default_pick_avoiding_picks_again_then_takes_the_first_not_avoided() -> None:
    class Always(Balancer[str]):
        picks = 0

        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            Always.picks += 1
            return candidates[0]

    balancer = Always(FixedEndpointer(["a", "b", "c"]))
    with balancer.choose(avoid=["a"]) as endpoint:
        assert endpoint == "b"
    assert Always.picks == 3  # len(candidates) picks, then the first not avoided
    with balancer.choose(avoid=["a", "b", "c"]) as endpoint:
        assert endpoint == "a"  # all avoided: the pick stands


def test_state_for_builds_once_per_set_and_never_for_a_replaced_one() -> None:
    builds: list[int] = []

    class Stateful(Balancer[Instance]):
        def build(self, candidates: Sequence[Candidate[Instance]]) -> int:
            builds.append(len(candidates))
            return len(candidates)

        def pick(
            self, candidates: Sequence[Candidate[Instance]], key: object
        ) -> Candidate[Instance]:
            current, size = self.state_for(candidates, self.build)
            assert len(current) == size
            return current[0]

    instancer = FixedInstancer(instances(2))
    with Endpointer(instancer) as endpointer:
        balancer = Stateful(endpointer)
        stale = endpointer._cache.entries()
        for _ in range(5):
            balancer.endpoint()
        assert builds == [2]
        instancer.set(instances(3))
        assert balancer.pick(stale, None).endpoint == instances(3)[0]  # from the current set
        for _ in range(5):
            balancer.endpoint()
        assert builds == [2, 3]


def test_subclasses_may_use_any_attribute_name_of_their_own() -> None:
    class Busy(Balancer[str]):
        def __init__(self, endpointer: Endpointer[str]) -> None:
            super().__init__(endpointer)
            self._cache = {}  # names the base might have used
            self._lock = None
            self._state = "mine"

        def pick(self, candidates: Sequence[Candidate[str]], key: object) -> Candidate[str]:
            return candidates[0]

    balancer = Busy(FixedEndpointer(["a"]))
    assert balancer.endpoint() == "a"
    with balancer.choose(timeout=1) as endpoint:
        assert endpoint == "a"


# -- Weighted: exact, smooth, and without a lock ------------------------------------------------


def _weighted(weights: Sequence[int]) -> list[Instance]:
    return [Instance("10.0.0.1", 1000 + n, id=f"w{n}", weight=w) for n, w in enumerate(weights)]


WEIGHTS = [[5, 1, 1], [3, 3, 3], [100, 10, 1], [4, 6, 10], [0, 2, 3], [7, 0, 0, 1, 13, 2, 2]]


@pytest.mark.parametrize("weights", WEIGHTS, ids=str)
def test_weighted_is_exact_over_every_run_of_sum_weights_picks(weights: list[int]) -> None:
    total = sum(weights)
    expected = Counter({f"w{n}": w for n, w in enumerate(weights) if w})
    with Endpointer(FixedInstancer(_weighted(weights))) as endpointer:
        balancer = Weighted(endpointer)
        picks = [balancer.endpoint().id for _ in range(3 * total)]
    for start in range(2 * total + 1):  # every window, not only those starting a round
        assert Counter(picks[start : start + total]) == expected, start


@pytest.mark.parametrize("weights", WEIGHTS, ids=str)
def test_weighted_keeps_every_endpoint_within_a_few_picks_of_its_share(
    weights: list[int],
) -> None:
    total = sum(weights)
    with Endpointer(FixedInstancer(_weighted(weights))) as endpointer:
        balancer = Weighted(endpointer)
        counts = Counter[str]()
        worst = 0.0
        for n in range(1, 2 * total + 1):
            counts[balancer.endpoint().id] += 1
            for k, w in enumerate(weights):
                worst = max(worst, abs(counts[f"w{k}"] - n * w / total))
    assert worst < 3.5  # stride scheduling keeps < 1; a burst would be about max(weights)


def test_weighted_is_exact_under_eight_threads() -> None:
    weights = [5, 3, 1, 1, 2]
    rounds, threads = 200, 8
    barrier = threading.Barrier(threads)
    counts: list[Counter[str]] = []
    with Endpointer(FixedInstancer(_weighted(weights))) as endpointer:
        balancer = Weighted(endpointer)
        balancer.endpoint()  # builds the schedule; one pick of the first round is taken

        def picker() -> None:
            mine = Counter[str]()
            barrier.wait(10)
            for _ in range(rounds * sum(weights)):
                mine[balancer.endpoint().id] += 1
            counts.append(mine)

        workers = [threading.Thread(target=picker) for _ in range(threads)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # threads interleave within rounds
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(30)
        finally:
            sys.setswitchinterval(interval)
        assert not any(worker.is_alive() for worker in workers)
        tail = Counter(balancer.endpoint().id for _ in range(sum(weights) - 1))  # round ends
    total = sum(counts, Counter[str]()) + tail + Counter({"w0": 1})
    assert len(counts) == threads
    assert total == Counter({f"w{n}": (threads * rounds + 1) * w for n, w in enumerate(weights)})
    assert all(len(mine) == len(weights) for mine in counts)  # each thread got a mix


def test_a_weighted_pick_takes_no_lock() -> None:
    with Endpointer(FixedInstancer(_weighted([2, 1]))) as endpointer:
        balancer = Weighted(endpointer)
        balancer.endpoint()  # the schedule of this set exists
        held, done = threading.Event(), threading.Event()

        def hold_the_base_lock() -> None:
            with balancer._Balancer__lock:  # type: ignore[attr-defined]
                held.set()
                done.wait(10)

        holder = threading.Thread(target=hold_the_base_lock)
        holder.start()
        try:
            assert held.wait(10)
            picks = Counter(balancer.endpoint().id for _ in range(300))
            with balancer.choose() as endpoint:
                assert endpoint.id in {"w0", "w1"}
        finally:
            done.set()
            holder.join(10)
        assert picks == Counter({"w0": 200, "w1": 100})


def test_weighted_endpoints_without_an_instance_weigh_one() -> None:
    balancer = Weighted(FixedEndpointer(["a", "b", "c"]))
    picks = [balancer.endpoint() for _ in range(30)]
    assert all(Counter(picks[n : n + 3]) == Counter("abc") for n in range(28))


def test_a_block_that_finds_the_lock_taken_waits_for_it_without_blocking_in_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread switched out right after it took the cache's lock must not make the others
    block in it (they would queue behind whoever gets it next, waiting for the GIL with it):
    they try again, giving the GIL away, until it is free."""
    endpointer = FixedEndpointer(["a", "b"])
    balancer: RoundRobin[str] = RoundRobin(endpointer)
    balancer.endpoint()
    cache = endpointer._cache
    trying = threading.Event()
    real_sleep = base_module._sleep

    def sleep(seconds: float) -> None:
        trying.set()
        real_sleep(seconds)

    monkeypatch.setattr(base_module, "_sleep", sleep)
    got: list[str] = []

    def work() -> None:
        for _ in range(3):
            with balancer.choose() as endpoint:
                got.append(endpoint)

    with cache._lock:
        worker = threading.Thread(target=work)
        worker.start()
        assert trying.wait(10), "the block did not try again"
        assert got == []
    worker.join(10)
    assert not worker.is_alive()
    assert sorted(got) == ["a", "a", "b"] or sorted(got) == ["a", "b", "b"]
    assert all(entry.pending == 0 for entry in cache.entries())
    assert sum(entry.successes for entry in cache.entries()) == 3
