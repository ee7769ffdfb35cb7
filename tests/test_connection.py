"""Tests for searcherd.connection and searcherd.transport against real local WebSocket servers."""

from __future__ import annotations

import contextlib
import functools
import random
import socket as stdlib_socket
import ssl
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
import trustme
from structlog.testing import capture_logs
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)
from trio_websocket import _impl as ws_impl

from searcherd.connection import (
    Connection,
    ConnectionSettings,
    Link,
    NotConnected,
)
from searcherd.transport import (
    HandshakeRejected,
    Socket,
    SocketClosed,
    WebSocketTransport,
    redact_url,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence

SECRET = "s3cr3t-token-value"


class _MaxRandom(random.Random):
    """Always draws just under 1, so every backoff delay is (almost) its cap."""

    def random(self) -> float:
        return 0.999999


class Server:
    """A scriptable trio-websocket server on 127.0.0.1: ``script(request, n)`` handles the n-th
    connection (1-based). Records request headers and the close reasons the server saw."""

    def __init__(self, script: Callable[[WebSocketRequest, int], Awaitable[None]]) -> None:
        self.script = script
        self.count = 0
        self.headers: list[dict[str, str]] = []
        self.closes: list[CloseReason | None] = []
        self.port = 0

    async def handle(self, request: WebSocketRequest) -> None:
        self.count += 1
        self.headers.append({k.decode().lower(): v.decode() for k, v in request.headers})
        try:
            await self.script(request, self.count)
        except ConnectionClosed as exc:
            self.closes.append(exc.reason)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"


async def start_server(
    nursery: trio.Nursery,
    script: Callable[[WebSocketRequest, int], Awaitable[None]],
    ssl_context: ssl.SSLContext | None = None,
) -> Server:
    """Start a Server on an ephemeral port."""
    server = Server(script)
    ws_server = await nursery.start(serve_websocket, server.handle, "127.0.0.1", 0, ssl_context)
    server.port = ws_server.port
    return server


async def feed(request: WebSocketRequest, n: int) -> None:
    """Accept, send "hello <n>", then answer every message with "ack:<msg>" until closed."""
    ws = await request.accept()
    await ws.send_message(f"hello {n}")
    while True:
        msg = await ws.get_message()
        await ws.send_message(f"ack:{msg!s}")


async def wait_closed(ws: WebSocketConnection) -> None:
    """Drain until the client closes, so the server records the close reason."""
    while True:
        await ws.get_message()


async def greet_then_wait(request: WebSocketRequest, n: int) -> None:
    """Accept, send "hello <n>", then stay quiet until the client closes."""
    ws = await request.accept()
    await ws.send_message(f"hello {n}")
    await wait_closed(ws)


class Recorder:
    """Collects frames and link events of one Connection."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.links: list[Link] = []
        self.disconnects: list[BaseException | None] = []
        self.got_frame = trio.Event()

    def on_message(self, frame: str | bytes, received_at: float) -> None:
        assert received_at <= trio.current_time()
        self.frames.append(frame)
        self.got_frame.set()

    async def on_connected(self, link: Link) -> None:
        self.links.append(link)
        await trio.lowlevel.checkpoint()

    def on_disconnected(self, error: BaseException | None) -> None:
        self.disconnects.append(error)

    async def wait_frames(self, count: int) -> None:
        while len(self.frames) < count:
            self.got_frame = trio.Event()
            await self.got_frame.wait()


def make(
    url: str,
    rec: Recorder,
    *,
    transport: Any = None,
    on_connected: Callable[[Link], Awaitable[None]] | None = None,
    on_message: Callable[[str | bytes, float], None] | None = None,
    after_message: Callable[[], Awaitable[None]] | None = None,
    **overrides: Any,
) -> Connection:
    """A Connection with a deterministic (maximal) backoff draw."""
    settings = ConnectionSettings(url, **overrides)
    return Connection(
        "test",
        settings,
        on_message=on_message or rec.on_message,
        on_connected=on_connected or rec.on_connected,
        on_disconnected=rec.on_disconnected,
        after_message=after_message,
        transport=transport,
        rng=_MaxRandom(),
    )


async def until(predicate: Callable[[], bool]) -> None:
    """Poll (in virtual time) until ``predicate`` holds."""
    while not predicate():  # noqa: ASYNC110 - polls plain state in virtual time; no event exists
        await trio.sleep(0.01)


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    """The captured log entries named ``name``."""
    return [entry for entry in logs if entry["event"] == name]


async def test_receives_frames_sends_headers_and_becomes_healthy(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Frames reach on_message, headers reach the server, and health turns healthy."""
    server = await start_server(nursery, feed)
    rec = Recorder()
    conn = make(server.url, rec, headers=(("Authorization", f"Bearer {SECRET}"),))
    assert not conn.health.connected
    with pytest.raises(NotConnected):
        await conn.send("early")
    nursery.start_soon(conn.run)
    await conn.wait_healthy()
    await conn.send("ping-app")
    await rec.wait_frames(2)
    assert rec.frames == ["hello 1", "ack:ping-app"]
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"
    health = conn.health
    assert health.connected
    assert health.healthy
    assert health.reconnects == 0
    assert health.generation == 1
    assert health.last_message_at is not None
    assert SECRET not in repr(conn.settings)


async def test_reconnects_after_abrupt_tcp_close(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that drops TCP without a close frame is reconnected to."""

    async def script(request: WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        await ws.send_message(f"hello {n}")
        if n == 1:
            await trio.aclose_forcefully(ws._stream)
            return
        await wait_closed(ws)

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(server.url, rec)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await rec.wait_frames(2)
    assert rec.frames == ["hello 1", "hello 2"]
    assert conn.health.reconnects == 1
    lost = events(logs, "connection_lost")
    assert lost[0]["kind"] == "closed"
    assert "1006" in lost[0]["reason"]
    assert events(logs, "connection_retry")[0]["delay"] > 0
    assert len(rec.disconnects) == 1
    assert isinstance(rec.disconnects[0], SocketClosed)


async def test_reconnects_after_going_away_close(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Close code 1001 from the server ends the link and a new one is opened."""

    async def script(request: WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        await ws.send_message(f"hello {n}")
        if n == 1:
            await ws.aclose(1001, "restarting")
            return
        await wait_closed(ws)

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(server.url, rec)
    nursery.start_soon(conn.run)
    await rec.wait_frames(2)
    assert conn.health.last_error is not None
    assert "1001" in conn.health.last_error
    assert len(rec.links) == 2
    assert [link.generation for link in rec.links] == [1, 2]
    assert not rec.links[0].alive
    with pytest.raises(NotConnected):
        await rec.links[0].send("too late")


async def test_half_open_server_is_detected_by_ping_timeout(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that goes silent and stops answering pings is dropped after the ping timeout."""
    original = WebSocketConnection._handle_ping_event

    async def stuck(self: WebSocketConnection, event: Any) -> None:
        if self.is_server:
            await trio.sleep_forever()
        await original(self, event)

    monkeypatch.setattr(ws_impl.WebSocketConnection, "_handle_ping_event", stuck)
    server = await start_server(nursery, feed)
    rec = Recorder()
    conn = make(server.url, rec, ping_interval=10, ping_timeout=5, liveness_window=60)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await rec.wait_frames(1)
        start = trio.current_time()
        await until(lambda: server.count >= 2)
    lost = events(logs, "connection_lost")[0]
    assert lost["kind"] == "ping"
    assert 15 <= trio.current_time() - start < 15 + 2 + conn.settings.backoff_initial + 1


async def test_silent_server_is_dropped_after_liveness_window(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """With active pings off, no frame for liveness_window ends the link."""

    server = await start_server(nursery, greet_then_wait)
    rec = Recorder()
    conn = make(server.url, rec, ping_interval=0, liveness_window=20)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await rec.wait_frames(1)
        start = trio.current_time()
        await rec.wait_frames(2)
    assert events(logs, "connection_lost")[0]["kind"] == "liveness"
    assert trio.current_time() - start >= 20


async def test_answered_pings_keep_a_quiet_link_alive(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Pongs count as liveness: a quiet server that answers pings is never dropped."""

    server = await start_server(nursery, greet_then_wait)
    rec = Recorder()
    conn = make(server.url, rec, ping_interval=5, ping_timeout=2, liveness_window=8)
    nursery.start_soon(conn.run)
    await rec.wait_frames(1)
    await trio.sleep(300)
    assert server.count == 1
    assert conn.health.healthy
    assert conn.health.reconnects == 0


async def test_refused_connection_backs_off_exponentially(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Refused TCP connects are retried with growing, capped delays."""
    with stdlib_socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rec = Recorder()
    conn = make(f"ws://127.0.0.1:{port}/", rec, backoff_initial=1, backoff_max=8)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await until(lambda: conn.health.reconnects >= 6)
    delays = [entry["delay"] for entry in events(logs, "connection_retry")][:6]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    failed = events(logs, "connection_failed")[0]
    assert failed["kind"] == "connect"
    assert not conn.health.connected
    assert rec.links == []


async def test_accept_then_close_never_resets_the_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that accepts and closes at once keeps growing the delay; a useful link resets it."""

    async def script(request: WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        if n <= 4:
            await ws.aclose(1011)
            return
        await trio.sleep(1)  # let the setup complete first ...
        await ws.send_message("hello")  # ... then a frame: the link was useful
        await trio.sleep(1)
        await ws.aclose(1001)

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(server.url, rec, backoff_initial=1, backoff_max=30)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await until(lambda: conn.health.reconnects >= 5)
    delays = [entry["delay"] for entry in events(logs, "connection_retry")][:5]
    assert delays == [1.0, 2.0, 4.0, 8.0, 1.0]
    useful = [entry["useful"] for entry in events(logs, "connection_lost")][:5]
    assert useful == [False, False, False, False, True]


async def test_rejected_handshake_is_retried(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An upgrade refused with HTTP 500 is reported and retried with backoff."""

    async def script(request: WebSocketRequest, n: int) -> None:
        if n == 1:
            await request.reject(500, body=b"boom")
            return
        ws = await request.accept()
        await ws.send_message("hello")
        await wait_closed(ws)

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(server.url, rec)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await rec.wait_frames(1)
    failed = events(logs, "connection_failed")[0]
    assert failed["kind"] == "rejected"
    assert "HTTP 500: boom" in failed["reason"]
    assert events(logs, "connection_retry")[0]["delay"] < 1


@pytest.mark.parametrize("status", [401, 403])
async def test_unauthorized_is_logged_clearly_and_retried_slowly(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, status: int
) -> None:
    """401/403 logs connection_unauthorized without secrets and waits unauthorized_retry."""

    async def script(request: WebSocketRequest, n: int) -> None:
        await request.reject(status, body=b'{"error":"Invalid authorization token"}')

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(
        f"{server.url}?key={SECRET}",
        rec,
        headers=(("Authorization", f"Bearer {SECRET}"),),
        unauthorized_retry=60,
    )
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await until(lambda: server.count >= 2)
        elapsed = trio.current_time()
    entry = events(logs, "connection_unauthorized")[0]
    assert entry["status"] == status
    assert entry["url"] == f"ws://127.0.0.1:{server.port}/v1/ws?<redacted>"
    assert entry["retry_in"] == 60
    assert elapsed >= 60
    assert SECRET not in repr(logs)
    assert SECRET not in str(conn.health)


async def test_rate_limited_waits_at_least_the_minimum_or_retry_after(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """429 waits rate_limited_min plus backoff, or Retry-After when that is longer."""

    async def script(request: WebSocketRequest, n: int) -> None:
        headers = [(b"Retry-After", b"45")] if n == 2 else []
        await request.reject(429, extra_headers=headers, body=b"too many")

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(server.url, rec, rate_limited_min=10, backoff_initial=1)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await until(lambda: server.count >= 3)
    waits = [entry["retry_in"] for entry in events(logs, "connection_rate_limited")]
    assert waits[0] == pytest.approx(11.0, abs=0.01)
    assert waits[1] == 45


async def test_untrusted_certificate_fails_fast_as_tls_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An untrusted certificate is reported as a TLS failure at once, not after connect_timeout."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server = await start_server(nursery, feed, server_ctx)
    rec = Recorder()
    conn = make(
        f"wss://127.0.0.1:{server.port}/",
        rec,
        transport=WebSocketTransport(ssl_context=ssl.create_default_context()),
        connect_timeout=10,
    )
    with capture_logs() as logs:
        start = trio.current_time()
        nursery.start_soon(conn.run)
        await until(lambda: conn.health.last_error is not None)
    assert trio.current_time() - start < 1
    assert events(logs, "connection_failed")[0]["kind"] == "tls"
    assert conn.health.last_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in conn.health.last_error


async def test_trusted_certificate_connects_over_wss(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """With the CA trusted, wss:// connects and frames flow."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    server = await start_server(nursery, feed, server_ctx)
    rec = Recorder()
    conn = make(
        f"wss://127.0.0.1:{server.port}/",
        rec,
        transport=WebSocketTransport(ssl_context=client_ctx),
    )
    nursery.start_soon(conn.run)
    await conn.wait_healthy()
    await conn.send("x")
    await rec.wait_frames(2)
    assert rec.frames == ["hello 1", "ack:x"]


async def test_setup_failure_drops_the_link_and_retries(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """on_connected raising, then timing out, drops the link each time; the third try works."""
    server = await start_server(nursery, feed)
    rec = Recorder()
    calls = 0

    async def on_connected(link: Link) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("resubscribe broke")
        if calls == 2:
            await trio.sleep_forever()
        rec.links.append(link)

    conn = make(server.url, rec, on_connected=on_connected, setup_timeout=7)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await conn.wait_healthy()
    reasons = [entry["reason"] for entry in events(logs, "connection_lost")]
    assert reasons[0] == "setup: on_connected raised RuntimeError: resubscribe broke"
    assert reasons[1] == "setup: on_connected did not finish within 7s"
    assert events(logs, "connection_setup_failed")[0]["exc_info"] is True
    assert conn.health.generation == 3
    assert conn.health.reconnects == 2


async def test_frames_flow_while_on_connected_awaits_a_response(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """on_connected can send a request and await its response: the reader runs meanwhile."""
    server = await start_server(nursery, feed)
    rec = Recorder()
    subscribed = trio.Event()
    healthy_during_setup: list[bool] = []

    def on_message(frame: str | bytes, received_at: float) -> None:
        rec.on_message(frame, received_at)
        if frame == "ack:subscribe":
            subscribed.set()

    conn: Connection

    async def on_connected(link: Link) -> None:
        await link.send("subscribe")
        await subscribed.wait()
        healthy_during_setup.append(conn.health.healthy)

    conn = make(server.url, rec, on_connected=on_connected, on_message=on_message)
    nursery.start_soon(conn.run)
    await conn.wait_healthy()
    assert rec.frames == ["hello 1", "ack:subscribe"]
    assert healthy_during_setup == [False]
    assert conn.health.healthy


async def test_on_message_error_is_logged_and_reading_continues(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A raising on_message is logged with context and the next frames still arrive."""
    server = await start_server(nursery, feed)
    rec = Recorder()

    def on_message(frame: str | bytes, received_at: float) -> None:
        if frame == "hello 1":
            raise ValueError("venue bug")
        rec.on_message(frame, received_at)

    conn = make(server.url, rec, on_message=on_message)
    with capture_logs() as logs:
        nursery.start_soon(conn.run)
        await conn.wait_healthy()
        await conn.send("after")
        await rec.wait_frames(1)
    assert rec.frames == ["ack:after"]
    failed = events(logs, "connection_on_message_failed")[0]
    assert failed["frame"] == "hello 1"
    assert failed["exc_info"] is True
    assert conn.health.handler_errors == 1
    assert conn.health.reconnects == 0


async def test_cancellation_closes_promptly_with_a_close_frame(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Cancelling run() sends a normal close to the server and returns within disconnect_timeout."""

    server = await start_server(nursery, greet_then_wait)
    rec = Recorder()
    conn = make(server.url, rec)
    async with trio.open_nursery() as inner:
        inner.start_soon(conn.run)
        await conn.wait_healthy()
        start = trio.current_time()
        inner.cancel_scope.cancel()
    assert trio.current_time() - start <= conn.settings.disconnect_timeout
    await until(lambda: bool(server.closes))
    assert server.closes[0] is not None
    assert server.closes[0].code == 1000
    assert rec.disconnects == [None]
    assert not conn.health.connected


async def test_cancelled_run_stops_and_can_be_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """run() exits on cancellation, and the same Connection can run again afterwards."""
    async with trio.open_nursery() as servers:
        server = await start_server(servers, feed)
        rec = Recorder()
        conn = make(server.url, rec)
        for _ in range(2):
            with trio.move_on_after(5):
                await conn.run()
        assert conn.health.generation == 2
        assert rec.frames == ["hello 1", "hello 2"]
        servers.cancel_scope.cancel()


async def test_oversized_frame_closes_1009_and_reconnects(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A frame over max_message_size closes the link with 1009; a new link follows."""

    async def script(request: WebSocketRequest, n: int) -> None:
        ws = await request.accept()
        await ws.send_message("x" * 5000 if n == 1 else "small")
        await wait_closed(ws)

    server = await start_server(nursery, script)
    rec = Recorder()
    conn = make(server.url, rec, max_message_size=1000)
    nursery.start_soon(conn.run)
    await rec.wait_frames(1)
    assert rec.frames == ["small"]
    assert server.closes[0] is not None
    assert server.closes[0].code == 1009
    assert conn.health.last_error is not None
    assert "1009" in conn.health.last_error


class _MemorySocket:
    """A Socket over trio memory channels: what the test sends is what the client reads."""

    def __init__(self) -> None:
        self.to_client, self._inbox = trio.open_memory_channel[str | bytes](16)
        self._outbox, self.from_client = trio.open_memory_channel[str | bytes](16)

    async def get_message(self) -> str | bytes:
        try:
            return await self._inbox.receive()
        except trio.EndOfChannel:
            raise SocketClosed(1000, "test closed") from None

    async def send_message(self, data: str | bytes) -> None:
        await self._outbox.send(data)

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()


class _MemoryTransport:
    """A custom transport handing out _MemorySocket instances."""

    def __init__(self) -> None:
        self.sockets: list[_MemorySocket] = []
        self.opened = trio.Event()

    @contextlib.asynccontextmanager
    async def open(
        self, url: str, headers: Sequence[tuple[str, str]], settings: ConnectionSettings
    ) -> AsyncIterator[Socket]:
        sock = _MemorySocket()
        self.sockets.append(sock)
        self.opened.set()
        yield sock


async def test_custom_transport_is_used(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A custom transport plugs in: its frames are received and sends reach it."""
    transport = _MemoryTransport()
    rec = Recorder()
    conn = make("memory://venue", rec, transport=transport)
    nursery.start_soon(conn.run)
    await conn.wait_healthy()
    sock = transport.sockets[0]
    await sock.to_client.send('{"event":"order_created"}')
    await conn.send(b"request")
    await rec.wait_frames(1)
    assert rec.frames == ['{"event":"order_created"}']
    assert await sock.from_client.receive() == b"request"
    await sock.to_client.aclose()
    await until(lambda: len(transport.sockets) == 2)
    assert conn.health.reconnects == 1
    assert isinstance(rec.disconnects[0], SocketClosed)


async def test_after_message_is_awaited_after_each_frame_before_the_next(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """after_message runs once after each frame's on_message, before the next frame is read."""
    transport = _MemoryTransport()
    rec = Recorder()
    order: list[str] = []

    def on_message(frame: str | bytes, received_at: float) -> None:
        order.append(f"msg:{frame!s}")
        rec.on_message(frame, received_at)

    async def after_message() -> None:
        await trio.sleep(1)  # a real wait: a reader that did not await it would read on
        order.append("after")

    conn = make(
        "memory://venue",
        rec,
        transport=transport,
        on_message=on_message,
        after_message=after_message,
    )
    nursery.start_soon(conn.run)
    await conn.wait_healthy()
    sock = transport.sockets[0]
    await sock.to_client.send("1")  # both frames are waiting before the first is read
    await sock.to_client.send("2")
    await until(lambda: order.count("after") == 2)
    assert order == ["msg:1", "after", "msg:2", "after"]


async def test_run_twice_concurrently_is_refused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """One Connection has one run loop; a second concurrent run() raises RuntimeError."""
    transport = _MemoryTransport()
    conn = make("memory://venue", Recorder(), transport=transport)
    nursery.start_soon(conn.run)
    await transport.opened.wait()
    with pytest.raises(RuntimeError, match="already running"):
        await conn.run()


def test_settings_repr_and_validation() -> None:
    """Settings hide secrets in repr and reject nonsense values."""
    settings = ConnectionSettings(
        f"wss://user:pw@host.example/ws?apikey={SECRET}",
        headers=(("Authorization", f"Bearer {SECRET}"),),
    )
    text = repr(settings)
    assert SECRET not in text
    assert "pw" not in text
    assert "'Authorization', '<redacted>'" in text
    assert "wss://host.example/ws?<redacted>" in text
    with pytest.raises(ValueError, match="connect_timeout"):
        ConnectionSettings("ws://x/", connect_timeout=0)
    with pytest.raises(ValueError, match="ping_interval"):
        ConnectionSettings("ws://x/", ping_interval=-1)


async def test_silent_upgrade_times_out_after_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A TCP peer that never answers the upgrade fails the attempt after connect_timeout."""

    async def mute(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, mute, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    conn = make(f"ws://127.0.0.1:{port}/", Recorder(), connect_timeout=3)
    start = trio.current_time()
    nursery.start_soon(conn.run)
    await until(lambda: conn.health.last_error is not None)
    assert trio.current_time() - start == pytest.approx(3, abs=0.1)
    assert conn.health.last_error == "connect: no WebSocket handshake within 3s"


def test_headers_with_line_breaks_are_rejected_without_echoing_the_value() -> None:
    """Header injection is refused; the error names the header but not its value."""
    with pytest.raises(ValueError, match="Authorization") as info:
        ConnectionSettings("ws://x/", headers=[("Authorization", f"Bearer {SECRET}\r\nX: y")])
    assert SECRET not in str(info.value)
    settings = ConnectionSettings("ws://x/", headers=[("A", "b")])
    assert settings.headers == (("A", "b"),)


def test_redact_url_keeps_host_port_and_path() -> None:
    """redact_url drops credentials but keeps what identifies the endpoint."""
    assert redact_url("ws://[::1]:8080/a?b=c") == "ws://[::1]:8080/a?<redacted>"
    assert redact_url("wss://api.example/fusion-plus/ws/v1.2") == (
        "wss://api.example/fusion-plus/ws/v1.2"
    )


def test_handshake_rejected_message() -> None:
    """HandshakeRejected names the status and body."""
    exc = HandshakeRejected(429, "too many", retry_after=5.0)
    assert str(exc) == "HTTP 429: too many"
    assert exc.retry_after == 5.0
