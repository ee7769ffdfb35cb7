"""A client WebSocket driven by wsproto straight from the task that reads it.

wsproto does the protocol (HTTP upgrade, framing, UTF-8, close codes); this module only moves
bytes between it and a trio stream. It replaces trio-websocket on the client side for one
reason, measured: trio-websocket reads in a background task and hands every message over a
memory channel, so each frame costs two task switches and a channel hand-off before anyone
looks at it. A venue pushes three to five frames per bid (the opportunity, the response, the
status pushes), and in the tick-to-bid benchmark that hand-off was 130-230 us of event-loop CPU
per opportunity, as much as everything the daemon adds on top of a bare client.

Here the reader is the caller of :meth:`WebSocket.get_message`: it reads the stream, feeds
wsproto and returns the next message, answering pings and the peer's Close on the way. The
connection loop reads without pause (see :mod:`searcherd.connection`), so pings are answered as
promptly as with a background reader, and a stalled reader stalls both designs alike.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final, cast

import structlog
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from searcherd._transport_errors import ConnectFailed, HandshakeRejected, SocketClosed

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["WebSocket", "connect"]

_log = structlog.get_logger(__name__)

_RECEIVE_SIZE: Final = 65536
"""Bytes asked of the stream per read: a backlog of frames comes in one read, not dozens."""

_MAX_BODY: Final = 200  # characters of a rejection body kept for the log
_MAX_BODY_BYTES: Final = 4096  # bytes of a rejection body read at most
_MAX_RETRY_AFTER: Final = 3600.0  # a larger Retry-After is treated as garbage and ignored


async def connect(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    extra_headers: Sequence[tuple[bytes, bytes]],
    max_message_size: int,
) -> WebSocket:
    """Run the client handshake on ``stream`` and return the open socket.

    Raises :class:`HandshakeRejected` when the server answers with an HTTP status, and
    :class:`ConnectFailed` when it closes the stream or answers with something that is not
    HTTP. The caller bounds the time and owns (closes) the stream.
    """
    ws = WSConnection(ConnectionType.CLIENT)
    rejection: RejectConnection | None = None
    body = bytearray()
    try:
        await stream.send_all(
            ws.send(Request(host=host, target=resource, extra_headers=list(extra_headers)))
        )
        while True:
            data = bytes(await stream.receive_some(_RECEIVE_SIZE))
            if not data:
                if rejection is not None:  # a body may end with the stream
                    raise _rejected(rejection, bytes(body))
                raise ConnectFailed("connection closed during the WebSocket handshake")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    socket = WebSocket(stream, ws, max_message_size)
                    # Frames sent right behind the upgrade response are already in wsproto's
                    # buffer; take them now, or the first read would wait for newer ones.
                    await socket._take_events()
                    return socket
                if isinstance(event, RejectConnection):
                    rejection = event
                elif isinstance(event, RejectData) and len(body) < _MAX_BODY_BYTES:
                    body += event.data
                if rejection is not None and (
                    not rejection.has_body
                    or (isinstance(event, RejectData) and event.body_finished)
                    or len(body) >= _MAX_BODY_BYTES
                ):
                    raise _rejected(rejection, bytes(body))
    except RemoteProtocolError as exc:
        raise ConnectFailed(f"not a WebSocket handshake response: {exc}") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ConnectFailed(f"connection lost during the WebSocket handshake: {exc!r}") from exc


def _rejected(event: RejectConnection, body: bytes) -> HandshakeRejected:
    text = body.decode("utf-8", "replace").strip()[:_MAX_BODY]
    return HandshakeRejected(event.status_code, text, _retry_after(event.headers))


def _retry_after(headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                seconds = float(value.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                return None  # an HTTP date or garbage: fall back to our own backoff
            return seconds if 0 <= seconds <= _MAX_RETRY_AFTER else None
    return None


class WebSocket:
    """One open client WebSocket (the :class:`~searcherd.transport.Socket` protocol).

    One task reads (:meth:`get_message`); any number of tasks may send and ping. Built by
    :func:`connect`; :meth:`aclose` runs the close handshake, and the owner closes the stream.
    """

    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, max_message_size: int) -> None:
        self._stream = stream
        self._ws = ws
        self._max_message_size = max_message_size
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []  # the fragments of a message still arriving
        self._parts_size = 0
        self._replies: list[Event] = []  # pongs and Close replies owed to the peer
        self._closed: SocketClosed | None = None
        self._pong: trio.Event | None = None  # set by the next pong; shared by waiting pings
        # One writer at a time: frames are made and sent inside the turn, so they leave in the
        # order they were made and nothing follows our Close. The turn is handed straight to
        # the longest waiter, so writers go in arrival order.
        self._writing = False
        self._writers = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<WebSocket state={self._ws.state.name}>"

    async def get_message(self) -> str | bytes:
        """Return the next message; raise :class:`SocketClosed` once the socket is closed.

        Messages already received are returned without a checkpoint: a backlog that came in
        one read is handed out at once. Only one task may call this at a time.
        """
        messages = self._messages
        while not messages:
            if self._closed is not None:
                raise SocketClosed(self._closed.code, self._closed.reason)
            await self._read()
        return messages.popleft()

    async def send_message(self, data: str | bytes) -> None:
        """Send one message (text for ``str``); raise :class:`SocketClosed` if closed."""
        await self._write(TextMessage(data) if isinstance(data, str) else BytesMessage(data))

    async def ping(self) -> None:
        """Send a ping and return when a pong arrives (no timeout of its own).

        Any pong after our ping answers it: a pong proves the peer alive, whichever ping it
        echoes. Raises :class:`SocketClosed` if the socket closes first.
        """
        # The waiter exists before the ping leaves: the pong can be read while we still send.
        if self._pong is None:
            self._pong = trio.Event()
        pong = self._pong
        await self._write(Ping())
        await pong.wait()
        if self._closed is not None:
            raise SocketClosed(self._closed.code, self._closed.reason)

    async def aclose(self) -> None:
        """Send Close (1000) unless a close is under way, then read until the peer's Close.

        The caller bounds the wait; errors of a socket that is already going are logged at
        debug level and ignored.
        """
        try:
            if self._ws.state is ConnectionState.OPEN:
                await self._write(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
            while self._ws.state is ConnectionState.LOCAL_CLOSING:
                await self._read()  # messages that cross our Close are dropped
        except (SocketClosed, LocalProtocolError) as exc:
            _log.debug("websocket_close_error", error=type(exc).__name__)

    async def _read(self) -> None:
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if isinstance(data, bytearray):  # trio's streams return bytes; the type allows both
            data = bytes(data)
        # None tells wsproto the stream ended without a Close: it reports code 1006.
        self._ws.receive_data(data or None)
        await self._take_events()

    async def _take_events(self) -> None:
        """Sort wsproto's pending events into messages, pongs and a close; send what we owe."""
        for event in self._ws.events():
            if isinstance(event, Message):
                if not self._add_fragment(event):
                    break  # too big: we are closing, nothing after it is delivered
            elif isinstance(event, Ping):
                self._replies.append(event.response())
            elif isinstance(event, Pong):
                self._wake_pings()
            elif isinstance(event, CloseConnection):
                # A Close from the peer is echoed; so is wsproto's report of a frame it could
                # not parse (the state is still OPEN then, and our Close carries its code).
                if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    self._replies.append(event.response())
                self._set_closed(event.code, event.reason or None)
                break  # the last frame of the connection
        replies, self._replies = self._replies, []
        for reply in replies:
            try:
                await self._write(reply)
            except SocketClosed:
                break  # the peer is gone: nothing more to tell it

    def _add_fragment(self, event: Message[str] | Message[bytes | bytearray]) -> bool:
        """Keep one frame of a message; False if the message is over the size limit."""
        data = bytes(event.data) if isinstance(event.data, bytearray) else event.data
        size = self._parts_size + len(data)
        if size > self._max_message_size:
            reason = f"message over {self._max_message_size} bytes"
            self._replies.append(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG, reason=reason))
            self._parts.clear()
            self._set_closed(CloseReason.MESSAGE_TOO_BIG, reason)
            return False
        if not event.message_finished:
            self._parts.append(data)
            self._parts_size = size
            return True
        if self._parts:  # the last frame of a fragmented message (all frames share its type)
            self._parts.append(data)
            if isinstance(data, str):
                data = "".join(cast("list[str]", self._parts))
            else:
                data = b"".join(cast("list[bytes]", self._parts))
            self._parts.clear()
            self._parts_size = 0
        self._messages.append(data)
        return True

    def _set_closed(self, code: int, reason: str | None) -> None:
        if self._closed is None:
            self._closed = SocketClosed(int(code), reason)
        self._wake_pings()  # a ping waiting on a closed socket learns it at once

    def _wake_pings(self) -> None:
        if self._pong is not None:
            self._pong.set()
            self._pong = None

    async def _write(self, event: Event) -> None:
        if self._writing:
            await self._writers.park()  # woken holding the turn (handed over below)
        else:
            self._writing = True
        try:
            data = self._ws.send(event)
            await self._stream.send_all(data)
        except LocalProtocolError:
            # wsproto refuses frames once a close has started on either side.
            closed = self._closed or SocketClosed()
            raise SocketClosed(closed.code, closed.reason) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._set_closed(CloseReason.ABNORMAL_CLOSURE, "connection lost")
            raise SocketClosed(CloseReason.ABNORMAL_CLOSURE, "connection lost") from None
        finally:
            if self._writers:
                self._writers.unpark()
            else:
                self._writing = False
