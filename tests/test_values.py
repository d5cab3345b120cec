"""Instance, Registration and Event: validation and value semantics."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sd_core import Event, Instance, Registration


def test_instance_defaults_and_address() -> None:
    inst = Instance("10.0.0.1", 8080, service="web", tags=["a", "b"], meta={"v": "1"})
    assert inst.id == "10.0.0.1:8080"
    assert inst.address == "10.0.0.1:8080"
    assert inst.tags == frozenset({"a", "b"})
    assert dict(inst.meta) == {"v": "1"}
    assert Instance("::1", 80).address == "[::1]:80"


def test_instance_is_immutable_value() -> None:
    meta = {"k": "v"}
    inst = Instance("h", 1, meta=meta)
    meta["k"] = "changed"
    assert inst.meta["k"] == "v"
    with pytest.raises(TypeError):
        inst.meta["k"] = "x"  # type: ignore[index]
    with pytest.raises(AttributeError):
        inst.port = 2  # type: ignore[misc]
    assert Instance("h", 1, meta={"k": "v"}) == inst
    assert hash(Instance("h", 1, meta={"k": "v"})) == hash(inst)
    assert Instance("h", 1, meta={"k": "w"}) != inst
    assert len({inst, Instance("h", 1, meta={"k": "v"})}) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"host": "h", "port": 0}, "port"),
        ({"host": "h", "port": 65536}, "port"),
        ({"host": "h", "port": True}, "port"),
        ({"host": "", "port": 1}, "host"),
        ({"host": "h", "port": 1, "weight": -1}, "weight"),
        ({"host": "h", "port": 1, "tags": "abc"}, "tags"),
        ({"host": "h", "port": 1, "meta": {"a": 1}}, "meta"),
    ],
)
def test_instance_rejects_bad_values_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError, match=rf"Instance\.{field}"):
        Instance(**kwargs)  # type: ignore[arg-type]


def test_registration_validation_and_instance() -> None:
    reg = Registration("web", "127.0.0.1", 80, tags={"x"}, meta={"a": "b"}, ttl=3, weight=2)
    assert reg.id == "127.0.0.1:80"
    assert reg.ttl == 3.0
    inst = reg.instance()
    assert (inst.service, inst.address, inst.tags, dict(inst.meta), inst.weight) == (
        "web",
        "127.0.0.1:80",
        frozenset({"x"}),
        {"a": "b"},
        2,
    )
    with pytest.raises(ValueError, match=r"Registration\.service"):
        Registration("", "h", 1)
    with pytest.raises(ValueError, match=r"Registration\.ttl"):
        Registration("s", "h", 1, ttl=0)
    with pytest.raises(ValueError, match=r"Registration\.port"):
        Registration("s", "h", 70000)


def test_event_orders_instances_and_compares_as_sets() -> None:
    a, b = Instance("a", 1), Instance("b", 2)
    assert Event([b, a]).instances == (a, b)
    assert Event([b, a]).same_as(Event([a, b]))
    assert not Event([a]).same_as(Event([a, b]))
    err = Event(error=RuntimeError("down"))
    assert not err.ok
    assert err.same_as(Event(error=RuntimeError("down")))
    assert not err.same_as(Event([a]))
    with pytest.raises(ValueError, match="either"):
        Event([a], error=RuntimeError())


def test_event_order_is_total_for_instances_differing_only_in_tags_or_meta() -> None:
    # Same id, host, port and service: the order must still not depend on the input order
    # (frozensets are only partially ordered: {"a"} and {"b"} are neither < nor > each other).
    variants = [
        Instance("10.0.0.1", 80, id="x", service="web", tags={"a"}),
        Instance("10.0.0.1", 80, id="x", service="web", tags={"b"}),
        Instance("10.0.0.1", 80, id="x", service="web", tags={"a", "c"}),
        Instance("10.0.0.1", 80, id="x", service="web", meta={"k": "1"}),
        Instance("10.0.0.1", 80, id="x", service="web", meta={"j": "2"}),
        Instance("10.0.0.1", 80, id="x", service="web", tags={"b"}, weight=2),
    ]
    expected = Event(variants)
    for perm in itertools.permutations(variants):
        event = Event(perm)
        assert event.instances == expected.instances
        assert event.same_as(expected)


_tags = st.frozensets(st.sampled_from(["a", "b", "c", "prod", "canary"]), max_size=3)
_meta = st.dictionaries(st.sampled_from(["k", "v", "z"]), st.sampled_from(["1", "2"]), max_size=2)
_instances = st.builds(
    Instance,
    host=st.just("10.0.0.1"),
    port=st.sampled_from([80, 81]),
    id=st.sampled_from(["x", "y"]),
    service=st.just("web"),
    tags=_tags,
    meta=_meta,
    weight=st.integers(0, 2),
    zone=st.sampled_from(["", "eu"]),
)


@given(st.lists(_instances, max_size=8), st.randoms(use_true_random=False))
def test_event_of_any_permutation_is_identical(instances: list[Instance], rng: object) -> None:
    shuffled = list(instances)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert Event(shuffled).instances == Event(instances).instances
    assert Event(shuffled).same_as(Event(instances))
    ordered = Event(instances).instances
    assert all(not b < a for a, b in itertools.pairwise(ordered))
