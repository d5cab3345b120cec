"""Discovery: read a service's key prefix, then watch it from the revision read + 1."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sd_core import BackendUnavailableError, Instance
from sd_core.plugin import AsyncWatchContext, AsyncWatchInstancer, Backoff, clock, logger

from ._layout import decode

if TYPE_CHECKING:
    from ._client import Change, EtcdClient

__all__ = ["ServiceSet", "ServiceWatch", "etcd_instancer"]

log = logger("sd_etcd")

MIN_STREAM_LIFE = 1.0
QUICK_LOSSES = 5
"""A lost watch stream is made again after a new read (a member that went away, the channel
moving to another endpoint): at once, or after a short backoff when it lived less than
``MIN_STREAM_LIFE`` seconds; after ``QUICK_LOSSES`` such losses in a row the loss counts as
a failure (an error event, and the watch starts again after the instancer's backoff), so
that a watch etcd keeps refusing neither spins nor hides."""


class ServiceSet:
    """The instances of one service: the keys under its prefix as last read, with the watch
    events applied since. Events at or below the revision already applied are ignored, so a
    change is applied once even when a watch delivers it again.

    A value that is neither our JSON nor ``host:port`` is skipped, with one warning for as
    long as the key holds that value."""

    def __init__(self, service: str, prefix: str) -> None:
        self.service = service
        self.prefix = prefix.encode()
        self.revision = 0
        self._instances: dict[bytes, Instance] = {}
        self._warned: dict[bytes, bytes] = {}

    def reset(self, revision: int, entries: Iterable[tuple[bytes, bytes]]) -> None:
        """The set read at ``revision``: the keys under the prefix and their values."""
        self.revision = revision
        self._instances = {}
        warned, self._warned = self._warned, {}
        for key, value in entries:
            self._put(key, value, warned)

    def apply(self, changes: Iterable[Change]) -> bool:
        """Apply a watch answer's changes; True when the set changed.

        Only the changes' own revisions move :attr:`revision` (an answer's header may name a
        later revision whose events come in the next answers); etcd keeps the events of one
        revision (one transaction) in one answer."""
        before = dict(self._instances)
        applied = self.revision
        for change in changes:
            if change.revision <= applied:
                continue  # already in what was read, or applied from an earlier answer
            if change.value is None:
                self._instances.pop(change.key, None)
                self._warned.pop(change.key, None)
            else:
                self._put(change.key, change.value, self._warned)
            self.revision = max(self.revision, change.revision)
        return self._instances != before

    def instances(self) -> list[Instance]:
        """The current instances."""
        return list(self._instances.values())

    def _put(self, key: bytes, value: bytes, warned: dict[bytes, bytes]) -> None:
        self._instances.pop(key, None)
        instance_id = key[len(self.prefix) :].decode(errors="replace")
        try:
            self._instances[key] = decode(self.service, instance_id, value)
        except ValueError as exc:
            first = warned.get(key) != value
            self._warned[key] = value
            if first:
                log.warning(
                    "etcd: skipping key %r of service %r: %s",
                    key.decode(errors="replace"),
                    self.service,
                    exc,
                )
        else:
            self._warned.pop(key, None)


class ServiceWatch:
    """The async watch function of one service: read the prefix, publish, watch from the
    revision read + 1 and publish each change; on compaction (the start revision is gone)
    or a lost stream, read again and watch from the new revision."""

    def __init__(self, client: EtcdClient, service: str, prefix: str) -> None:
        self.client = client
        self.service = service
        self.prefix = prefix
        self.set = ServiceSet(service, prefix)

    async def __call__(self, ctx: AsyncWatchContext) -> None:
        from ._client import Compacted, StreamLost  # noqa: PLC0415 - loaded with the client

        quick_losses = Backoff(initial=0.05, maximum=1.0)
        while True:
            revision, entries = await self.client.read(self.prefix)
            self.set.reset(revision, entries)
            ctx.publish(self.set.instances())
            opened = clock().monotonic()
            try:
                async with self.client.watch(self.prefix, revision + 1) as stream:
                    while True:
                        changes = await stream.next()
                        if self.set.apply(changes):
                            ctx.publish(self.set.instances())
            except Compacted as exc:
                log.info(
                    "etcd: watch of %r: revision %d is compacted (%s); reading again",
                    self.prefix,
                    revision + 1,
                    exc,
                )
            except StreamLost as exc:
                log.info("etcd: watch of %r lost (%s); reading again", self.prefix, exc)
                if clock().monotonic() - opened >= MIN_STREAM_LIFE:
                    quick_losses.reset()
                elif quick_losses.attempts + 1 >= QUICK_LOSSES:
                    raise BackendUnavailableError(
                        f"{self.client.where}: watch {self.prefix!r}: {exc}"
                    ) from exc
                else:
                    await ctx.sleep(quick_losses.next())


def etcd_instancer(
    client: EtcdClient,
    service: str,
    prefix: str,
    *,
    retry_max: float = 10.0,
    on_close: Callable[[], object] | None = None,
) -> AsyncWatchInstancer:
    """An :class:`AsyncWatchInstancer` of ``service`` (its keys under ``prefix``), on the
    core's event loop, through ``client`` (shared: stopping ends this watch's stream only);
    ``on_close`` runs once the watch has stopped (the release of the shared client)."""
    return AsyncWatchInstancer(
        ServiceWatch(client, service, prefix),
        name=f"etcd:{service}",
        backoff=Backoff(initial=min(0.2, retry_max), maximum=retry_max),
        on_close=on_close,
    )
