"""Network pieces of the Fusion+ simulator: a TCP stream that can stall or be reset, and one
connected client (outbound queue and writer).

Faults are injected *under* trio-websocket, in the byte stream: a stall really stops every
byte (pongs included) and an abrupt close really is a TCP reset with no close frame.
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
    from trio_websocket import WebSocketConnection

__all__ = ["CONNECTION_GONE", "FaultListener", "FaultStream", "SimClient"]

_log = structlog.get_logger(__name__)
_IDS: Final = itertools.count(1)
# Errors that only mean "this connection is gone"; anything else is a simulator bug.
CONNECTION_GONE: Final = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


class FaultStream(trio.abc.Stream):
    """A TCP stream whose sends can be paused (stall) and which can be reset (abrupt close).

    Its `repr` is unique: trio-websocket reports it as `request.remote` for non-socket
    streams, which is how the simulator finds the stream behind a WebSocket request.
    """

    def __init__(self, inner: trio.SocketStream) -> None:
        self._inner = inner
        self._name = f"<fusion-sim-stream {next(_IDS)}>"
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
        """Drop the TCP connection at once with an RST (no close frame, no FIN)."""
        sock = self._inner.socket
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # wakes every task blocked on it with ClosedResourceError
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
    """Accepts TCP connections and hands them out wrapped in `FaultStream`."""

    def __init__(self, inner: trio.SocketListener) -> None:
        self._inner = inner
        self.streams: dict[str, FaultStream] = {}
        self.port: int = inner.socket.getsockname()[1]

    async def accept(self) -> FaultStream:
        """Accept one connection and remember its stream by `repr`."""
        stream = FaultStream(await self._inner.accept())
        self.streams[repr(stream)] = stream
        return stream

    async def aclose(self) -> None:
        """Stop listening."""
        await self._inner.aclose()


class SimClient:
    """One connected client: its outbound queue, and the switches that break it."""

    def __init__(
        self, client_id: int, ws: WebSocketConnection, stream: FaultStream | None, queue: int
    ) -> None:
        self.client_id = client_id
        self.ws = ws
        self.stream = stream
        self.closed = False
        self.cancel_scope = trio.CancelScope()
        # Bounded: a client this far behind is dropped, like a server dropping a slow reader.
        self._send, self._recv = trio.open_memory_channel[str | bytes](queue)

    def __repr__(self) -> str:
        return f"<SimClient {self.client_id}>"

    @property
    def stalled(self) -> bool:
        """True while this client's stream is stalled."""
        return self.stream is not None and self.stream.stalled

    def push(self, frame: str | bytes) -> None:
        """Queue one frame; a client whose queue is full is dropped."""
        if self.closed:
            return
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self.drop("lagging")

    def drop(self, why: str) -> None:
        """End the connection abruptly (TCP reset, no close frame)."""
        if self.closed:
            return
        self.closed = True
        _log.info("fusion_sim_client_dropped", client=self.client_id, why=why)
        if self.stream is not None:
            self.stream.reset()
        self.cancel_scope.cancel()

    async def write_loop(self) -> None:
        """Send queued frames in order until the connection ends."""
        async for frame in self._recv:
            await self.ws.send_message(frame)
