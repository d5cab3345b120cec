"""Discovery: blocking queries on ``/v1/health/service/<service>``, mapped to instances."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sd_core import ConfigError, Instance
from sd_core._secrets import logger
from sd_core.plugin import Backoff, WatchContext, WatchInstancer

if TYPE_CHECKING:
    from ._client import ConsulClient, HealthEntries

__all__ = ["HealthQuery", "ServiceWatch", "consul_instancer", "to_instances"]

log = logger("sd_consul")


@dataclass(frozen=True)
class HealthQuery:
    """What to ask of the health endpoint: filters, consistency and the blocking wait."""

    passing: bool = True
    tags: tuple[str, ...] = ()
    """All must be on an instance: the first is filtered by Consul, the rest here."""
    dc: str | None = None
    consistency: str = "default"
    node_meta: Mapping[str, str] = field(default_factory=dict)
    wait: float = 30.0


def next_index(previous: int, returned: int) -> int:
    """The index for the next blocking query, as Consul's documentation prescribes.

    An index that went backwards (servers restored, agent with new state) starts over with a
    non-blocking read; an index below 1 becomes 1 so that the next query still blocks.
    """
    if returned < previous:
        return 0
    return max(returned, 1)


def to_instances(
    entries: HealthEntries, tags: Sequence[str] = (), dc: str | None = None
) -> tuple[list[Instance], dict[tuple[str, str], str]]:
    """Map health entries to instances; also return why each skipped entry was skipped,
    keyed by (node, service ID).

    ``id`` is ``node/service ID``: unique across nodes (each agent has its own namespace of
    service IDs) and stable, so an endpoint does not change when another node registers the
    same ID.
    """
    instances: list[Instance] = []
    skipped: dict[tuple[str, str], str] = {}
    for entry in entries:
        node = entry.get("Node") or {}
        svc = _service(entry)
        node_name, service_id = str(node.get("Node", "")), str(svc.get("ID", ""))
        if not all(tag in (svc.get("Tags") or ()) for tag in tags):
            continue
        try:
            instance = _instance(node, svc, entry.get("Checks") or (), dc)
        except (ValueError, TypeError, AttributeError) as exc:
            skipped[(node_name, service_id)] = str(exc)
            continue
        instances.append(instance)
    return instances, skipped


def _service(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    svc = entry.get("Service")
    return svc if isinstance(svc, Mapping) else {}


def _instance(
    node: Mapping[str, Any],
    svc: Mapping[str, Any],
    checks: Sequence[Mapping[str, Any]],
    dc: str | None,
) -> Instance:
    host = svc.get("Address") or node.get("Address") or ""
    if not host:
        raise ValueError("neither the service nor its node has an address")
    weights = svc.get("Weights") or {}
    statuses = {check.get("Status") for check in checks}
    warning = "warning" in statuses and "critical" not in statuses
    weight = weights.get("Warning" if warning else "Passing", 1)
    return Instance(
        host=host,
        port=svc.get("Port") or 0,
        id=f"{node.get('Node', '')}/{svc.get('ID') or ''}",
        service=str(svc.get("Service") or ""),
        tags=frozenset(svc.get("Tags") or ()),
        meta=dict(svc.get("Meta") or {}),
        weight=weight,
        zone=str(node.get("Datacenter") or dc or ""),
    )


class ServiceWatch:
    """The watch function a :class:`WatchInstancer` runs for one service.

    Each run starts with a non-blocking read and then blocks on the index Consul returned;
    errors propagate so that the core's backoff applies. Malformed entries are skipped with
    one warning each while they last.
    """

    def __init__(self, client: ConsulClient, service: str, query: HealthQuery) -> None:
        self.client = client
        self.service = service
        self.query = query
        self._warned: dict[tuple[str, str], str] = {}

    def __call__(self, ctx: WatchContext) -> None:
        # The client may be shared with other watches and registrars: stopping ends this
        # thread's query only.
        me = threading.get_ident()
        self.client.resume(me)
        ctx.on_stop(lambda: self.client.interrupt(me))
        query = self.query
        index = 0
        anonymous_checked = False
        while not ctx.stopping:
            returned, entries = self.client.health_service(
                self.service,
                index=index,
                wait=query.wait,
                passing=query.passing,
                tag=query.tags[0] if query.tags else None,
                dc=query.dc,
                node_meta=query.node_meta,
                consistency=query.consistency,
            )
            if ctx.stopping:
                return
            index = next_index(index, returned)
            instances, skipped = to_instances(entries, query.tags[1:], query.dc)
            self._warn(skipped)
            if not instances and not anonymous_checked:
                anonymous_checked = True
                if self.client.acl_blocks_anonymous():
                    raise ConfigError(
                        f"consul: ACLs are enabled and no token was given: Consul hides the "
                        f"instances of {self.service!r} unless the anonymous token has "
                        f"'service:read' on it (and 'node:read'); set the token option "
                        f"or CONSUL_HTTP_TOKEN"
                    )
            ctx.publish(instances)

    def _warn(self, skipped: dict[tuple[str, str], str]) -> None:
        for key, reason in skipped.items():
            if self._warned.get(key) != reason:
                log.warning(
                    "consul: skipping instance %r of service %r on node %r: %s",
                    key[1],
                    self.service,
                    key[0],
                    reason,
                )
        self._warned = skipped


def consul_instancer(
    client: ConsulClient,
    service: str,
    query: HealthQuery,
    *,
    retry_max: float = 10.0,
    on_close: Callable[[], object] | None = None,
) -> WatchInstancer:
    """A :class:`WatchInstancer` of ``service`` fed by blocking health queries through
    ``client`` (which it may share: stopping ends its own query only); ``on_close`` runs once
    the watch has stopped (the release of a shared client)."""
    watch = ServiceWatch(client, service, query)
    return WatchInstancer(
        watch,
        name=f"consul:{service}",
        backoff=Backoff(initial=min(0.2, retry_max), maximum=retry_max),
        on_close=on_close,
    )
