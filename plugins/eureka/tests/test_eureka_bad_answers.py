"""Bad or partial answers from the server never stop the registry poller: a proxy in front
of the real server passes every request through and spoils the registry documents it sends
back (cut short, not a registry, instance records with fields missing or of the wrong type).
Records that cannot be instances are skipped with one warning each; a document that cannot
be read is an error event, and the poller carries on and recovers by itself."""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eureka_helpers import FAST, MakeInstancer, ids, poll, poll_tasks, put, wait_for
from pytest_sd.eureka import EurekaServer

from sd_core import BackendUnavailableError, Event

PROPAGATION = 5.0

Spoil = Callable[[str, bytes], bytes]
"""What the proxy does to the body of a registry read (``/apps``, ``/apps/delta``)."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads
    block_on_close = True


class SpoilingProxy:
    """An HTTP proxy to ``target`` on a free loopback port (``address``) whose ``spoil``
    rewrites the registry documents; the other calls pass unchanged."""

    def __init__(self, target: EurekaServer) -> None:
        self.target = target
        self.spoil: Spoil | None = None
        self.reads = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                # Plain bodies (no gzip), so that they can be spoiled.
                dropped = ("host", "connection", "accept-encoding")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                upstream = http.client.HTTPConnection(target.host, target.port, timeout=10)
                try:
                    upstream.request(self.command, self.path, body, headers)
                    response = upstream.getresponse()
                    status, data = response.status, response.read()
                    content_type = response.getheader("Content-Type")
                finally:
                    upstream.close()
                path = self.path.partition("?")[0]
                spoil = proxy.spoil
                if self.command == "GET" and path.endswith(("/apps", "/apps/delta")):
                    proxy.reads += 1
                    if spoil is not None and status == 200:
                        data = spoil(path, data)
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def proxy(eureka_server: EurekaServer) -> Iterator[SpoilingProxy]:
    made = SpoilingProxy(eureka_server)
    yield made
    made.close()


@pytest.fixture
def through_proxy(
    proxy: SpoilingProxy, eureka_server: EurekaServer, make_instancer: MakeInstancer
) -> MakeInstancer:
    """Make instancers that read the registry through the proxy (a poller of their own)."""

    def make(service: str, **overrides: Any) -> Any:
        return make_instancer(service, address=proxy.address, **overrides)

    return make


def listing(ident: str) -> Callable[[Event], bool]:
    """A check that an event lists ``ident``."""
    return lambda event: ident in ids(event)


def rewrite(app: str, change: Callable[[dict[str, Any]], object]) -> Spoil:
    """Spoil the instance records of ``app``: ``change`` edits each in place, or returns a
    replacement for it."""

    def spoil(path: str, data: bytes) -> bytes:
        document = json.loads(data)
        for application in document["applications"]["application"]:
            if application["name"] == app:
                records = application["instance"]
                for n, record in enumerate(records):
                    replaced = change(record)
                    if replaced is not None:
                        records[n] = replaced
        return json.dumps(document).encode()

    return spoil


def test_partial_records_are_skipped_with_one_warning_each_and_the_rest_listed(
    eureka_server: EurekaServer,
    proxy: SpoilingProxy,
    through_proxy: MakeInstancer,
    sd_namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sd_eureka")
    app = sd_namespace.upper()
    for ident in ("good", "no-ip", "no-port", "cut", "junk"):
        put(eureka_server, app, ident)

    def spoil(record: dict[str, Any]) -> object:
        ident = record.get("instanceId")
        if ident == "no-ip":
            del record["ipAddr"]
        elif ident == "no-port":
            del record["port"]
        elif ident == "cut":
            return {"status": "UP"}  # no id: set aside, still counted in the hashcode
        elif ident == "junk":
            return ["not", "a", "record"]
        return None

    proxy.spoil = rewrite(app, spoil)
    with through_proxy(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"good"}, PROPAGATION, "only the good one")
        # More changes in the application: it is mapped again each time, not warned again.
        for ident in ("more-0", "more-1", "more-2"):
            put(eureka_server, app, ident)
            wait_for(sub, listing(ident), PROPAGATION, ident)
        reads = proxy.reads
        poll(lambda: proxy.reads >= reads + 3, 3 * FAST["refresh"] + 5, "3 more polls")
        # Polls that find the same spoiled records send nothing: no error, no change.
        with pytest.raises(TimeoutError):
            sub.get(timeout=0.1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "sd_eureka"]
    assert len([w for w in warnings if "'no-ip'" in w and "no ipAddr" in w]) == 1, warnings
    assert len([w for w in warnings if "'no-port'" in w and "its port" in w]) == 1, warnings
    assert len([w for w in warnings if "neither instanceId nor hostName" in w]) == 1, warnings
    assert len([w for w in warnings if "an instance is ['not'" in w]) == 1, warnings
    assert len(warnings) == 4, warnings
    assert all(app in w for w in warnings), warnings


UNREADABLE: dict[str, tuple[Spoil, str]] = {
    "cut-short": (lambda path, data: data[: len(data) // 2], "not JSON"),
    "not-a-registry": (lambda path, data: b'{"applications": [1]}', "not an 'applications'"),
    "null": (lambda path, data: b"null", "not an 'applications' object"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_an_unreadable_registry_is_an_error_event_and_the_poller_recovers(
    eureka_server: EurekaServer,
    proxy: SpoilingProxy,
    through_proxy: MakeInstancer,
    sd_namespace: str,
    case: str,
) -> None:
    spoil, says = UNREADABLE[case]
    app = sd_namespace.upper()
    put(eureka_server, app, "a")
    with through_proxy(sd_namespace).subscribe() as sub:
        wait_for(sub, lambda e: ids(e) == {"a"}, PROPAGATION, "a")
        proxy.spoil = spoil  # the next delta
        event = wait_for(sub, lambda e: not e.ok, PROPAGATION, "an error event")
        assert isinstance(event.error, BackendUnavailableError)
        assert says in str(event.error), event.error
        assert poll_tasks() == 1, "the poller carries on"
        put(eureka_server, app, "b")
        proxy.spoil = None
        # Retried within retry_max with a full fetch: the whole set, b included.
        bound = FAST["retry_max"] + FAST["refresh"] + PROPAGATION
        wait_for(sub, lambda e: e.ok and ids(e) == {"a", "b"}, bound, "a and b")
