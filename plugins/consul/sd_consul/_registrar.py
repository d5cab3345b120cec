"""Registration: an agent service with a TTL check that the core's keepalive passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Registration, RegistrationError
from sd_core._secrets import logger
from sd_core.plugin import BaseRegistrar

from ._ids import service_id_for

if TYPE_CHECKING:
    from ._client import ConsulClient

__all__ = ["STATUSES", "CheckOptions", "ConsulRegistrar"]

STATUSES = ("passing", "warning", "critical")

log = logger("sd_consul")


@dataclass(frozen=True)
class CheckOptions:
    """The checks registered beside the TTL check, and when Consul drops a dead service."""

    deregister_critical_after: str | None = "1m"
    http_check: str | None = None
    tcp_check: str | None = None
    check_interval: str = "10s"


class ConsulRegistrar(BaseRegistrar):
    """Registers a service with the local Consul agent and keeps its TTL check passing.

    The Consul service id (:attr:`service_id`) is ``Registration.id``, or
    ``<service>:<host>:<port>`` when the registration gave none (Consul ids are unique per
    agent, not per service). The TTL check (``service:<service_id>:ttl``) is passed every
    ``ttl / 3`` seconds with the current status; when the agent no longer knows it
    (restarted with its state wiped), the service is registered again. :meth:`set_status`
    sets the TTL check to passing, warning or critical.

    The agent's record of the id is read before registering, restoring and deregistering:
    an id held by another service is never replaced nor removed.
    """

    backend_name = "consul"

    def __init__(
        self,
        registration: Registration,
        client: ConsulClient,
        checks: CheckOptions,
        *,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        service_id = service_id_for(registration)
        super().__init__(registration)
        if registration.weight < 1:
            raise ConfigError(
                f"consul: Registration.weight must be at least 1 (Consul weights are >= 1), "
                f"got {registration.weight}"
            )
        self.client = client
        self._release = on_close if on_close is not None else client.close
        self.checks = checks
        self.service_id = service_id
        """The id of the service at the agent."""
        self.check_id = f"service:{service_id}:ttl"
        self._check_status = ("passing", "")

    @property
    def backend_id(self) -> str:
        """The Consul service id (same as :attr:`service_id`)."""
        return self.service_id

    def definition(self) -> dict[str, Any]:
        """The service definition sent to ``/v1/agent/service/register``."""
        reg = self.registration
        status, note = self._check_status
        dead_after = (
            {"DeregisterCriticalServiceAfter": self.checks.deregister_critical_after}
            if self.checks.deregister_critical_after
            else {}
        )
        checks: list[dict[str, Any]] = [
            {
                "CheckID": self.check_id,
                "Name": f"{reg.service} TTL",
                "TTL": f"{max(1, round(reg.ttl * 1000))}ms",
                "Status": status,
                "Notes": "kept alive by sd-core",
                **({"Output": note} if note else {}),
                **dead_after,
            }
        ]
        if self.checks.http_check:
            checks.append(
                {
                    "CheckID": f"service:{self.service_id}:http",
                    "Name": f"{reg.service} HTTP",
                    "HTTP": self.checks.http_check,
                    "Interval": self.checks.check_interval,
                    **dead_after,
                }
            )
        if self.checks.tcp_check:
            checks.append(
                {
                    "CheckID": f"service:{self.service_id}:tcp",
                    "Name": f"{reg.service} TCP",
                    "TCP": self.checks.tcp_check,
                    "Interval": self.checks.check_interval,
                    **dead_after,
                }
            )
        return {
            "ID": self.service_id,
            "Name": reg.service,
            "Address": reg.host,
            "Port": reg.port,
            "Tags": sorted(reg.tags),
            "Meta": dict(reg.meta),
            "Weights": {"Passing": reg.weight, "Warning": 1},
            "Checks": checks,
        }

    def _backend_register(self) -> None:
        # Also what restores a lost registration: never over another service's.
        owner = self.client.service_owner(self.service_id)
        if owner.exists and owner.name != self.registration.service:
            service = self.registration.service
            raise RegistrationError(
                f"consul at {self.client.connection.url}: service id {self.service_id!r} is "
                f"taken on the agent by {owner.describe()}; registering {service!r} under it "
                f"would replace that service: give this registration its own id "
                f"(Registration.id)"
            )
        self.client.register_service(self.definition())

    def _backend_deregister(self) -> None:
        owner = self.client.service_owner(self.service_id)
        if not owner.exists:
            return  # already gone
        if owner.name != self.registration.service:
            log.warning(
                "consul: not deregistering service id %r: the agent now holds it for %s, "
                "not for %r",
                self.service_id,
                owner.describe(),
                self.registration.service,
            )
            return
        self.client.deregister_service(self.service_id)

    def _backend_keepalive(self) -> bool:
        return self.client.update_ttl(self.check_id, *self._check_status)

    def _backend_set_status(self, status: str, note: str) -> None:
        if status not in STATUSES:
            raise ConfigError(
                f"consul: status must be one of {', '.join(STATUSES)}; got {status!r}"
            )
        self._check_status = (status, note)
        if self.registered and not self.client.update_ttl(self.check_id, status, note):
            self.mark_lost("the agent does not know its TTL check")

    def _backend_close(self) -> None:
        self._release()
