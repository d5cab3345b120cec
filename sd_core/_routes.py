"""Routes: the services a client integration calls (the httpx transports, the gRPC channels),
each an instancer, an Endpointer of per-instance clients and a balancer over them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeAlias, TypeVar

from ._balance import Balancer
from ._contracts import Instancer
from ._endpointer import Endpointer
from ._errors import NoEndpointsError
from ._instance import Instance
from ._selection import instancer as select_instancer

__all__ = ["BalancerFactory", "Route", "Routes", "Source"]

E = TypeVar("E")

Source: TypeAlias = Instancer | str
"""An instancer, or a backend URL (``"consul://127.0.0.1:8500/web"``) to make one from."""
BalancerFactory: TypeAlias = Callable[[Endpointer[Any]], Balancer[Any]]
"""Makes the balancer of a service from its endpointer: a balancer class, or a function."""


class Route(Generic[E]):
    """One service: its instancer (made from a URL, and then owned: stopped on :meth:`close`),
    an :class:`Endpointer` whose ``factory`` makes a client per instance, and a balancer."""

    __slots__ = ("balancer", "closed", "endpointer", "instancer", "name", "owned")

    def __init__(
        self,
        name: str,
        source: Source,
        factory: Callable[[Instance], Any],
        balancer: BalancerFactory,
        *,
        keyed: bool,
        drain_timeout: float,
    ) -> None:
        self.name = name
        self.closed = False
        self.owned = isinstance(source, str)
        if isinstance(source, str):
            self.instancer: Instancer = select_instancer(source)
        elif isinstance(source, Instancer):
            self.instancer = source
        else:
            raise TypeError(
                f"service {name!r}: expected an Instancer or a backend URL, got {source!r}"
            )
        try:
            self.endpointer: Endpointer[E] = Endpointer(
                self.instancer, factory, drain_timeout=drain_timeout
            )
            try:
                made = balancer(self.endpointer)
                if not isinstance(made, Balancer):
                    raise TypeError(
                        f"balancer must make a Balancer from an Endpointer, got {made!r}"
                    )
                if made.needs_key and not keyed:
                    raise ValueError(
                        f"{type(made).__name__} needs a key: pass key=, a function of the "
                        "request returning it"
                    )
                self.balancer: Balancer[E] = made
            except BaseException:
                self.endpointer.close()
                raise
        except BaseException:
            if self.owned:
                self.instancer.stop()
            raise

    def close(self) -> None:
        """Close the endpoints (draining their requests) and stop an owned instancer."""
        self.closed = True
        try:
            self.endpointer.close()
        finally:
            if self.owned:
                self.instancer.stop()

    def __repr__(self) -> str:
        return f"<Route {self.name!r} {self.balancer!r}>"


class Routes(Generic[E]):
    """The services of one client, by the host name a request names them with: one service
    (``Instancer`` or URL) serves every host, a mapping routes each host to its own."""

    __slots__ = ("_by_host", "_only")

    def __init__(
        self,
        services: Source | Mapping[str, Source],
        make: Callable[[str, Source], Route[E]],
    ) -> None:
        self._by_host: dict[str, Route[E]] = {}
        self._only: Route[E] | None = None
        if isinstance(services, Mapping):
            if not services:
                raise ValueError("services is empty: name at least one service")
            try:
                for host, source in services.items():
                    if not isinstance(host, str) or not host:
                        raise ValueError(f"a service is named by a host name, got {host!r}")
                    name = host.lower()  # as httpx gives it
                    if name in self._by_host:
                        raise ValueError(
                            f"two services are named {name!r} (host names ignore case)"
                        )
                    self._by_host[name] = make(name, source)
            except BaseException:
                self.close()
                raise
        else:
            self._only = make("", services)

    def route(self, host: str) -> Route[E]:
        """The service of requests to ``host``; NoEndpointsError for a host no service has."""
        if self._only is not None:
            return self._only
        found = self._by_host.get(host)
        if found is None:
            raise NoEndpointsError(
                f"no service named {host!r} here (this transport routes "
                f"{', '.join(map(repr, sorted(self._by_host)))}); mount another transport "
                "for other hosts"
            )
        return found

    def all(self) -> list[Route[E]]:
        """Every route."""
        return [self._only] if self._only is not None else list(self._by_host.values())

    def close(self) -> None:
        """Close every route (each drains its requests); the first error is raised after all."""
        errors: list[BaseException] = []
        for route in self.all():
            try:
                route.close()
            except BaseException as exc:  # close the others first
                errors.append(exc)
        if errors:
            raise errors[0]
