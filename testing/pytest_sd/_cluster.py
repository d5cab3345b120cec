"""Cluster: members started together and brought back together, for any server kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Generic, TypeVar

from ._process import ManagedProcess

__all__ = ["Cluster"]

M = TypeVar("M", bound=ManagedProcess)


class Cluster(Generic[M]):
    """Members that each have the fault handles; the cluster starts, stops and restores
    them together. Subclasses build ``members`` and may add a ``leader()``."""

    start_timeout: ClassVar[float] = 60.0
    members: list[M]

    @property
    def addresses(self) -> list[str]:
        """The members' client ``host:port``."""
        return [m.address for m in self.members]

    def start(self) -> None:
        """Start every member that is not running, then wait until each is ready."""
        for member in self.members:
            if not member.running:
                member.start(wait=False)
        for member in self.members:
            member.wait_ready(self.start_timeout)

    def stop(self) -> None:
        """Stop every member."""
        for member in self.members:
            member.stop()

    def ensure_running(self) -> None:
        """Bring every member back to a running, ready state."""
        for member in self.members:
            if member.paused:
                member.resume()
        self.start()

    def running_members(self) -> Sequence[M]:
        """Members that are running and not paused."""
        return [m for m in self.members if m.running and not m.paused]
