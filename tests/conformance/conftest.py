"""The backends the conformance suite runs against.

A backend joins by adding one entry to ``BACKENDS``: its options (starting its server
through a fixture if it needs one) and what it can do. For example::

    BACKENDS["consul"] = BackendSpec(
        options=lambda request: {"address": request.getfixturevalue("consul_server").address},
        capabilities=ALL_CAPABILITIES,
        ttl=3.0,
    )

A test that needs a capability says ``@pytest.mark.requires("tags")``; it is skipped, by
declaration, for a backend that lacks it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._support import ALL_CAPABILITIES, BackendSpec, BackendUnderTest

BACKENDS: dict[str, BackendSpec] = {
    "local": BackendSpec(
        options=lambda request: {"path": str(request.getfixturevalue("tmp_path") / "sd")},
        capabilities=ALL_CAPABILITIES,
        ttl=2.0,
        propagation=2.0,
        death_margin=2.0,
    ),
    "consul": BackendSpec(
        options=lambda request: {
            "address": request.getfixturevalue("consul_server").address,
            "wait": 2.0,
            "timeout": 2.0,
            "retry_max": 1.0,
        },
        capabilities=ALL_CAPABILITIES - {"zone"},  # Consul 1.8 has nowhere to keep a zone
        ttl=2.0,
        propagation=3.0,
        death_margin=3.0,
        registered_id=lambda instance: instance.id.split("/", 1)[1],  # ids are node/ID
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*capabilities): skip for a backend that lacks a capability"
    )


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    """The backend under test, with a fresh service name; cleans up after the test."""
    name: str = request.param
    spec = BACKENDS[name]
    for marker in request.node.iter_markers("requires"):
        for capability in marker.args:
            if capability not in ALL_CAPABILITIES:
                raise ValueError(f"unknown capability {capability!r}")
            if capability not in spec.capabilities:
                pytest.skip(f"the {name} backend declares no {capability!r} capability")
    under_test = BackendUnderTest(name, spec, spec.options(request))
    try:
        yield under_test
    finally:
        under_test.close()
