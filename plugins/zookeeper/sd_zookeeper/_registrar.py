"""Registration: an ephemeral node ``<base>/<service>/<id>``, kept alive by the session.

Nothing renews (``renews = False``): the shared client's session keeps the node. When the
session is lost (ZooKeeper expired it, or the client was cut off for longer than the session
timeout) the registrar is marked lost and the kit registers again, which waits for the
connection and creates the node in the new session.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ClassVar

from sd_core import ConfigError, Registration, RegistrationError, SDError
from sd_core.plugin import BaseRegistrar, logger

from ._acl import AclEntry
from ._client import SessionEvent, ZooKeeperClient
from ._nodes import STATUS_KEY, STATUS_UP, decode, encode

__all__ = ["ZooKeeperRegistrar"]

log = logger("sd_zookeeper")


class ZooKeeperRegistrar(BaseRegistrar):
    """Announces a registration as an ephemeral node of the shared client's session.

    ``register()`` creates the node (and its missing parents, with ``parent_acl``) holding the
    data of ``form`` (see :func:`~sd_zookeeper._nodes.encode`), with ``acl``. A node already
    at the path is taken over when it is ours (this session's) or announces the same address
    (the ghost of an earlier run whose session has not expired yet, replaced as Curator does);
    a live node announcing another address is left alone and ``RegistrationError`` raised.
    ``deregister()`` deletes exactly the node this registrar created, never its parent.
    ``set_status(status)`` writes Spring Cloud Zookeeper's ``instance_status`` metadata
    (``UP``, ``OUT_OF_SERVICE``…): an instance whose status is not UP is left out by Spring's
    load balancer and by our instancers.
    """

    backend_name = "zookeeper"
    renews: ClassVar[bool] = False

    def __init__(
        self,
        registration: Registration,
        client: ZooKeeperClient,
        *,
        path: str,
        form: str,
        acl: tuple[AclEntry, ...],
        parent_acl: tuple[AclEntry, ...],
        on_close: Callable[[], object] | None = None,
    ) -> None:
        encode(registration, form)  # a registration the format cannot carry fails here
        super().__init__(registration)
        self.client = client
        self.path = path
        """The path of the instance node (under the client's chroot)."""
        self.form = form
        self._acl = acl
        self._parent_acl = parent_acl
        self._release = on_close if on_close is not None else client.close
        self._node_status = STATUS_UP
        self._created: int | None = None
        """The czxid of the node this registrar created last (what deregister deletes)."""
        client.add_listener(self._on_session)

    @property
    def backend_id(self) -> str:
        """The node's path."""
        return self.path

    def _on_session(self, event: SessionEvent, error: SDError | None) -> None:
        if event == "lost":
            self.mark_lost(str(error) if error else "the session was lost")

    def _backend_register(self) -> None:
        from kazoo.exceptions import (  # type: ignore[import-untyped]  # noqa: PLC0415
            NodeExistsError,
            NoNodeError,
        )

        client, path = self.client, self.path
        data = encode(self.registration, self.form, status=self._node_status)
        acl = [entry.to_kazoo() for entry in self._acl]
        parent = path.rsplit("/", 1)[0]
        parent_acl = [entry.to_kazoo() for entry in self._parent_acl]
        client.wait_connected(f"register {path}")
        for _ in range(3):
            try:
                _, stat = client.call(
                    f"create {path}",
                    lambda k: k.create_async(
                        path, data, acl=acl, ephemeral=True, include_data=True
                    ),
                )
            except NoNodeError:
                client.call(
                    f"create {parent}", lambda k: k.ensure_path_async(parent, acl=parent_acl)
                )
                continue
            except NodeExistsError:
                if self._take_over(data):
                    return
                continue
            self._created = stat.czxid
            return
        raise RegistrationError(
            f"{client.where}: could not create {path}: it kept changing under us"
        )

    def _take_over(self, data: bytes) -> bool:
        """The node at our path exists: keep it if it is ours (True), delete the ghost of an
        earlier run (False: create again), refuse another instance's."""
        from kazoo.exceptions import (  # noqa: PLC0415
            BadVersionError,
            NoNodeError,
        )

        client, path = self.client, self.path
        try:
            value, stat = client.call(f"read {path}", lambda k: k.get_async(path))
        except NoNodeError:
            return False
        if stat.ephemeralOwner == client.session_id:
            self._created = stat.czxid
            if value != data:
                client.call(f"update {path}", lambda k: k.set_async(path, data, stat.version))
            return True
        held = decode(self.registration.service, path.rsplit("/", 1)[-1], value or b"")
        if held.instance is None or held.instance.address != self.registration.address:
            owner = f"session 0x{stat.ephemeralOwner:x}" if stat.ephemeralOwner else "nobody"
            what = held.instance.address if held.instance else "data we cannot read"
            raise RegistrationError(
                f"{client.where}: {path} is held by another instance ({what}, {owner}); give "
                f"this registration its own id (Registration.id)"
            )
        log.info("zookeeper: replacing %s, left by an earlier session of this instance", path)
        with contextlib.suppress(NoNodeError, BadVersionError):
            client.call(f"replace {path}", lambda k: k.delete_async(path, stat.version))
        return False

    def _backend_set_status(self, status: str, note: str) -> None:
        from kazoo.exceptions import NoNodeError  # noqa: PLC0415

        if self.form == "hostport":
            raise ConfigError("zookeeper: format hostport (host:port) has no place for a status")
        if not isinstance(status, str) or not status.strip() or not status.isprintable():
            raise ConfigError(
                f"zookeeper: a status is a word such as UP or OUT_OF_SERVICE (Spring Cloud "
                f"Zookeeper's {STATUS_KEY}), got {status!r}"
            )
        self._node_status = status.strip()
        if not self.registered or self._created is None:
            return  # written when registered
        client, path = self.client, self.path
        data = encode(self.registration, self.form, status=self._node_status)
        try:
            client.call(f"update {path}", lambda k: k.set_async(path, data), wait=True)
        except NoNodeError:
            self.mark_lost(f"{path} is gone")

    def _backend_deregister(self) -> None:
        from kazoo.exceptions import (  # noqa: PLC0415
            BadVersionError,
            NoNodeError,
        )

        client, path = self.client, self.path
        try:
            stat = client.call(f"read {path}", lambda k: k.exists_async(path), wait=True)
            if stat is None:
                return
            if stat.czxid != self._created:
                log.warning(
                    "zookeeper: not deleting %s: it is not the node this registrar created",
                    path,
                )
                return
            client.call(f"delete {path}", lambda k: k.delete_async(path, stat.version))
        except NoNodeError:
            pass
        except BadVersionError:
            log.warning("zookeeper: not deleting %s: it changed meanwhile", path)

    def _backend_close(self) -> None:
        self.client.remove_listener(self._on_session)
        self._release()
