"""Discovery: one registry poller per connection in the process, serving all its instancers.

The poller fetches the whole registry (``GET /apps``), then every ``refresh`` the recent
changes (``GET /apps/delta``), applies them, and checks that what it holds adds up to the
server's ``apps__hashcode``; when it does not, it fetches everything again. It runs as one
task of the core's event loop (its client is an ``httpx.AsyncClient`` shared with the
registrars of the connection), and fans each new registry out through the kit's
:class:`~sd_core.plugin.Fanout`: one per way of listing instances (:class:`View`), each
serving the instancers of every application.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sd_core import BackendUnavailableError, Instance, SDError
from sd_core.plugin import Backoff, Fanout, Lease, PushInstancer, clock, core_loop, logger

from ._backend import Connection, shared_client
from ._mapping import View, app_name, service_key, to_instance
from ._registry import Record, Registry

if TYPE_CHECKING:
    from ._client import EurekaClient

__all__ = ["TASK_NAME", "Query", "RegistryPoller", "poller_for"]

log = logger("sd_eureka")

TASK_NAME = "sd-eureka-poller"
"""The poll tasks' names start with it."""
STOP_TIMEOUT = 10.0
"""How long stopping waits for the poll task to end."""

_pollers: weakref.WeakValueDictionary[Connection, RegistryPoller] = weakref.WeakValueDictionary()
_pollers_lock = threading.Lock()


def poller_for(connection: Connection) -> RegistryPoller:
    """The process's poller of ``connection`` (made when there is none)."""
    with _pollers_lock:
        poller = _pollers.get(connection)
        if poller is None:
            poller = _pollers[connection] = RegistryPoller(connection)
        return poller


@dataclass(frozen=True)
class Query:
    """What instancers ask of the poller: a :class:`View`, and how often to poll and to
    retry (the smallest of the active queries applies)."""

    view: View
    refresh: float
    retry_max: float


@dataclass
class _Mapped:
    """One application as one view lists it, for the version of the application mapped."""

    version: int
    instances: tuple[Instance, ...]
    problems: dict[str, str]


@dataclass
class _Mapper:
    """The instances of each application for one view, mapped again only when the
    application's version changes."""

    view: View
    apps: dict[str, _Mapped] = field(default_factory=dict)

    def registry(self, registry: Registry) -> dict[str, tuple[Instance, ...]]:
        """Every application of ``registry`` as this view lists it, by service name."""
        for app in set(self.apps) - registry.apps.keys():
            del self.apps[app]
        result: dict[str, tuple[Instance, ...]] = {}
        for app, records in registry.apps.items():
            version = registry.versions[app]
            mapped = self.apps.get(app)
            if mapped is None or mapped.version != version:
                mapped = self.apps[app] = self._map(app, records, version)
            result[service_key(app)] = mapped.instances
        return result

    def _map(self, app: str, records: dict[str, Record], version: int) -> _Mapped:
        instances: list[Instance] = []
        problems: dict[str, str] = {}
        service = service_key(app)
        for ident, record in records.items():
            try:
                instance = to_instance(record, service, self.view)
            except Exception as exc:  # whatever a bad record raises: skip it, say why
                problems[ident] = str(exc) or type(exc).__name__
                continue
            if instance is not None:
                instances.append(instance)
        return _Mapped(version, tuple(instances), problems)

    def problems(self) -> dict[tuple[str, str], str]:
        """Why records of the applications held could not be instances, by (app, id)."""
        return {
            (app, ident): reason
            for app, mapped in self.apps.items()
            for ident, reason in mapped.problems.items()
        }


class RegistryPoller:
    """The one poller of a connection: started when the first instancer attaches, stopped
    when the last one stops, holding the connection's shared client while it runs."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._lock = threading.Lock()
        self._fanouts: dict[Query, Fanout] = {}
        self._active: dict[int, tuple[Query, Fanout]] = {}
        self._tokens = itertools.count()
        self._run: _Run | None = None

    def instancer(
        self, service: str, view: View, *, refresh: float, retry_max: float
    ) -> PushInstancer:
        """An instancer of the application ``service`` (any case) listed as ``view`` shows
        it, fed by this poller."""
        query = Query(view, refresh, retry_max)
        with self._lock:
            fanout = self._fanouts.get(query)
            if fanout is None:
                fanout = self._fanouts[query] = Fanout(
                    lambda fanout: self._attach(query, fanout), name="eureka" + view.describe()
                )
        return fanout.instancer(service_key(app_name(service)))

    @property
    def running(self) -> bool:
        """True while the poll task runs."""
        return self._run is not None

    def active(self) -> list[tuple[Query, Fanout]]:
        """The queries (and their fan-outs) that have instancers now."""
        with self._lock:
            return list(self._active.values())

    def _attach(self, query: Query, fanout: Fanout) -> Callable[[], None]:
        """A fan-out got its first instancer: serve it (starting the task if needed)."""
        token = next(self._tokens)
        with self._lock:
            self._active[token] = (query, fanout)
            run = self._run
            if run is None:
                run = self._run = _Run(self)
                run.start()
            else:
                run.publish_soon(query, fanout)
        return lambda: self._detach(token)

    def _detach(self, token: int) -> None:
        with self._lock:
            self._active.pop(token, None)
            if self._active or self._run is None:
                return
            run, self._run = self._run, None
        run.stop()

    def __repr__(self) -> str:
        state = "polling" if self._run is not None else "idle"
        return f"<RegistryPoller {self.connection.describe()} {state}>"


class _Run:
    """One run of a poller's task, from the first instancer to the last: the client lease,
    the task, and the registry it keeps (touched on the core's loop only)."""

    def __init__(self, poller: RegistryPoller) -> None:
        self.poller = poller
        self.lease: Lease[EurekaClient] = shared_client(poller.connection)
        self.done = threading.Event()
        self.task: asyncio.Task[None] | None = None
        self.stopped = False
        self.registry: Registry | None = None
        self.failing = False
        self.mappers: dict[Query, _Mapper] = {}
        self.warned: dict[tuple[str, str], str] = {}

    @property
    def client(self) -> EurekaClient:
        return self.lease.client

    def start(self) -> None:
        """Spawn the task on the core's loop (without waiting: callers may hold locks the
        loop takes)."""
        loop = core_loop()
        if loop.in_loop():
            self._spawn()
        else:
            loop.loop().call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:  # on the loop, as _cancel: one of them comes first
        if self.stopped:
            return
        self.task = asyncio.get_running_loop().create_task(
            self.main(), name=f"{TASK_NAME} {self.poller.connection.describe()}"
        )
        self.task.add_done_callback(lambda _: self.done.set())

    def _cancel(self) -> None:
        self.stopped = True
        if self.task is None:
            self.done.set()
        else:
            self.task.cancel()

    def stop(self) -> None:
        """Cancel the task, wait for it to end (unless called on the loop) and release the
        client."""
        loop = core_loop()
        if loop.in_loop():
            self._cancel()
        else:
            loop.loop().call_soon_threadsafe(self._cancel)
            if not self.done.wait(STOP_TIMEOUT):
                log.error("eureka: the registry poller did not stop within %s s", STOP_TIMEOUT)
        self.lease.release()

    def publish_soon(self, query: Query, fanout: Fanout) -> None:
        """Give a newly attached fan-out the registry held (if any yet), from the loop."""
        core_loop().loop().call_soon_threadsafe(self._publish, [(query, fanout)])

    async def main(self) -> None:
        backoff = Backoff(initial=0.2, maximum=600.0)
        while True:
            try:
                changed = await self._fetch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.registry = None
                self.failing = True
                log.debug("eureka: polling %s failed: %s", self.poller.connection.describe(), exc)
                queries = self.poller.active()
                for _, fanout in queries:
                    fanout.fail(exc)
                retry_max = min((query.retry_max for query, _ in queries), default=10.0)
                delay = min(backoff.next(), retry_max)
            else:
                backoff.reset()
                # The queries active now: one that attached during the fetch is served too.
                queries = self.poller.active()
                try:
                    if changed or self.failing:
                        self._publish(queries)
                    self.failing = False
                    active = {query for query, _ in queries}
                    self.mappers = {q: m for q, m in self.mappers.items() if q in active}
                    self._warn()
                except Exception:  # a bug, not the server's data: the poller goes on
                    log.exception("eureka: publishing the registry failed; fetching it again")
                    self.registry, self.mappers, self.failing = None, {}, True
                delay = min((query.refresh for query, _ in queries), default=5.0)
            await clock().sleep(delay)

    async def _fetch(self) -> bool:
        """Bring the registry up to date; True when an application changed."""
        try:
            if self.registry is None:
                registry = Registry()
                registry.replace(await self.client.applications())
                self.registry = registry
                return True
            changed, consistent = self.registry.apply(await self.client.delta())
            if consistent:
                return changed
            log.debug(
                "eureka: the registry does not add up to the server's hashcode after the "
                "delta; fetching all of it"
            )
            return self.registry.replace(await self.client.applications()) or changed
        except SDError:
            raise
        except Exception as exc:  # the documents' shape: ValueError, or what bad data raises
            raise BackendUnavailableError(
                f"eureka at {self.client.server.url}: unexpected answer: "
                f"{exc or type(exc).__name__}"
            ) from exc

    def _publish(self, queries: list[tuple[Query, Fanout]]) -> None:
        registry = self.registry
        if registry is None:
            return
        for query, fanout in queries:
            mapper = self.mappers.get(query)
            if mapper is None:
                mapper = self.mappers[query] = _Mapper(query.view)
            fanout.publish(mapper.registry(registry))

    def _warn(self) -> None:
        """One warning per record that cannot be an instance, while it lasts."""
        if self.registry is None:
            return
        problems = dict(self.registry.rejected)
        for mapper in self.mappers.values():
            problems.update(mapper.problems())
        for (app, ident), reason in problems.items():
            if self.warned.get((app, ident)) != reason:
                log.warning(
                    "eureka: skipping instance %r of application %r: %s", ident, app, reason
                )
        self.warned = problems
