"""sd_core.httpx against real HTTP servers on loopback ports: routing by service name, one pool
per instance closed after its requests, retries on another instance, deadlines, wait-for-ready,
and an instance killed while requests run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import sd_core
from sd_core import (
    Candidate,
    ConsistentHash,
    Endpointer,
    FixedInstancer,
    Instance,
    NoEndpointsError,
    Registration,
    RetryError,
    RoundRobin,
)
from sd_core.httpx import AsyncTransport, Transport

WAIT = 10.0  # bound of every wait for an event in these tests


# -- real servers ------------------------------------------------------------------------------


class Server:
    """A real HTTP/1.1 server (keep-alive) on a loopback port, run by threads, that counts the
    requests it serves and the connections open to it.

    ``GET /`` answers its name; ``/status/N`` answers status N; ``POST /echo`` its name and the
    body; ``/drop`` reads the request and closes the connection without answering;
    ``/hold`` (when ``hold`` is set) waits for :attr:`release` before answering;
    ``/partial`` sends the headers and half the body, then the rest after :attr:`release`.
    :meth:`kill` drops everything at once: the listening socket and every connection."""

    def __init__(self, name: str, *, hold: bool = False) -> None:
        self.name = name
        self.hold = hold
        self.release = threading.Event()
        self.holding = threading.Event()
        self.served: Counter[str] = Counter()
        self.hosts: set[str] = set()
        self._lock = threading.Condition()
        self._connections: set[socket.socket] = set()
        self._httpd = self._make()
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name=f"test-http-{name}"
        )
        self._thread.start()
        self._stopped = False

    @property
    def instance(self) -> Instance:
        return Instance("127.0.0.1", self.port, id=self.name)

    def _make(self) -> ThreadingHTTPServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body in two writes, without stalls

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.served[f"{self.command} {self.path}"] += 1
                    server.hosts.add(self.headers["Host"])
                name = server.name.encode()
                if self.path.startswith("/status/"):
                    self._answer(int(self.path.rsplit("/", 1)[1]), name)
                elif self.path == "/drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif self.path == "/hold" and server.hold:
                    server.holding.set()
                    server.release.wait(WAIT)
                    self._answer(200, name)
                elif self.path == "/partial":
                    self.send_response(200)
                    self.send_header("Content-Length", str(2 * len(name)))
                    self.end_headers()
                    self.wfile.write(name)
                    self.wfile.flush()
                    server.holding.set()
                    server.release.wait(WAIT)
                    self.wfile.write(name)
                else:
                    self._answer(200, name + (b":" + body if body else b""))

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        class HTTPServer(ThreadingHTTPServer):
            daemon_threads = False  # server_close() joins the connection threads
            block_on_close = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with server._lock:
                    server._connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                with server._lock:
                    server._connections.discard(request)
                    server._lock.notify_all()

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a connection killed under its handler

        return HTTPServer(("127.0.0.1", 0), Handler)

    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def wait_no_connections(self, timeout: float = WAIT) -> bool:
        """True once no client holds a connection to this server (they closed theirs)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._connections, timeout)

    def count(self, what: str) -> int:
        with self._lock:
            return self.served[what]

    def kill(self) -> None:
        """Crash: refuse new connections and cut every open one, requests in flight included."""
        self._httpd.shutdown()
        self._httpd.socket.close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self.release.set()
        self.stop()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the connection threads
        self._thread.join(WAIT)


def open_sockets() -> int:
    """Sockets open in this process."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def servers() -> Iterator[Callable[..., list[Server]]]:
    """Start real servers; at the end, stop them and check that no thread and no socket of the
    test is left (the client's sockets are checked by each test, before the servers stop)."""
    threads = set(threading.enumerate())
    sockets = open_sockets()
    made: list[Server] = []

    def start(*names: str, hold: Sequence[str] = ()) -> list[Server]:
        started = [Server(name, hold=name in hold) for name in names]
        made.extend(started)
        return started

    yield start
    for server in made:
        server.stop()
    deadline = time.monotonic() + WAIT
    left = [t for t in threading.enumerate() if t not in threads and _ours(t)]
    while left and time.monotonic() < deadline:
        left[0].join(0.05)
        left = [t for t in threading.enumerate() if t not in threads and _ours(t)]
    assert not left, f"threads left behind: {[t.name for t in left]}"
    assert open_sockets() <= sockets, "sockets left open"


def _ours(thread: threading.Thread) -> bool:
    # The delivery threads (sd-*) are shared by the process and checked by conftest.py, once
    # idle ones have ended; asyncio's default executor (asyncio_*) ends with the test's loop.
    return thread.is_alive() and not thread.name.startswith(("sd-", "asyncio_"))


class ClosingRecorder:
    """A pool factory making real ``httpx.HTTPTransport`` pools that note their closing (plain
    http: no CA bundle to load)."""

    def __init__(self) -> None:
        self.closed: dict[str, threading.Event] = {}

    def __call__(self, instance: Instance) -> httpx.HTTPTransport:
        closed = self.closed.setdefault(instance.id, threading.Event())

        class Recording(httpx.HTTPTransport):
            def close(self) -> None:
                super().close()
                closed.set()

        return Recording(verify=False)

    def make_async(self, instance: Instance) -> httpx.AsyncHTTPTransport:
        closed = self.closed.setdefault(instance.id, threading.Event())

        class Recording(httpx.AsyncHTTPTransport):
            async def aclose(self) -> None:
                asyncio.get_running_loop()  # on a loop: the one that used the pool
                await super().aclose()
                closed.set()

        return Recording(verify=False)


class Watching(RoundRobin[Any]):
    """RoundRobin that keeps the candidates it was last given (the public balancer contract):
    to read what each completion recorded."""

    latest: Sequence[Candidate[Any]] = ()

    def turns(self, candidates: Sequence[Candidate[Any]]) -> list[Candidate[Any]]:
        self.latest = candidates
        return list(candidates)

    def counts(self) -> dict[str, tuple[int, int]]:
        """(successes, failures) by instance id."""
        return {
            c.instance.id: (c.successes, c.failures) for c in self.latest if c.instance is not None
        }


def served_by(response: httpx.Response) -> str:
    instance = response.extensions["sd_instance"]
    assert isinstance(instance, Instance)
    return instance.id


# -- routing -------------------------------------------------------------------------------------


def test_requests_to_a_service_name_reach_every_instance(servers: Any) -> None:
    a, b, c = servers("a", "b", "c")
    instancer = FixedInstancer([a.instance, b.instance, c.instance])
    with httpx.Client(transport=Transport({"web": instancer}, balancer=RoundRobin)) as client:
        responses = [client.get("http://web/hello") for _ in range(30)]
        posted = client.post("http://WEB:1234/echo", content=b"body")
    assert {r.status_code for r in responses} == {200}
    assert Counter(r.text for r in responses) == {"a": 10, "b": 10, "c": 10}
    assert {served_by(r) for r in responses} == {"a", "b", "c"}
    assert responses[0].request.url == "http://web/hello"  # the caller's URL, not the instance's
    assert posted.text.endswith(":body")
    assert a.hosts | b.hosts | c.hosts == {"web", "web:1234"}  # Host keeps the service's name
    for server in (a, b, c):
        assert server.wait_no_connections(), "the client's connections were left open"


def test_mounts_route_each_service_to_its_own_transport(servers: Any) -> None:
    web, api = servers("web-1", "api-1")
    mounts = {
        "http://web": Transport(FixedInstancer([web.instance])),
        "http://api": Transport(FixedInstancer([api.instance])),
    }
    with httpx.Client(mounts=mounts) as client:
        assert client.get("http://web/").text == "web-1"
        assert client.get("http://api/").text == "api-1"
    assert web.wait_no_connections() and api.wait_no_connections()


def test_a_host_without_a_service_is_refused_at_once(servers: Any) -> None:
    (a,) = servers("a")
    with httpx.Client(transport=Transport({"web": FixedInstancer([a.instance])})) as client:
        started = time.monotonic()
        with pytest.raises(NoEndpointsError, match=r"no service named 'other'.*'web'"):
            client.get("http://other/")
        assert time.monotonic() - started < 1
    assert a.count("GET /") == 0


def test_a_transport_made_from_a_backend_url_finds_registered_instances(
    servers: Any, tmp_path: Path
) -> None:
    (a,) = servers("a")
    url = f"local:///web?path={tmp_path}"
    registration = Registration("web", "127.0.0.1", a.port, id="a")
    with sd_core.registrar("local", registration, path=str(tmp_path)):
        transport = Transport({"web": url})
        with httpx.Client(transport=transport, timeout=httpx.Timeout(5, pool=WAIT)) as client:
            assert client.get("http://web/").text == "a"  # waits for discovery, then served
    assert a.wait_no_connections()


def test_consistent_hash_needs_a_key_and_keeps_a_key_on_one_instance(servers: Any) -> None:
    a, b, c = servers("a", "b", "c")
    instancer = FixedInstancer([a.instance, b.instance, c.instance])
    with pytest.raises(ValueError, match="needs a key"):
        Transport({"web": instancer}, balancer=ConsistentHash)
    transport = Transport(
        {"web": instancer}, balancer=ConsistentHash, key=lambda r: r.headers["x-user"]
    )
    with httpx.Client(transport=transport) as client:
        for user in ("ada", "grace", "linus"):
            answers = {client.get("http://web/", headers={"x-user": user}).text for _ in range(5)}
            assert len(answers) == 1


# -- pools: one per instance, closed after the instance left and its requests ended ------------


def test_a_leaving_instance_keeps_its_pool_until_its_response_is_closed(servers: Any) -> None:
    a, b = servers("a", "b")
    pools = ClosingRecorder()
    instancer = FixedInstancer([a.instance])
    with httpx.Client(transport=Transport({"web": instancer}, pools)) as client:
        with client.stream("GET", "http://web/partial") as response:
            assert a.holding.wait(WAIT)
            assert instancer.set([b.instance])  # a leaves while its response is being read
            assert client.get("http://web/").text == "b"
            assert not pools.closed["a"].is_set(), "closed under a response still read"
            a.release.set()
            assert response.read() == b"aa"
        assert pools.closed["a"].wait(WAIT), "the pool of a stayed open after it left"
        assert a.wait_no_connections()
        assert not pools.closed["b"].is_set()
    assert pools.closed["b"].is_set()  # closing the client closes every pool
    assert b.wait_no_connections()


def test_an_instance_killed_mid_run_fails_no_idempotent_get(servers: Any) -> None:
    a, victim, c = servers("a", "victim", "c", hold=("victim",))
    pools = ClosingRecorder()
    instancer = FixedInstancer([a.instance, victim.instance, c.instance])
    retried: list[Exception] = []
    transport = Transport(
        {"web": instancer}, pools, callback=lambda attempt, error: retried.append(error)
    )
    failures: list[BaseException] = []
    answers: Counter[str] = Counter()
    stop = threading.Event()
    with httpx.Client(transport=transport) as client:

        def work() -> None:
            while not stop.is_set():
                try:
                    answers[client.get("http://web/").text] += 1
                except BaseException as exc:
                    failures.append(exc)

        held: list[httpx.Response] = []

        def hold() -> None:  # GET /hold until one is held by the victim (others answer at once)
            while not victim.holding.is_set():
                held.append(client.get("http://web/hold"))

        workers = [threading.Thread(target=work, name=f"test-worker-{i}") for i in range(3)]
        holder = threading.Thread(target=hold, name="test-holder")
        for thread in [*workers, holder]:
            thread.start()
        try:
            assert victim.holding.wait(WAIT)
            victim.kill()  # crash with a GET in flight; it stays discovered a while
            before = sum(answers.values())
            deadline = time.monotonic() + WAIT
            while sum(answers.values()) < before + 50:  # the others go on, the dead one too
                assert not failures, failures
                assert time.monotonic() < deadline, "the clients stalled"
                holder.join(0.01)
            assert instancer.set([a.instance, c.instance])  # its deregistration arrives
            assert pools.closed["victim"].wait(WAIT), "the dead instance's pool stayed open"
        finally:
            stop.set()
            for thread in [*workers, holder]:
                thread.join(WAIT)
        assert not failures, failures
        assert held[-1].status_code == 200
        assert served_by(held[-1]) in {"a", "c"}  # the held GET was tried again elsewhere
        assert any(isinstance(e, httpx.RemoteProtocolError | httpx.ReadError) for e in retried)
        assert any(isinstance(e, httpx.ConnectError) for e in retried)
        assert not pools.closed["a"].is_set()
    for server in (a, c):
        assert server.wait_no_connections()


# -- retries -------------------------------------------------------------------------------------


def test_connection_errors_are_retried_for_any_method(servers: Any) -> None:
    (a,) = servers("a")
    dead = Instance("127.0.0.1", free_port(), id="dead")
    watching: list[Watching] = []

    def balancer(endpointer: Endpointer[Any]) -> Watching:
        watching.append(Watching(endpointer))
        return watching[-1]

    instancer = FixedInstancer([dead, a.instance])
    with httpx.Client(transport=Transport({"web": instancer}, balancer=balancer)) as client:
        answers = [client.post("http://web/echo", content=b"x").text for _ in range(6)]
    assert answers == ["a:x"] * 6
    assert a.count("POST /echo") == 6
    counts = watching[0].counts()
    assert counts["dead"][0] == 0 and counts["dead"][1] >= 3  # failures reach the balancer
    assert counts["a"] == (6, 0)


def test_a_request_that_may_have_been_sent_is_retried_only_when_idempotent(servers: Any) -> None:
    a, b = servers("a", "b")
    instancer = FixedInstancer([a.instance, b.instance])
    with httpx.Client(transport=Transport({"web": instancer})) as client:
        with pytest.raises(RetryError) as post:
            client.post("http://web/drop", content=b"x")
        with pytest.raises(RetryError) as get:
            client.get("http://web/drop")
    assert len(post.value.exceptions) == 1  # a POST that reached a server is not sent again
    assert isinstance(post.value.exceptions[0], httpx.RemoteProtocolError)
    assert a.count("POST /drop") + b.count("POST /drop") == 1
    assert len(get.value.exceptions) == 3  # a GET is, on the other instance first
    assert all(isinstance(e, httpx.RemoteProtocolError) for e in get.value.exceptions)
    assert a.count("GET /drop") >= 1 and b.count("GET /drop") >= 1
    assert a.wait_no_connections() and b.wait_no_connections()


def test_listed_statuses_are_retried_for_idempotent_methods_and_count_as_failures(
    servers: Any,
) -> None:
    a, b = servers("a", "b")
    watching: list[Watching] = []

    def balancer(endpointer: Endpointer[Any]) -> Watching:
        watching.append(Watching(endpointer))
        return watching[-1]

    ok = FixedInstancer([a.instance, b.instance])
    transport = Transport(
        {"web": ok, "down": FixedInstancer([a.instance, b.instance])},
        balancer=balancer,
        retry_statuses={503},
        failure_statuses=range(500, 600),
    )
    with httpx.Client(transport=transport) as client:
        gets = [client.get("http://down/status/503") for _ in range(2)]
        put = client.put("http://down/status/503", content=b"")
        posts = [client.post("http://down/status/503") for _ in range(2)]
        errors = [client.get("http://web/status/500") for _ in range(2)]
        fine = client.get("http://web/")
    # Every attempt answered 503: the last response is returned, after 3 attempts each.
    assert [r.status_code for r in gets] == [503, 503]
    assert a.count("GET /status/503") + b.count("GET /status/503") == 6
    assert put.status_code == 503
    assert a.count("PUT /status/503") + b.count("PUT /status/503") == 3
    assert [r.status_code for r in posts] == [503, 503]  # not idempotent: once each
    assert a.count("POST /status/503") + b.count("POST /status/503") == 2
    assert [r.status_code for r in errors] == [500, 500]  # not listed: not retried
    assert fine.status_code == 200
    web, down = watching
    assert sum(f for _, f in down.counts().values()) == 11  # each 503 counted as a failure
    assert sum(s for s, _ in down.counts().values()) == 0
    assert web.counts() == {"a": (1, 1), "b": (0, 1)} or web.counts() == {
        "a": (0, 1),
        "b": (1, 1),
    }


def test_a_retry_error_lists_every_attempt_and_the_callback_sees_each(servers: Any) -> None:
    servers()
    dead = [Instance("127.0.0.1", free_port(), id=f"dead-{i}") for i in range(3)]
    seen: list[int] = []
    transport = Transport(
        {"web": FixedInstancer(dead)},
        max_attempts=4,
        callback=lambda attempt, error: seen.append(attempt),
    )
    with httpx.Client(transport=transport) as client, pytest.raises(RetryError) as caught:
        client.get("http://web/")
    assert len(caught.value.exceptions) == 4
    assert all(isinstance(e, httpx.ConnectError) for e in caught.value.exceptions)
    assert seen == [1, 2, 3]  # each failure followed by another attempt
    assert "4 of 4 attempts failed" in str(caught.value)
    stopping = Transport({"web": FixedInstancer(dead)}, callback=lambda attempt, error: False)
    with httpx.Client(transport=stopping) as client, pytest.raises(RetryError) as stopped:
        client.get("http://web/")
    assert len(stopped.value.exceptions) == 1


def test_a_deadline_bounds_the_whole_request(servers: Any) -> None:
    slow, also_slow = servers("slow", "also-slow", hold=("slow", "also-slow"))
    instancer = FixedInstancer([slow.instance, also_slow.instance])
    transport = Transport({"web": instancer}, deadline=0.3)
    with httpx.Client(transport=transport, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(RetryError, match=r"0\.3 s deadline") as caught:
            client.get("http://web/hold")
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3, elapsed
    assert all(isinstance(e, httpx.ReadTimeout) for e in caught.value.exceptions)
    with pytest.raises(ValueError, match="deadline"):
        Transport({"web": instancer}, deadline=0)


# -- waiting for an instance ------------------------------------------------------------------


def test_a_request_waits_for_an_instance_within_its_pool_timeout(servers: Any) -> None:
    (a,) = servers("a")
    instancer = FixedInstancer([])
    endpointers: list[Endpointer[Any]] = []

    def balancer(endpointer: Endpointer[Any]) -> RoundRobin[Any]:
        endpointers.append(endpointer)
        return RoundRobin(endpointer)

    transport = Transport({"web": instancer}, balancer=balancer)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5, pool=0.2)) as client:
        started = time.monotonic()
        with pytest.raises(NoEndpointsError, match=r"no instance of service 'web' within 0\.2 s"):
            client.get("http://web/")
        assert 0.2 <= time.monotonic() - started < 2
        got: list[object] = []

        def get() -> None:
            try:
                got.append(client.get("http://web/", timeout=httpx.Timeout(5, pool=None)))
            except BaseException as exc:
                got.append(exc)

        waiter = threading.Thread(target=get, name="test-waiter")
        waiter.start()
        notifier = endpointers[0]._cache.notifier
        deadline = time.monotonic() + WAIT
        while not notifier._cond._waiters and not got:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the request did not wait"
            waiter.join(0.005)
        assert got == []
        assert instancer.set([a.instance])
        waiter.join(WAIT)
    assert len(got) == 1 and isinstance(got[0], httpx.Response), got
    assert got[0].text == "a"
    assert a.wait_no_connections()


def test_a_closed_transport_refuses_requests(servers: Any) -> None:
    (a,) = servers("a")
    transport = Transport({"web": FixedInstancer([a.instance])})
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        transport.handle_request(httpx.Request("GET", "http://web/"))
    assert "closed" in repr(transport)


# -- async -----------------------------------------------------------------------------------


async def test_async_requests_reach_every_instance_and_pools_close_on_their_loop(
    servers: Any,
) -> None:
    a, b, c = servers("a", "b", "c")
    pools = ClosingRecorder()
    instancer = FixedInstancer([a.instance, b.instance, c.instance])
    transport = AsyncTransport({"web": instancer}, pools.make_async, balancer=RoundRobin)
    async with httpx.AsyncClient(transport=transport) as client:
        responses = await asyncio.gather(*(client.get("http://web/") for _ in range(30)))
        assert {r.status_code for r in responses} == {200}
        assert set(Counter(r.text for r in responses)) == {"a", "b", "c"}
        assert await asyncio.to_thread(instancer.set, [a.instance, c.instance])
        # b's pool is closed on this loop (the loop is free while we wait in a thread):
        assert await asyncio.to_thread(pools.closed["b"].wait, WAIT)
        assert await asyncio.to_thread(b.wait_no_connections)
        assert (await client.get("http://web/")).text in {"a", "c"}
    assert pools.closed["a"].is_set() and pools.closed["c"].is_set()
    assert a.wait_no_connections() and c.wait_no_connections()


async def test_async_instance_killed_mid_run_fails_no_idempotent_get(servers: Any) -> None:
    a, victim, c = servers("a", "victim", "c", hold=("victim",))
    instancer = FixedInstancer([a.instance, victim.instance, c.instance])
    async with httpx.AsyncClient(transport=AsyncTransport({"web": instancer})) as client:
        stop = asyncio.Event()
        answers: Counter[str] = Counter()

        async def work() -> None:
            while not stop.is_set():
                answers[(await client.get("http://web/")).text] += 1

        async def hold() -> httpx.Response:
            while True:
                response = await client.get("http://web/hold")
                if victim.holding.is_set():
                    return response

        workers = [asyncio.create_task(work()) for _ in range(3)]
        holder = asyncio.create_task(hold())
        assert await asyncio.to_thread(victim.holding.wait, WAIT)
        await asyncio.to_thread(victim.kill)
        before = sum(answers.values())
        async with asyncio.timeout(WAIT):
            while sum(answers.values()) < before + 50:
                await asyncio.sleep(0)
        assert await asyncio.to_thread(instancer.set, [a.instance, c.instance])
        stop.set()
        await asyncio.gather(*workers)  # a failed GET would raise here
        held = await holder
        assert held.status_code == 200 and served_by(held) in {"a", "c"}
    assert a.wait_no_connections() and c.wait_no_connections()


async def test_async_deadline_cancels_the_attempt_in_flight(servers: Any) -> None:
    (slow,) = servers("slow", hold=("slow",))
    transport = AsyncTransport({"web": FixedInstancer([slow.instance])}, deadline=0.3)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        started = time.monotonic()
        with pytest.raises(RetryError) as caught:
            await client.get("http://web/hold")
        assert 0.25 <= time.monotonic() - started < 3
    assert len(caught.value.exceptions) == 1
    assert isinstance(caught.value.exceptions[0], TimeoutError | httpx.ReadTimeout)
    slow.release.set()
    assert await asyncio.to_thread(slow.wait_no_connections)


async def test_async_request_waits_for_an_instance(servers: Any) -> None:
    (a,) = servers("a")
    instancer = FixedInstancer([])
    transport = AsyncTransport({"web": instancer})
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, pool=0.2)) as c:
        with pytest.raises(NoEndpointsError, match=r"within 0\.2 s"):
            await c.get("http://web/")
        request = asyncio.create_task(c.get("http://web/", timeout=httpx.Timeout(5, pool=WAIT)))
        await asyncio.sleep(0)
        assert not request.done()
        assert await asyncio.to_thread(instancer.set, [a.instance])
        assert (await request).text == "a"
    assert a.wait_no_connections()


# -- the extra -----------------------------------------------------------------------------------


def test_without_httpx_the_import_names_the_extra_to_install() -> None:
    code = "import sys; sys.modules['httpx'] = None; import sd_core.httpx"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert 'pip install "sd-core[httpx]"' in result.stderr
    assert "During handling" not in result.stderr  # raised from None: one clear error


def test_the_public_surface_is_sorted_documented_and_in_the_docs() -> None:
    import inspect

    import sd_core.httpx

    assert sd_core.httpx.__all__ == sorted(sd_core.httpx.__all__)
    docs = (Path(__file__).resolve().parent.parent / "docs" / "calling.md").read_text()
    for name in sd_core.httpx.__all__:
        assert inspect.getdoc(getattr(sd_core.httpx, name)), name
        assert f"`sd_core.httpx.{name}" in docs, f"{name} is not in docs/calling.md"
    for name, value in vars(sd_core.httpx).items():
        if inspect.isclass(value) and value.__module__ == "sd_core.httpx":
            assert name in sd_core.httpx.__all__ or name.startswith("_"), name


def test_bad_arguments_are_refused(servers: Any) -> None:
    servers()
    instancer = FixedInstancer([])
    with pytest.raises(ValueError, match="max_attempts"):
        Transport({"web": instancer}, max_attempts=0)
    with pytest.raises(ValueError, match="HTTP statuses"):
        Transport({"web": instancer}, retry_statuses={"503"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two services are named 'web'"):
        Transport({"web": instancer, "WEB": instancer})
    with pytest.raises(TypeError, match="Instancer or a backend URL"):
        Transport({"web": 42})  # type: ignore[dict-item]
