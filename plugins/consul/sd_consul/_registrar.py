"""Registration: an agent service with a TTL check that the core's keepalive passes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sd_core import BaseRegistrar, ConfigError, Registration

if TYPE_CHECKING:
    from ._client import ConsulClient

__all__ = ["STATUSES", "CheckOptions", "ConsulRegistrar"]

STATUSES = ("passing", "warning", "critical")


@dataclass(frozen=True)
class CheckOptions:
    """The checks registered beside the TTL check, and when Consul drops a dead service."""

    deregister_critical_after: str | None = "1m"
    http_check: str | None = None
    tcp_check: str | None = None
    check_interval: str = "10s"


class ConsulRegistrar(BaseRegistrar):
    """Registers a service with the local Consul agent and keeps its TTL check passing.

    The TTL check (``service:<id>:ttl``) is passed every ``ttl / 3`` seconds with the
    current status; when the agent no longer knows it (restarted with its state wiped),
    the service is registered again. :meth:`set_status` sets the TTL check to passing,
    warning or critical.
    """

    backend_name = "consul"

    def __init__(
        self, registration: Registration, client: ConsulClient, checks: CheckOptions
    ) -> None:
        super().__init__(registration)
        if registration.weight < 1:
            raise ConfigError(
                f"consul: Registration.weight must be at least 1 (Consul weights are >= 1), "
                f"got {registration.weight}"
            )
        self.client = client
        self.checks = checks
        self.check_id = f"service:{registration.id}:ttl"
        self._health = ("passing", "")

    def definition(self) -> dict[str, Any]:
        """The service definition sent to ``/v1/agent/service/register``."""
        reg = self.registration
        status, note = self._health
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
                    "CheckID": f"service:{reg.id}:http",
                    "Name": f"{reg.service} HTTP",
                    "HTTP": self.checks.http_check,
                    "Interval": self.checks.check_interval,
                    **dead_after,
                }
            )
        if self.checks.tcp_check:
            checks.append(
                {
                    "CheckID": f"service:{reg.id}:tcp",
                    "Name": f"{reg.service} TCP",
                    "TCP": self.checks.tcp_check,
                    "Interval": self.checks.check_interval,
                    **dead_after,
                }
            )
        return {
            "ID": reg.id,
            "Name": reg.service,
            "Address": reg.host,
            "Port": reg.port,
            "Tags": sorted(reg.tags),
            "Meta": dict(reg.meta),
            "Weights": {"Passing": reg.weight, "Warning": 1},
            "Checks": checks,
        }

    def _backend_register(self) -> None:
        self.client.register_service(self.definition())

    def _backend_deregister(self) -> None:
        self.client.deregister_service(self.registration.id)

    def _backend_keepalive(self) -> bool:
        return self.client.update_ttl(self.check_id, *self._health)

    def _backend_set_status(self, status: str, note: str) -> None:
        if status not in STATUSES:
            raise ConfigError(
                f"consul: status must be one of {', '.join(STATUSES)}; got {status!r}"
            )
        self._health = (status, note)
        if self.registered and not self.client.update_ttl(self.check_id, status, note):
            self.mark_lost("the agent does not know its TTL check")

    def _backend_close(self) -> None:
        self.client.close()
