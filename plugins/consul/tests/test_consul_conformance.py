"""The Consul backend joins the conformance suite (pytest_sd.conformance)."""

from __future__ import annotations

import uuid

import pytest
from pytest_sd.conformance import *  # noqa: F403
from pytest_sd.conformance import Conformance, Faults
from pytest_sd.consul import ConsulServer


@pytest.fixture
def sd_conformance(consul_server: ConsulServer) -> Conformance:
    return Conformance(
        backend="consul",
        options={
            "address": consul_server.address,
            "wait": 2.0,
            "timeout": 2.0,
            "retry_max": 1.0,
        },
        # Consul 1.8 has nowhere to keep a zone.
        capabilities={
            "discovery",
            "registration",
            "tags",
            "meta",
            "weight",
            "process_death",
            "set_status",
            "restart",
            "restore",
            "pause",
            "secret",
        },
        faults=Faults.of(consul_server),
        # An ACL token: the agent runs without ACLs and ignores it, the client must hide it.
        secret_options={"token": str(uuid.uuid4())},
        ttl=2.0,
        propagation=3.0,
        death_margin=3.0,
        recovery=3.0,
        registered_id=lambda instance: instance.id.split("/", 1)[1],  # ids are node/ID
        up_status="passing",
        down_status="critical",
    )
