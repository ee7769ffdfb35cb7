"""Network plumbing shared by the local venue simulators (Express Relay and Fusion+).

Both simulators serve a WebSocket feed (trio-websocket) and a small HTTP API (hypercorn) on
loopback, and both break on purpose. This module holds what they have in common:

- `FaultStream` / `FaultListener`: a TCP stream whose sends can be stalled and which can be
  reset, and the listener handing such streams out. Faults live *under* trio-websocket, in the
  byte stream, so a stall really stops every byte (pongs included) and a drop really is a TCP
  reset with no close frame.
- `SimPeer`: one accepted WebSocket: its bounded outbound queue, writer, abrupt drop, and the
  rule that when any of its loops ends the whole connection ends.
- `start_servers`: start the WebSocket server on a `FaultListener` and a hypercorn HTTP app, and
  return their URLs.
- `AsgiApp`: a small ASGI base (lifespan, request body, response) whose subclasses only write
  `route(scope, body) -> (status, payload)`.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import socket
import struct
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs
import orjson
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from trio_websocket import ConnectionClosed, WebSocketServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
    from trio_websocket import WebSocketConnection, WebSocketRequest

__all__ = [
    "CONNECTION_GONE",
    "AsgiApp",
    "FaultListener",
    "FaultStream",
    "RawBody",
    "SimPeer",
    "SimServers",
    "acknowledge_lifespan",
    "start_servers",
]

_log = structlog.get_logger(__name__)
_STREAM_IDS: Final = itertools.count(1)
# Errors that just mean "this connection is gone"; anything else is a simulator bug.
CONNECTION_GONE: Final = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)
_MAX_MESSAGE: Final = 64 * 1024 * 1024
_TEXT: Final = b"text/plain; charset=utf-8"
_JSON: Final = b"application/json"

Headers = tuple[tuple[bytes, bytes], ...]


# ---------------------------------------------------------------------------------- streams


class FaultStream(trio.abc.Stream):
    """A TCP stream wrapper whose sends can be paused (stall) and which can be reset (drop).

    Its `repr` (`name`) is unique: trio-websocket reports it as `request.remote` for non-socket
    streams, which is how a simulator finds the stream behind a WebSocket request.
    """

    def __init__(self, inner: trio.SocketStream, name: str) -> None:
        self._inner = inner
        self._name = name
        self._resume = trio.Event()
        self._resume.set()

    def __repr__(self) -> str:
        return self._name

    @property
    def stalled(self) -> bool:
        """True while sends are paused."""
        return not self._resume.is_set()

    def stall(self) -> None:
        """Pause every send (frames and pongs) until `resume`."""
        if not self.stalled:
            self._resume = trio.Event()

    def resume(self) -> None:
        """Let paused sends continue."""
        self._resume.set()

    def reset(self) -> None:
        """Drop the TCP connection at once with an RST (no close frame, no FIN handshake)."""
        sock = self._inner.socket
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # trio's close() wakes every task blocked on this socket with ClosedResourceError.
        sock.close()
        self._resume.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send, waiting first while stalled."""
        await self._resume.wait()
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Delegate to the TCP stream."""
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Delegate to the TCP stream."""
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Close the TCP stream."""
        self._resume.set()
        await self._inner.aclose()


class FaultListener(trio.abc.Listener[FaultStream]):
    """Accepts TCP connections and hands them out wrapped in `FaultStream`.

    `label` names the streams (`<LABEL-stream N>`), so logs tell the simulators apart.
    """

    def __init__(self, inner: trio.SocketListener, label: str = "sim") -> None:
        self._inner = inner
        self._label = label
        self.streams: dict[str, FaultStream] = {}
        self.port: int = inner.socket.getsockname()[1]

    async def accept(self) -> FaultStream:
        """Accept one connection and remember its stream by `repr` until a handler claims it."""
        name = f"<{self._label}-stream {next(_STREAM_IDS)}>"
        stream = FaultStream(await self._inner.accept(), name)
        self.streams[name] = stream
        return stream

    async def aclose(self) -> None:
        """Stop listening."""
        await self._inner.aclose()


# ------------------------------------------------------------------------------------ peers


class SimPeer:
    """One accepted WebSocket on a simulator: its outbound queue, writer and fault switches.

    `label` prefixes its log events (`<label>_lagging`, `<label>_dropped`). `queue` bounds the
    outbound frames: a reader that far behind is dropped, like a server dropping a slow reader.
    """

    def __init__(
        self,
        peer_id: int,
        ws: WebSocketConnection,
        stream: FaultStream | None,
        queue: int,
        *,
        label: str,
    ) -> None:
        self.peer_id = peer_id
        self.ws = ws
        self.stream = stream
        self.closed = False
        self.cancel_scope = trio.CancelScope()
        #: The nursery of this peer's loops while it runs (`run`); tasks of the peer go there.
        self.nursery: trio.Nursery | None = None
        self._label = label
        self._out_send, self._out_recv = trio.open_memory_channel[str | bytes](queue)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.peer_id}>"

    @property
    def stalled(self) -> bool:
        """True while this peer's stream is stalled."""
        return self.stream is not None and self.stream.stalled

    def push(self, frame: str | bytes) -> None:
        """Queue one frame (`str`: text frame, `bytes`: binary); a full queue drops the peer."""
        if self.closed:
            return
        try:
            self._out_send.send_nowait(frame)
        except trio.WouldBlock:
            _log.info(f"{self._label}_lagging", peer=self.peer_id)
            self.drop("lagging")

    def drop(self, why: str) -> None:
        """End the connection abruptly (TCP reset, no close frame)."""
        if self.closed:
            return
        self.closed = True
        _log.info(f"{self._label}_dropped", peer=self.peer_id, why=why)
        if self.stream is not None:
            self.stream.reset()
        self.cancel_scope.cancel()

    async def write_loop(self) -> None:
        """Send queued frames in order until the connection ends."""
        async for frame in self._out_recv:
            await self.ws.send_message(frame)

    async def guard(self, loop: Callable[[], Awaitable[object]]) -> None:
        """Run one of the peer's loops; when it ends (peer gone, dropped), the whole peer ends."""
        try:
            await loop()
        except CONNECTION_GONE:
            pass
        finally:
            self.cancel_scope.cancel()

    async def run(
        self, read_loop: Callable[[], Awaitable[object]], *loops: Callable[[], Awaitable[object]]
    ) -> None:
        """Run the writer, `loops` and `read_loop` until any of them ends; then it is closed."""
        try:
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    # The nursery is visible before any loop runs: the read loop and the fault
                    # switches start the peer's tasks in it.
                    self.nursery = nursery
                    nursery.start_soon(self.guard, self.write_loop)
                    for loop in loops:
                        nursery.start_soon(self.guard, loop)
                    await self.guard(read_loop)
        finally:
            self.closed = True


# ---------------------------------------------------------------------------------- servers


@attrs.frozen
class SimServers:
    """Where a simulator's servers listen: its fault-injecting listener and both URLs."""

    listener: FaultListener
    ws_url: str
    http_url: str


async def start_servers(
    nursery: trio.Nursery,
    *,
    host: str,
    ws_port: int,
    http_port: int,
    ws_path: str,
    label: str,
    serve_ws: Callable[[WebSocketRequest, FaultStream | None], Awaitable[None]],
    http_app: AsgiApp,
    internal_errors: list[BaseException],
) -> SimServers:
    """Start a WebSocket server (on a `FaultListener`) and a hypercorn HTTP app in `nursery`.

    `serve_ws(request, stream)` gets each WebSocket request with the `FaultStream` under it. A
    peer going away ends it quietly; any other exception is a simulator bug: it is appended to
    `internal_errors` and logged (`<label>_handler_crashed`), and never stops the server.
    Returns once both servers accept connections.
    """
    inner = (await trio.open_tcp_listeners(ws_port, host=host))[0]
    listener = FaultListener(inner, label.replace("_", "-"))

    async def handle(request: WebSocketRequest) -> None:
        stream = listener.streams.pop(str(request.remote), None)
        try:
            await serve_ws(request, stream)
        except CONNECTION_GONE:
            pass
        except Exception as exc:  # a simulator bug must never take the whole server down
            internal_errors.append(exc)
            _log.exception(f"{label}_handler_crashed")

    server = WebSocketServer(
        handle,
        [listener],  # type: ignore[list-item]  # any trio Listener works at runtime
        max_message_size=_MAX_MESSAGE,
        connect_timeout=10,
        disconnect_timeout=5,
    )
    await nursery.start(server.run)
    config = HypercornConfig()
    config.bind = [f"{host}:{http_port}"]
    config.accesslog = None
    config.errorlog = None
    # Long idle keep-alive: under a jumping test clock a 5 s timeout races reused connections.
    config.keep_alive_timeout = 300
    binds: list[str] = await nursery.start(partial(hypercorn_serve, http_app, config, mode="asgi"))
    return SimServers(listener, f"ws://{host}:{listener.port}{ws_path}", binds[0])


# ------------------------------------------------------------------------------------- ASGI


@attrs.frozen
class RawBody:
    """A response body sent as is, with its content type and any extra headers."""

    data: bytes
    content_type: bytes
    headers: Headers = ()


class AsgiApp(abc.ABC):
    """A small ASGI app: acknowledges lifespan, reads the request body, answers `route`.

    Subclasses write `route(scope, body) -> (status, payload)`. The payload is sent as JSON
    (orjson), except `bytes` (plain text) and `RawBody` (as given). `headers` go on every
    response. WebSocket scopes are refused (hypercorn closes the connection).
    """

    headers: ClassVar[Headers] = ()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """ASGI entry point (HTTP and lifespan)."""
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            if event["type"] != "http.request":
                return  # the client went away before the request was complete
            body += event["body"]
            if not event["more_body"]:
                break
        status, payload = self.route(scope, body)
        if isinstance(payload, RawBody):
            data, content_type, extra = payload.data, payload.content_type, payload.headers
        elif isinstance(payload, bytes):
            data, content_type, extra = payload, _TEXT, ()
        else:
            data, content_type, extra = orjson.dumps(payload), _JSON, ()
        headers: Sequence[tuple[bytes, bytes]] = [
            *extra,
            (b"content-type", content_type),
            (b"content-length", str(len(data)).encode()),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data, "more_body": False})

    @abc.abstractmethod
    def route(self, scope: HTTPScope, body: bytes) -> tuple[int, Any]:
        """Answer one request: its status and payload (JSON value, text bytes or `RawBody`)."""


async def acknowledge_lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Acknowledge hypercorn's lifespan startup and shutdown; there is nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
