"""sd_core.grpc against real grpcio servers on loopback ports: one channel per instance closed
after its calls, a balanced channel any stub can use, statuses and latency reaching the
balancer, UNAVAILABLE tried again on another instance, TLS, and a server stopped mid-run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from sd_core import (
    Candidate,
    Endpointer,
    FixedInstancer,
    Instance,
    NoEndpointsError,
    RetryError,
    RoundRobin,
)
from sd_core.grpc import AioChannel, Channel, aio_channel_factory, channel_factory

WAIT = 10.0  # bound of every wait for an event in these tests
SERVICE = "test.Greeter"


# -- a small service, without generated code --------------------------------------------------


class Greeter:
    """A real grpcio server of ``test.Greeter`` on a loopback port.

    ``Hello(text)`` answers ``NAME:text``; ``Hello("fail:CODE")`` fails with that status;
    ``Hello("hold")`` (when ``hold`` is set) waits for :attr:`release` first. ``Count("N")``
    streams ``NAME0`` … ``NAME{N-1}``, and for ``"hold"`` one message, then the rest after
    :attr:`release`. ``Join`` joins a request stream; ``Chat`` answers each request."""

    def __init__(
        self, name: str, *, hold: bool = False, tls: tuple[bytes, bytes] | None = None
    ) -> None:
        self.name = name
        self.hold = hold
        self.release = threading.Event()
        self.holding = threading.Event()
        self.served: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._executor = futures.ThreadPoolExecutor(16, thread_name_prefix=f"test-grpc-{name}")
        self._server = grpc.server(self._executor)
        handlers = {
            "Hello": grpc.unary_unary_rpc_method_handler(self._hello),
            "Count": grpc.unary_stream_rpc_method_handler(self._count),
            "Join": grpc.stream_unary_rpc_method_handler(self._join),
            "Chat": grpc.stream_stream_rpc_method_handler(self._chat),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        if tls is None:
            self.port: int = self._server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials([tls])
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self._server.start()
        self._stopped = False

    @property
    def instance(self) -> Instance:
        return Instance("127.0.0.1", self.port, id=self.name)

    def count(self, method: str) -> int:
        with self._lock:
            return self.served[method]

    def _note(self, method: str) -> None:
        with self._lock:
            self.served[method] += 1

    def _hello(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._note("Hello")
        if request.startswith(b"fail:"):
            context.abort(grpc.StatusCode[request[5:].decode()], self.name)
        if request == b"hold" and self.hold:
            self.holding.set()
            self.release.wait(WAIT)
        return self.name.encode() + b":" + request

    def _count(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        self._note("Count")
        if request == b"hold":
            yield f"{self.name}0".encode()
            self.holding.set()
            self.release.wait(WAIT)
            yield f"{self.name}1".encode()
            return
        for i in range(int(request)):
            yield f"{self.name}{i}".encode()

    def _join(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        self._note("Join")
        return self.name.encode() + b":" + b"".join(requests)

    def _chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._note("Chat")
        for request in requests:
            yield self.name.encode() + b":" + request

    def stop(self) -> None:
        """Stop at once: calls in flight fail (UNAVAILABLE), new connections are refused."""
        if self._stopped:
            return
        self._stopped = True
        self._server.stop(None).wait(WAIT)
        self.release.set()
        self._executor.shutdown(wait=True)


class GreeterStub:
    """What protoc would generate for test.Greeter (strings in, strings out)."""

    def __init__(self, channel: Any) -> None:
        encode, decode = str.encode, bytes.decode
        self.Hello = channel.unary_unary(
            f"/{SERVICE}/Hello", encode, decode, _registered_method=True
        )
        self.Count = channel.unary_stream(
            f"/{SERVICE}/Count", encode, decode, _registered_method=True
        )
        self.Join = channel.stream_unary(
            f"/{SERVICE}/Join", encode, decode, _registered_method=True
        )
        self.Chat = channel.stream_stream(
            f"/{SERVICE}/Chat", encode, decode, _registered_method=True
        )


@pytest.fixture
def greeters() -> Iterator[Callable[..., list[Greeter]]]:
    """Start real servers; at the end stop them and check that no thread is left (grpc's own
    process-wide poller of grpc.aio excepted)."""
    threads = set(threading.enumerate())
    made: list[Greeter] = []

    def start(*names: str, hold: Sequence[str] = (), tls: Any = None) -> list[Greeter]:
        started = [Greeter(name, hold=name in hold, tls=tls) for name in names]
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


def _ours(thread: threading.Thread) -> bool:
    # sd-* threads are checked by conftest.py; asyncio_* end with the test's loop; grpc.aio
    # starts one poller thread per process and keeps it.
    return (
        thread.is_alive()
        and not thread.name.startswith(("sd-", "asyncio_"))
        and "_poll_wrapper" not in thread.name
    )


class Closed:
    """A closer that closes an instance's channel through the factory's own closer (or the
    channel's close()) and notes it."""

    def __init__(self, inner: Any, event: threading.Event) -> None:
        self._inner = inner
        self._event = event

    def close(self) -> None:
        self._inner.close()
        self._event.set()


class Recorder:
    """Wraps a channel factory: keeps each instance's channel and notes when it is closed."""

    def __init__(self, factory: Callable[[Instance], Any]) -> None:
        self._factory = factory
        self.channels: dict[str, Any] = {}
        self.closed: dict[str, threading.Event] = {}

    def __call__(self, instance: Instance) -> tuple[Any, Closed]:
        made = self._factory(instance)
        channel, closer = made if isinstance(made, tuple) else (made, made)
        self.channels[instance.id] = channel
        event = self.closed.setdefault(instance.id, threading.Event())
        return channel, Closed(closer, event)


class Watching(RoundRobin[Any]):
    """RoundRobin that keeps the candidates it was last given (the public balancer contract)."""

    latest: Sequence[Candidate[Any]] = ()

    def turns(self, candidates: Sequence[Candidate[Any]]) -> list[Candidate[Any]]:
        self.latest = candidates
        return list(candidates)

    def counts(self) -> dict[str, tuple[int, int]]:
        """(successes, failures) by instance id."""
        return {
            c.instance.id: (c.successes, c.failures) for c in self.latest if c.instance is not None
        }


def watching(into: list[Watching]) -> Callable[[Endpointer[Any]], Watching]:
    def make(endpointer: Endpointer[Any]) -> Watching:
        into.append(Watching(endpointer))
        return into[-1]

    return make


# -- calls through the balancer ---------------------------------------------------------------


def test_every_kind_of_call_reaches_the_instances_through_a_stub(greeters: Any) -> None:
    a, b, c = greeters("a", "b", "c")
    recorder = Recorder(channel_factory())
    instancer = FixedInstancer([a.instance, b.instance, c.instance])
    with Channel(instancer, recorder, balancer=RoundRobin) as channel:
        stub = GreeterStub(channel)
        answers = [stub.Hello("hi", timeout=WAIT) for _ in range(30)]
        response, call = stub.Hello.with_call("call", timeout=WAIT)
        future = stub.Hello.future("later", timeout=WAIT)
        streamed = list(stub.Count("3", timeout=WAIT))
        joined = stub.Join(iter(["x", "y"]), timeout=WAIT)
        chat = list(stub.Chat(iter(["1", "2"]), timeout=WAIT))
        assert future.result(WAIT).endswith(":later")
    assert Counter(answers) == {"a:hi": 10, "b:hi": 10, "c:hi": 10}
    assert response.endswith(":call") and call.code() == grpc.StatusCode.OK
    assert len(streamed) == 3 and streamed[0][:-1] == streamed[2][:-1]
    assert joined.endswith(":xy")
    assert [m.split(":")[1] for m in chat] == ["1", "2"]
    for name in ("a", "b", "c"):  # closing the channel closes every instance's channel
        assert recorder.closed[name].wait(WAIT)
        with pytest.raises(ValueError, match="closed channel"):
            recorder.channels[name].unary_unary(f"/{SERVICE}/Hello")(b"x")
    with pytest.raises(ValueError, match="closed channel"):
        stub.Hello("after")


def test_a_server_stopped_mid_run_fails_no_call(greeters: Any) -> None:
    a, victim, c = greeters("a", "victim", "c", hold=("victim",))
    recorder = Recorder(channel_factory())
    instancer = FixedInstancer([a.instance, victim.instance, c.instance])
    retried: list[Exception] = []
    channel = Channel(instancer, recorder, callback=lambda attempt, error: retried.append(error))
    stub = GreeterStub(channel)
    failures: list[BaseException] = []
    answers: Counter[str] = Counter()
    held: list[str] = []
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                answers[stub.Hello("hi", timeout=WAIT).split(":")[0]] += 1
            except BaseException as exc:
                failures.append(exc)

    def hold() -> None:  # Hello("hold") until the victim holds one (the others answer at once)
        while not victim.holding.is_set():
            held.append(stub.Hello("hold", timeout=WAIT))

    workers = [threading.Thread(target=work, name=f"test-worker-{i}") for i in range(3)]
    holder = threading.Thread(target=hold, name="test-holder")
    for thread in [*workers, holder]:
        thread.start()
    try:
        assert victim.holding.wait(WAIT)
        victim.stop()  # with a call in flight; it stays discovered a while
        before = sum(answers.values())
        deadline = time.monotonic() + WAIT
        while sum(answers.values()) < before + 50:
            assert not failures, failures
            assert time.monotonic() < deadline, "the clients stalled"
            holder.join(0.01)
        assert instancer.set([a.instance, c.instance])  # its deregistration arrives
        assert recorder.closed["victim"].wait(WAIT), "the stopped instance's channel stayed open"
    finally:
        stop.set()
        for thread in [*workers, holder]:
            thread.join(WAIT)
        channel.close()
    assert not failures, failures
    assert held[-1] in {"a:hold", "c:hold"}  # the held call was made again elsewhere
    assert retried and all(e.code() == grpc.StatusCode.UNAVAILABLE for e in retried)
    assert answers["a"] > 0 and answers["c"] > 0
    with pytest.raises(ValueError, match="closed channel"):
        recorder.channels["victim"].unary_unary(f"/{SERVICE}/Hello")(b"x")


def test_statuses_and_failures_reach_the_balancer(greeters: Any) -> None:
    a, b = greeters("a", "b", hold=("a", "b"))
    balancers: list[Watching] = []
    instancer = FixedInstancer([a.instance, b.instance])
    with Channel(instancer, balancer=watching(balancers)) as channel:
        stub = GreeterStub(channel)
        with pytest.raises(grpc.RpcError) as answer:
            stub.Hello("fail:NOT_FOUND", timeout=WAIT)
        assert answer.value.code() == grpc.StatusCode.NOT_FOUND  # an answer: as it is
        assert balancers[0].counts() == {"a": (1, 0), "b": (0, 0)}
        with pytest.raises(RetryError) as unavailable:
            stub.Hello("fail:UNAVAILABLE", timeout=WAIT)
        codes = [e.code() for e in unavailable.value.exceptions]
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 3
        assert a.count("Hello") + b.count("Hello") == 4
        assert sum(f for _, f in balancers[0].counts().values()) == 3
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            stub.Hello("hold", timeout=0.2)  # the timeout covers every attempt
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        assert sum(f for _, f in balancers[0].counts().values()) == 4
        a.release.set()
        b.release.set()


def test_a_leaving_instance_keeps_its_channel_until_its_stream_ends(greeters: Any) -> None:
    a, b = greeters("a", "b")
    recorder = Recorder(channel_factory())
    instancer = FixedInstancer([a.instance])
    with Channel(instancer, recorder) as channel:
        stub = GreeterStub(channel)
        stream = stub.Count("hold", timeout=WAIT)
        assert next(stream) == "a0"
        assert a.holding.wait(WAIT)
        assert instancer.set([b.instance])  # a leaves while its stream runs
        assert stub.Hello("hi", timeout=WAIT) == "b:hi"
        assert not recorder.closed["a"].is_set(), "closed under a stream still running"
        a.release.set()
        assert list(stream) == ["a1"]
        assert recorder.closed["a"].wait(WAIT), "a's channel stayed open after its stream"
        assert not recorder.closed["b"].is_set()


def test_a_call_waits_for_an_instance_only_when_asked(greeters: Any) -> None:
    (a,) = greeters("a")
    instancer = FixedInstancer([])
    endpointers: list[Endpointer[Any]] = []

    def balancer(endpointer: Endpointer[Any]) -> RoundRobin[Any]:
        endpointers.append(endpointer)
        return RoundRobin(endpointer)

    with Channel(instancer, balancer=balancer) as channel:
        stub = GreeterStub(channel)
        started = time.monotonic()
        with pytest.raises(NoEndpointsError, match="without waiting"):
            stub.Hello("hi")  # gRPC's default: fail fast
        assert time.monotonic() - started < 1
        with pytest.raises(NoEndpointsError, match=r"within 0\.2 s"):
            stub.Hello("hi", timeout=0.2)
        assert 0.2 <= time.monotonic() - started < 3
        got: list[object] = []

        def call() -> None:
            try:
                got.append(stub.Hello("waited", wait_for_ready=True))
            except BaseException as exc:
                got.append(exc)

        waiter = threading.Thread(target=call, name="test-waiter")
        waiter.start()
        notifier = endpointers[0]._cache.notifier
        deadline = time.monotonic() + WAIT
        while not notifier._cond._waiters and not got:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the call did not wait"
            waiter.join(0.005)
        assert got == []
        assert instancer.set([a.instance])
        waiter.join(WAIT)
        assert got == ["a:waited"]


def test_tls_channels_check_the_service_name(greeters: Any, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=greeter.test"),
            *("-addext", "subjectAltName=DNS:greeter.test"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    (a,) = greeters("a", tls=(key.read_bytes(), cert.read_bytes()))
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    instancer = FixedInstancer([a.instance])
    named = channel_factory(credentials=credentials, server_name="greeter.test")
    with Channel(instancer, named) as channel:
        assert GreeterStub(channel).Hello("secure", timeout=WAIT) == "a:secure"
    unnamed = channel_factory(credentials=credentials)  # the certificate names no IP address
    with Channel(instancer, unnamed) as channel, pytest.raises(RetryError) as refused:
        GreeterStub(channel).Hello("secure", timeout=WAIT)
    assert all(e.code() == grpc.StatusCode.UNAVAILABLE for e in refused.value.exceptions)
    assert a.count("Hello") == 1


def test_bad_arguments_are_refused(greeters: Any) -> None:
    greeters()
    instancer = FixedInstancer([])
    with pytest.raises(ValueError, match="max_attempts"):
        Channel(instancer, max_attempts=0)
    with pytest.raises(ValueError, match=r"grpc\.StatusCode"):
        Channel(instancer, retry_codes=["UNAVAILABLE"])
    with pytest.raises(TypeError, match="Instancer or a backend URL"):
        Channel(object())  # type: ignore[arg-type]


# -- grpc.aio ---------------------------------------------------------------------------------


async def test_aio_channel_balances_retries_and_closes_on_its_loop(greeters: Any) -> None:
    a, victim, c = greeters("a", "victim", "c", hold=("victim",))
    recorder = Recorder(aio_channel_factory())
    instancer = FixedInstancer([a.instance, victim.instance, c.instance])
    async with AioChannel(instancer, recorder, balancer=RoundRobin) as channel:
        stub = GreeterStub(channel)
        answers = await asyncio.gather(*(stub.Hello("hi", timeout=WAIT) for _ in range(30)))
        assert Counter(x.split(":")[0] for x in answers) == {"a": 10, "victim": 10, "c": 10}

        async def hold() -> str:
            while True:
                answer: str = await stub.Hello("hold", timeout=WAIT)
                if victim.holding.is_set():
                    return answer

        held = asyncio.create_task(hold())
        assert await asyncio.to_thread(victim.holding.wait, WAIT)
        await asyncio.to_thread(victim.stop)
        after = await asyncio.gather(*(stub.Hello("hi", timeout=WAIT) for _ in range(30)))
        assert {x.split(":")[0] for x in after} == {"a", "c"}  # none failed
        assert await held in {"a:hold", "c:hold"}
        assert await asyncio.to_thread(instancer.set, [a.instance, c.instance])
        assert await asyncio.to_thread(recorder.closed["victim"].wait, WAIT)
        with pytest.raises(grpc.aio.UsageError):  # closed, on this loop
            await recorder.channels["victim"].unary_unary(f"/{SERVICE}/Hello")(b"x")
    for name in ("a", "c"):
        assert recorder.closed[name].is_set()


async def test_aio_streams_and_statuses(greeters: Any) -> None:
    a, b = greeters("a", "b")
    balancers: list[Watching] = []
    instancer = FixedInstancer([a.instance, b.instance])
    async with AioChannel(instancer, balancer=watching(balancers)) as channel:
        stub = GreeterStub(channel)
        streamed = [m async for m in stub.Count("3", timeout=WAIT)]
        assert len(streamed) == 3

        async def requests() -> AsyncIterator[str]:
            for text in ("x", "y"):
                yield text

        assert (await stub.Join(requests(), timeout=WAIT)).endswith(":xy")
        chat = [m async for m in stub.Chat(iter(["1", "2"]), timeout=WAIT)]
        assert [m.split(":")[1] for m in chat] == ["1", "2"]
        with pytest.raises(grpc.RpcError) as answer:
            await stub.Hello("fail:NOT_FOUND", timeout=WAIT)
        assert answer.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(RetryError) as unavailable:
            await stub.Hello("fail:UNAVAILABLE", timeout=WAIT)
        assert len(unavailable.value.exceptions) == 3
        counts = balancers[0].counts()
        assert sum(s for s, _ in counts.values()) == 4 and sum(f for _, f in counts.values()) == 3
    instancer.set([])
    async with AioChannel(instancer) as empty:
        with pytest.raises(NoEndpointsError, match=r"within 0\.2 s"):
            await GreeterStub(empty).Hello("hi", timeout=0.2)


# -- the extra ----------------------------------------------------------------------------------


def test_without_grpcio_the_import_names_the_extra_to_install() -> None:
    code = "import sys; sys.modules['grpc'] = None; import sd_core.grpc"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert 'pip install "sd-core[grpc]"' in result.stderr
    assert "During handling" not in result.stderr


def test_the_public_surface_is_sorted_documented_and_in_the_docs() -> None:
    import inspect

    import sd_core.grpc

    public = sd_core.grpc.__all__
    assert public == sorted(public, key=lambda name: (not name[:1].isupper(), name))
    docs = (Path(__file__).resolve().parent.parent / "docs" / "calling.md").read_text()
    for name in public:
        assert inspect.getdoc(getattr(sd_core.grpc, name)), name
        assert f"`sd_core.grpc.{name}" in docs, f"{name} is not in docs/calling.md"
