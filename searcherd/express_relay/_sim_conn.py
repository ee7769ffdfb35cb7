"""Transport pieces of the Express Relay simulator: a stream that can stall or drop, and one
simulated WebSocket connection (outbound queue, writer, protocol pings).

trio-websocket owns the WebSocket protocol; faults are injected *under* it, in the byte stream,
so a stall really stops every byte (pongs included) and a drop really is a TCP reset.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
from typing import TYPE_CHECKING, Final

import structlog
import trio
from trio_websocket import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_websocket import WebSocketConnection

__all__ = ["FaultListener", "FaultStream", "SimConnection"]

log = structlog.get_logger(__name__)
_STREAM_IDS: Final = itertools.count(1)
# Errors that just mean "this connection is gone"; anything else is a simulator bug.
CONNECTION_GONE: Final = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


class FaultStream(trio.abc.Stream):
    """A TCP stream wrapper whose sends can be paused (stall) and which can be reset (drop).

    Its ``repr`` is unique; trio-websocket reports it as ``request.remote`` for non-socket
    streams, which is how the simulator finds the stream behind a WebSocket request.
    """

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self._name = f"<er-sim-stream {next(_STREAM_IDS)}>"
        self._resume = trio.Event()
        self._resume.set()

    def __repr__(self) -> str:
        return self._name

    @property
    def stalled(self) -> bool:
        """True while sends are paused."""
        return not self._resume.is_set()

    def stall(self) -> None:
        """Pause every send (frames and pongs) until :meth:`resume`."""
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
    """Accepts TCP connections and hands them out wrapped in :class:`FaultStream`."""

    def __init__(self, inner: trio.SocketListener) -> None:
        self._inner = inner
        self.streams: dict[str, FaultStream] = {}
        self.port: int = inner.socket.getsockname()[1]

    async def accept(self) -> FaultStream:
        """Accept one connection and remember its stream by ``repr``."""
        stream = FaultStream(await self._inner.accept())
        self.streams[repr(stream)] = stream
        return stream

    async def aclose(self) -> None:
        """Stop listening."""
        await self._inner.aclose()


class SimConnection:
    """Server-side state of one accepted WebSocket (subscriptions, bids, outbound queue)."""

    def __init__(
        self,
        conn_id: int,
        ws: WebSocketConnection,
        stream: FaultStream | None,
        *,
        api_key: str | None,
        profile_id: str | None,
        event_buffer: int,
    ) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.stream = stream
        self.api_key = api_key
        self.profile_id = profile_id
        self.subscriptions: set[str] = set()
        self.bid_ids: set[str] = set()
        self.closed = False
        self.cancel_scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        # Bounded like the server's broadcast buffer: a reader this far behind gets dropped.
        self._out_send, self._out_recv = trio.open_memory_channel[str | bytes](event_buffer)

    def __repr__(self) -> str:
        return f"<SimConnection {self.conn_id} profile={self.profile_id}>"

    def push(self, frame: str | bytes) -> None:
        """Queue one frame (``str`` -> text frame, ``bytes`` -> binary); a full queue means the client lags, so it is dropped."""
        if self.closed:
            return
        try:
            self._out_send.send_nowait(frame)
        except trio.WouldBlock:
            log.info("er_sim_connection_lagging", conn=self.conn_id)
            self.drop("lagging")

    def drop(self, why: str) -> None:
        """End the connection abruptly (TCP reset, no close frame)."""
        if self.closed:
            return
        self.closed = True
        log.info("er_sim_connection_dropped", conn=self.conn_id, why=why)
        if self.stream is not None:
            self.stream.reset()
        self.cancel_scope.cancel()

    async def write_loop(self) -> None:
        """Send queued frames in order until the connection ends."""
        async for frame in self._out_recv:
            await self.ws.send_message(frame)

    async def ping_loop(self, interval: float, is_key_valid: Callable[[str], bool]) -> None:
        """Ping now and every ``interval``; drop if the previous ping got no pong by the tick.

        Also re-checks the API key at each tick, like the server (revoked key -> dropped).
        """
        assert self.nursery is not None
        payloads = itertools.count()
        pong: trio.Event | None = None
        while True:
            stalled = self.stream is not None and self.stream.stalled
            if pong is not None and not pong.is_set() and not stalled:
                self.drop("no_pong")
                return
            if self.api_key is not None and not is_key_valid(self.api_key):
                self.drop("token_revoked")
                return
            # A stalled server sends nothing, pings included, and therefore expects no pong.
            pong = None if stalled else trio.Event()
            if pong is not None:
                self.nursery.start_soon(self._ping_once, str(next(payloads)).encode(), pong)
            await trio.sleep(interval)

    async def _ping_once(self, payload: bytes, pong: trio.Event) -> None:
        try:
            await self.ws.ping(payload)
        except CONNECTION_GONE:
            return
        pong.set()
