"""A narrow wrapper over httpx: the REST calls the plugin makes to Eureka, failing over from
one server to the next, with errors mapped onto sd_core's.

This is the only module that imports httpx; the backend imports it when it first makes a
client, so importing :mod:`sd_eureka` stays cheap. Every call runs on the core's event loop
(one ``httpx.AsyncClient`` per connection, shared by the registry poller and the registrars).
Credentials travel in the ``Authorization`` header, never in a URL, a message or a repr;
messages built from httpx's errors go through :func:`~sd_core.plugin.scrub`, and the errors
raised, with the exceptions chained to them, through :func:`~sd_core.plugin.scrub_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from typing import TYPE_CHECKING, Any, NoReturn

import httpx

from sd_core import BackendUnavailableError, ConfigError, RegistrationError, SDError
from sd_core.plugin import core_loop, logger, scrub, scrub_error

if TYPE_CHECKING:
    from ._backend import Connection, Server

__all__ = ["EurekaClient"]

log = logger("sd_eureka")

_JSON = {"Accept": "application/json"}  # without it the server answers XML, even for */*


class EurekaClient:
    """Eureka's REST API as the plugin uses it, on one or several servers.

    Each call goes to the server that answered last, and on to the next ones in the order
    given when it cannot be reached, does not answer within the timeout or fails (5xx); the
    first one that answers is used from then on. Discovery calls raise
    :class:`BackendUnavailableError` when no server answered and :class:`ConfigError` when
    one refused (401, 403, 400); registration calls raise :class:`RegistrationError`.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        tls = connection.tls
        custom_tls = tls.ca is not None or tls.cert is not None or not tls.verify
        self._http = httpx.AsyncClient(
            verify=tls.ssl_context() if custom_tls else True,
            timeout=httpx.Timeout(connection.timeout),
            headers=_JSON,
            # Eureka servers are internal: no proxy from the environment, no .netrc.
            trust_env=False,
            follow_redirects=False,
        )
        self._auth = {
            server: httpx.BasicAuth(server.username, server.password)
            for server in connection.servers
            if server.username is not None and server.password is not None
        }
        self._current = 0
        self._closing: asyncio.Task[None] | None = None

    @property
    def server(self) -> Server:
        """The server calls go to first: the one that answered last."""
        return self.connection.servers[self._current]

    # -- discovery -------------------------------------------------------------------------
    async def applications(self) -> Any:
        """``GET /apps``: the whole registry (every status)."""
        return await self._read("/apps", "fetch the registry")

    async def delta(self) -> Any:
        """``GET /apps/delta``: the recent changes of every application, and the hashcode
        of the whole registry."""
        return await self._read("/apps/delta", "fetch the registry's delta")

    async def _read(self, path: str, what: str) -> Any:
        response = await self._call("GET", path, what, registering=False)
        if response.status_code != 200:
            self._refused(what, response, registering=False)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self._raise(
                BackendUnavailableError(
                    f"eureka at {self._where(response)}: {what}: the answer is not JSON "
                    f"({response.headers.get('content-type', 'no content type')})"
                ),
                exc,
            )

    # -- registration ----------------------------------------------------------------------
    async def register(self, app: str, document: dict[str, Any]) -> None:
        """``POST /apps/{app}`` with the instance document (the server answers 204)."""
        what = f"register {_instance_of(document)!r} in {app!r}"
        response = await self._call(
            "POST", f"/apps/{_segment(app)}", what, registering=True, body=document
        )
        if response.status_code not in (200, 204):
            self._refused(what, response, registering=True)

    async def renew(self, app: str, instance_id: str) -> bool:
        """``PUT /apps/{app}/{id}``; False when the server does not know the instance."""
        what = f"renew {instance_id!r} of {app!r}"
        response = await self._call("PUT", _path(app, instance_id), what, registering=True)
        return self._found(what, response)

    async def cancel(self, app: str, instance_id: str) -> None:
        """``DELETE /apps/{app}/{id}``; an instance the server does not know is gone already."""
        what = f"cancel {instance_id!r} of {app!r}"
        response = await self._call("DELETE", _path(app, instance_id), what, registering=True)
        self._found(what, response)

    async def override_status(self, app: str, instance_id: str, status: str) -> bool:
        """``PUT /apps/{app}/{id}/status?value=STATUS``: the status override, which renewals
        and registrations keep; False when the server does not know the instance."""
        what = f"set the status of {instance_id!r} of {app!r} to {status}"
        response = await self._call(
            "PUT",
            _path(app, instance_id) + "/status",
            what,
            registering=True,
            params={"value": status},
        )
        return self._found(what, response)

    async def remove_override(self, app: str, instance_id: str, status: str) -> bool:
        """``DELETE /apps/{app}/{id}/status?value=STATUS``: drop the override and set
        ``status``; False when the server does not know the instance."""
        what = f"clear the status override of {instance_id!r} of {app!r}"
        response = await self._call(
            "DELETE",
            _path(app, instance_id) + "/status",
            what,
            registering=True,
            params={"value": status},
        )
        return self._found(what, response)

    def _found(self, what: str, response: httpx.Response) -> bool:
        if response.status_code == 404:
            return False
        if response.status_code not in (200, 204):
            self._refused(what, response, registering=True)
        return True

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections (idempotent; from any thread, the core's loop included)."""
        loop = core_loop()
        if loop.in_loop():
            self._closing = loop.loop().create_task(self._http.aclose())
        else:
            loop.call(self._http.aclose(), timeout=10)

    def __repr__(self) -> str:
        auth = " basic-auth" if self._auth else ""
        return f"<EurekaClient {self.connection.describe()}{auth}>"

    # -- calls, failover and errors ---------------------------------------------------------
    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        registering: bool,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send the request to each server in turn, from the one that answered last, until
        one answers without a server error; that one is used first from then on."""
        servers = self.connection.servers
        start = self._current
        failures: list[tuple[Server, str, BaseException]] = []
        for step in range(len(servers)):
            index = (start + step) % len(servers)
            server = servers[index]
            try:
                response = await self._http.request(
                    method,
                    server.url + path,
                    json=body,
                    params=params,
                    auth=self._auth.get(server, httpx.USE_CLIENT_DEFAULT),
                )
            except (httpx.TransportError, OSError) as exc:
                # OSError: httpx lets some TLS failures through unmapped (ssl.SSLError when
                # the server rejects the client's certificate after a TLS 1.3 handshake).
                failures.append((server, _reason(exc, self.connection.timeout), exc))
                continue
            if response.status_code >= 500:
                await response.aread()
                failures.append((server, _status(response), _ServerError(_status(response))))
                continue
            if index != self._current:
                previous, self._current = servers[self._current], index
                log.warning(
                    "eureka: %s answered after %s failed; it is used first from now on",
                    server.url,
                    previous.url,
                )
            return response
        unavailable = RegistrationError if registering else BackendUnavailableError
        detail = "; ".join(f"{server.url}: {reason}" for server, reason, _ in failures)
        error = unavailable(f"eureka: {what}: no server answered ({detail})")
        return self._raise(error, failures[-1][2])

    def _where(self, response: httpx.Response) -> str:
        url = response.request.url
        return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"

    def _refused(self, what: str, response: httpx.Response, *, registering: bool) -> NoReturn:
        refused = RegistrationError if registering else ConfigError
        where = f"eureka at {self._where(response)}"
        code = response.status_code
        if code == 401:
            server = self.server
            given = "were refused" if server in self._auth else "are required (none were given)"
            message = f"{where}: {what}: credentials {given} (401)"
        elif code == 403:
            message = f"{where}: {what}: forbidden (403): the user may not do it"
        else:
            message = f"{where}: {what}: {_status(response)}"
        self._raise(refused(message), _ServerError(_status(response)))

    @staticmethod
    def _raise(error: SDError, cause: BaseException) -> NoReturn:
        """Raise ``error`` from ``cause``, secrets scrubbed from both and the chain."""
        error.__cause__ = cause
        error.__suppress_context__ = True
        scrub_error(error)
        raise error


class _ServerError(Exception):
    """What a server answered, as the cause of the error raised for it."""


def _segment(text: str) -> str:
    """``text`` as one segment of a URL path (colons as they are, as Spring writes ids)."""
    return urllib.parse.quote(text, safe=":@")


def _path(app: str, instance_id: str) -> str:
    return f"/apps/{_segment(app)}/{_segment(instance_id)}"


def _instance_of(document: dict[str, Any]) -> str:
    with contextlib.suppress(KeyError, TypeError):
        return str(document["instance"]["instanceId"])
    return "?"


def _status(response: httpx.Response) -> str:
    """``404 Not Found: <the start of the body>``, scrubbed."""
    text = " ".join(response.text.split())  # one line: no CR or LF from the server
    if len(text) > 200:
        text = text[:200] + "..."
    phrase = f"{response.status_code} {response.reason_phrase}".strip()
    return scrub(f"{phrase}: {text}" if text else phrase)


def _reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within the timeout ({timeout:g} s)"
    detail = scrub(str(exc)) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"
