"""Instance, Registration and Event: validation and value semantics."""

from __future__ import annotations

import pytest

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
