"""PriorityWeighted: RFC 2782 selection (lowest priority first, weighted random within it)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from sd_core import (
    Endpointer,
    FixedEndpointer,
    FixedInstancer,
    Instance,
    NoEndpointsError,
    PriorityWeighted,
    retry,
)

PICKS = 100_000


def srv(name: str, weight: int, priority: int = 0) -> Instance:
    return Instance("10.0.0.1", 1000 + len(name), id=name, weight=weight, priority=priority)


def counts(balancer: PriorityWeighted[Instance], picks: int = PICKS) -> Counter[str]:
    return Counter(balancer.endpoint().id for _ in range(picks))


def assert_within_5_percent(seen: Counter[str], expected: dict[str, float]) -> None:
    total = sum(seen.values())
    for name, share in expected.items():
        got = seen[name] / total
        assert abs(got - share) <= 0.05 * share, f"{name}: {got:.4f} picked, {share:.4f} due"


def test_the_weights_are_followed_within_5_percent_over_100000_picks() -> None:
    instances = [srv("a", 10), srv("b", 20), srv("c", 70), srv("low", 50, priority=1)]
    with Endpointer(FixedInstancer(instances)) as endpointer:
        seen = counts(PriorityWeighted(endpointer, seed=1))
    assert_within_5_percent(seen, {"a": 0.1, "b": 0.2, "c": 0.7})
    assert seen["low"] == 0


def test_a_lower_priority_is_used_only_when_no_higher_one_is_left() -> None:
    preferred = [srv("p1", 1), srv("p2", 3)]
    backup = [srv("b1", 1, priority=5), srv("b2", 1, priority=5)]
    last = [srv("last", 1, priority=9)]
    instancer = FixedInstancer([*preferred, *backup, *last])
    with Endpointer(instancer) as endpointer:
        balancer = PriorityWeighted(endpointer, seed=2)
        assert set(counts(balancer, 2_000)) == {"p1", "p2"}
        assert instancer.set([preferred[1], *backup, *last])
        assert set(counts(balancer, 2_000)) == {"p2"}
        assert instancer.set([*backup, *last])
        assert_within_5_percent(counts(balancer, 20_000), {"b1": 0.5, "b2": 0.5})
        assert instancer.set(last)
        assert set(counts(balancer, 100)) == {"last"}
        assert instancer.set([*preferred, *last])  # the preferred tier is back: used at once
        assert set(counts(balancer, 2_000)) == {"p1", "p2"}


def test_priorities_need_not_be_contiguous_nor_positive() -> None:
    instances = [srv("x", 1, priority=-3), srv("y", 1, priority=0), srv("z", 1, priority=70)]
    with Endpointer(FixedInstancer(instances)) as endpointer:
        assert set(counts(PriorityWeighted(endpointer), 500)) == {"x"}


def test_weight_zero_has_a_very_small_chance_and_all_zero_are_picked_evenly() -> None:
    instances = [srv("heavy", 99), srv("z1", 0), srv("z2", 0)]
    with Endpointer(FixedInstancer(instances)) as endpointer:
        seen = counts(PriorityWeighted(endpointer, seed=3))
    # 99 shares for heavy, one share for the zero-weight pair (RFC 2782: "a very small chance").
    assert_within_5_percent(seen, {"heavy": 0.99})
    assert 0 < seen["z1"] + seen["z2"] < 0.02 * PICKS
    assert seen["z1"] and seen["z2"]
    with Endpointer(FixedInstancer([srv("z1", 0), srv("z2", 0), srv("z3", 0)])) as endpointer:
        seen = counts(PriorityWeighted(endpointer, seed=4), 30_000)
    assert_within_5_percent(seen, {"z1": 1 / 3, "z2": 1 / 3, "z3": 1 / 3})


def test_a_seed_makes_the_sequence_repeatable() -> None:
    instances = [srv("a", 1), srv("b", 2), srv("c", 3)]
    with Endpointer(FixedInstancer(instances)) as endpointer:
        one, two = PriorityWeighted(endpointer, seed=7), PriorityWeighted(endpointer, seed=7)
        sequence = [one.endpoint().id for _ in range(200)]
        assert sequence == [two.endpoint().id for _ in range(200)]
        assert len(set(sequence)) == 3


def test_no_endpoints_raises_at_once() -> None:
    with Endpointer(FixedInstancer([])) as endpointer:
        balancer = PriorityWeighted(endpointer)
        with pytest.raises(NoEndpointsError):
            balancer.endpoint()
        with pytest.raises(NoEndpointsError), balancer.choose():
            pass


def test_endpoints_without_an_instance_weigh_1_at_priority_0() -> None:
    balancer = PriorityWeighted(FixedEndpointer(["a", "b"]), seed=5)
    seen = Counter(balancer.endpoint() for _ in range(20_000))
    assert_within_5_percent(seen, {"a": 0.5, "b": 0.5})  # type: ignore[arg-type]


def call_to(name: str, fails: bool) -> Callable[[], str]:
    def call() -> str:
        if fails:
            raise ConnectionError(f"{name} refused")
        return name

    return call


def test_a_retry_moves_to_the_next_priority_only_when_the_preferred_all_failed() -> None:
    instances = [
        srv("p1", 1),
        srv("p2", 1),
        srv("backup", 1, priority=1),
        srv("last", 100, priority=2),
    ]
    failing = {"p1", "p2"}

    def factory(instance: Instance) -> Callable[[], str]:
        return call_to(instance.id, instance.id in failing)

    with Endpointer(FixedInstancer(instances), factory) as endpointer:
        balancer = PriorityWeighted(endpointer, seed=6)
        attempts: list[str] = []

        def failed(attempt: int, error: BaseException) -> bool:
            attempts.append(str(error))
            return True

        call = retry(4, 5.0, balancer, callback=failed)
        for _ in range(50):
            attempts.clear()
            assert call() == "backup"
            # Both preferred ones were tried (in some order) before the backup, never "last".
            assert sorted(attempts) == ["p1 refused", "p2 refused"]


def test_avoiding_every_candidate_still_picks_one() -> None:
    with Endpointer(FixedInstancer([srv("a", 1), srv("b", 1, priority=1)])) as endpointer:
        balancer = PriorityWeighted(endpointer, seed=8)
        both = endpointer.endpoints()
        with balancer.choose(avoid=both) as chosen:
            assert chosen.id == "a"  # the usual pick: the preferred tier


def test_it_uses_only_the_public_balancer_contract() -> None:
    assert "pick" in vars(PriorityWeighted)
    source = Path(str(sys.modules[PriorityWeighted.__module__].__file__)).read_text()
    private = re.findall(
        r"\b_Entry\b|(?<!sd_core)\._cache\b|\._entries\b|\._deadline\b|_Balancer__|_latest", source
    )
    assert private == []
