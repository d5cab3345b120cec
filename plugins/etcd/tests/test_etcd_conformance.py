"""The etcd backend joins the conformance suite (pytest_sd.conformance), on etcd 3.4 and 3.5
(the ``etcd_server`` fixture runs each check once per version)."""

from __future__ import annotations

import secrets

import pytest
from pytest_sd.conformance import *  # noqa: F403
from pytest_sd.conformance import Conformance, Faults
from pytest_sd.etcd import EtcdServer


@pytest.fixture
def sd_conformance(etcd_server: EtcdServer) -> Conformance:
    return Conformance(
        backend="etcd",
        # A user, and a password for the secret check: this server has authentication off,
        # which etcd says when the client authenticates (the client then goes on without a
        # token, as etcd's Go client does); the password travels all the same and must never
        # show.
        options={
            "address": etcd_server.address,
            "timeout": 2.0,
            "retry_max": 1.0,
            "username": "conformance",
        },
        # No set_status: an etcd key has no health, an instance is there or not.
        capabilities={
            "discovery",
            "registration",
            "tags",
            "meta",
            "weight",
            "zone",
            "process_death",
            "restart",
            "restore",
            "pause",
            "secret",
        },
        faults=Faults.of(etcd_server),
        secret_options={"password": secrets.token_hex(12)},
        ttl=2.0,
        propagation=3.0,
        death_margin=3.0,
        recovery=3.0,
    )
