"""Pluggable WebSocket transport: what a venue connection runs over.

A :class:`Transport` opens one socket per call of ``open(url, headers, settings)``, an async
context manager yielding a :class:`Socket`. The default, :class:`WebSocketTransport`, speaks
trio-websocket; a custom transport (the Fusion+ SDK's "custom provider") is anything with the
same shape, e.g. a proxy or an in-memory fake in tests.

Transports report trouble with the :class:`TransportError` family, whose messages never contain
secrets, so the connection loop can classify failures (TLS, rejected upgrade, closed socket)
without knowing the library underneath.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from typing import TYPE_CHECKING, ClassVar, NoReturn, Protocol, cast

import structlog
import trio
import trio_websocket
from wsproto.utilities import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from searcherd.connection import ConnectionSettings

__all__ = [
    "ConnectFailed",
    "HandshakeRejected",
    "Socket",
    "SocketClosed",
    "TlsFailed",
    "Transport",
    "TransportError",
    "WebSocketTransport",
    "redact_url",
    "secret_fragments",
]

_log = structlog.get_logger(__name__)

_MAX_BODY = 200  # characters of a rejection body kept for the log
_MIN_SECRET = 6  # shorter fragments are not scrubbed
_MAX_RETRY_AFTER = 3600.0  # a larger Retry-After is treated as garbage and ignored


class TransportError(Exception):
    """A socket could not be opened or broke. ``kind`` names the class of failure; the message
    is safe to log (no secrets)."""

    kind: ClassVar[str] = "transport"


class ConnectFailed(TransportError):
    """TCP connect, DNS, the handshake deadline, or a bad URL: the server was never reached."""

    kind = "connect"


class TlsFailed(TransportError):
    """The TLS handshake failed (for instance an untrusted certificate)."""

    kind = "tls"


class HandshakeRejected(TransportError):
    """The server answered the upgrade with an HTTP status instead of switching protocols.

    ``retry_after`` holds a sane ``Retry-After`` header in seconds, if the server sent one.
    """

    kind = "rejected"

    def __init__(self, status: int, body: str = "", retry_after: float | None = None) -> None:
        detail = f"HTTP {status}" + (f": {body}" if body else "")
        super().__init__(detail)
        self.status = status
        self.body = body
        self.retry_after = retry_after


class SocketClosed(TransportError):
    """The socket is closed: by the peer (its close ``code``), by us, or by a dropped TCP link."""

    kind = "closed"

    def __init__(self, code: int | None = None, reason: str | None = None) -> None:
        text = "socket closed" if code is None else f"socket closed with code {code}"
        super().__init__(text + (f" ({reason})" if reason else ""))
        self.code = code
        self.reason = reason


class Socket(Protocol):
    """One open WebSocket as the connection loop uses it."""

    async def get_message(self) -> str | bytes:
        """Return the next message; raise :class:`SocketClosed` once the socket is closed."""
        ...

    async def send_message(self, data: str | bytes) -> None:
        """Send one message; raise :class:`SocketClosed` if the socket is closed."""
        ...

    async def ping(self) -> None:
        """Send a protocol ping and return when its pong arrives (no timeout of its own)."""
        ...


class Transport(Protocol):
    """Opens sockets. ``open`` must close everything it opened when the block exits, also on
    cancellation, and raise :class:`TransportError` subclasses for network trouble."""

    def open(
        self, url: str, headers: Sequence[tuple[str, str]], settings: ConnectionSettings
    ) -> contextlib.AbstractAsyncContextManager[Socket]:
        """Connect to ``url`` sending ``headers`` on the upgrade; yield the open socket."""
        ...


def redact_url(url: str) -> str:
    """Return ``url`` without user info, query or fragment, which may carry credentials."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    query = "?<redacted>" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{query}"


def secret_fragments(url: str, headers: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """Every credential-like string to scrub from error texts: header values (and their words,
    so the token of ``Bearer <token>`` counts), the URL password and query values.

    Fragments shorter than 6 characters are left out: they would mangle ordinary text.
    """
    found: set[str] = set()
    for _, value in headers:
        found.add(value)
        found.update(value.split())
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            found.add(parts.password)
        found.update(value for _, value in urllib.parse.parse_qsl(parts.query))
    except ValueError:
        pass
    # Longest first, so a whole header value is replaced before its parts.
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True))


class _WsSocket:
    """A trio-websocket connection behind the :class:`Socket` protocol."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws

    def _closed(self, exc: trio_websocket.ConnectionClosed | None = None) -> NoReturn:
        reason = exc.reason if exc is not None else self._ws.closed
        if reason is None:
            raise SocketClosed() from None
        raise SocketClosed(reason.code, reason.reason) from None

    async def get_message(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            self._closed(exc)

    async def send_message(self, data: str | bytes) -> None:
        try:
            await self._ws.send_message(data)
        except trio_websocket.ConnectionClosed as exc:
            self._closed(exc)
        except LocalProtocolError:
            # wsproto refuses data frames once a close has started on either side.
            self._closed()

    async def ping(self) -> None:
        try:
            await self._ws.ping()
        except trio_websocket.ConnectionClosed as exc:
            self._closed(exc)
        except LocalProtocolError:
            self._closed()


class _ReaderGuard:
    """Stands in for the nursery that trio-websocket starts its background reader in.

    The library's reader can raise: ``ConnectionRejected`` while the upgrade is answered with a
    status, and ``LocalProtocolError`` when a server ping crosses our Close frame ("Pong cannot
    be sent in state LOCAL_CLOSING"). Raised in a plain nursery, either would cancel the caller
    and arrive wrapped in an exception group. The guard catches them instead: a rejection is
    kept for the handshake to re-raise; anything after the handshake just ends the reader, which
    closes the message channel, so ``get_message`` reports the socket as closed.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.error: BaseException | None = None
        # Cancelled when the reader ends, so a handshake waiting for the server wakes up.
        self.handshake_scope = trio.CancelScope()
        self.reader_scope = trio.CancelScope(shield=True)

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Start ``fn`` guarded, in the real nursery (the only nursery method the library uses)."""
        self._nursery.start_soon(self._run, fn, *args)

    async def _run(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        # Shielded: when the caller is cancelled (shutdown), the reader must live on to read
        # the server's Close reply, or the close handshake waits out `disconnect_timeout`.
        # It ends when `open` closes the stream, and `open` cancels `reader_scope` to be sure.
        try:
            with self.reader_scope:
                await fn(*args)
        except (trio_websocket.ConnectionRejected, LocalProtocolError) as exc:
            self.error = exc
            _log.debug("websocket_reader_stopped", error=type(exc).__name__)
        finally:
            self.handshake_scope.cancel()


def _retry_after(headers: Sequence[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == b"retry-after":
            try:
                seconds = float(value.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                return None  # an HTTP date or garbage: fall back to our own backoff
            return seconds if 0 <= seconds <= _MAX_RETRY_AFTER else None
    return None


def _rejected(exc: trio_websocket.ConnectionRejected) -> HandshakeRejected:
    body = (exc.body or b"").decode("utf-8", "replace").strip()[:_MAX_BODY]
    return HandshakeRejected(exc.status_code, body, _retry_after(exc.headers))


def _tls_error(exc: BaseException) -> TlsFailed | None:
    """Return a TlsFailed if ``exc`` (or its cause) is an SSL error."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLError):
            return TlsFailed(f"TLS handshake failed: {candidate}")
    return None


def _reraise(exc: BaseException) -> NoReturn:
    """Re-raise ``exc`` out of an exception group without replacing its context."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


class WebSocketTransport:
    """The default transport: trio-websocket over a TCP (``ws://``) or TLS (``wss://``) stream.

    We open the stream ourselves and hand it to ``wrap_client_stream`` rather than using
    ``open_websocket_url``, for two reasons. For ``wss`` the TLS handshake runs eagerly, so an
    untrusted certificate fails at once as :class:`TlsFailed` instead of surfacing as a
    ``ConnectionTimeout`` after the whole connect timeout. And we keep the stream, so it is
    always closed on exit: trio-websocket leaks it when the peer started the close.

    ``ssl_context`` defaults to ``ssl.create_default_context()`` (system trust store).
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, message_queue_size: int = 32
    ) -> None:
        self._ssl_context = ssl_context
        # The connection loop drains continuously; a little slack lets the library keep
        # reading (and answering server pings) while one message is being dispatched.
        self._message_queue_size = message_queue_size

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _open_stream(
        self, scheme: str, host: str, port: int
    ) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {host}:{port}: {exc}") from exc
        if scheme == "ws":
            return tcp
        stream = trio.SSLStream(tcp, self._context(), server_hostname=host, https_compatible=True)
        try:
            await stream.do_handshake()  # certificate errors surface here, immediately
        except BaseException as exc:
            await trio.aclose_forcefully(stream)
            if isinstance(exc, Exception):  # never reclassify a cancellation
                tls = _tls_error(exc)
                if tls is not None:
                    raise tls from exc
                if isinstance(exc, (trio.BrokenResourceError, OSError)):
                    raise TlsFailed(f"TLS handshake failed: {exc!r}") from exc
            raise
        return stream

    @contextlib.asynccontextmanager
    async def open(
        self, url: str, headers: Sequence[tuple[str, str]], settings: ConnectionSettings
    ) -> AsyncIterator[Socket]:
        """Connect, upgrade with ``headers``, yield the socket; close it gracefully on exit
        (bounded by ``settings.disconnect_timeout``) and then close the stream for sure."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConnectFailed(f"not a ws:// or wss:// URL: {redact_url(url)}")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        bracketed = f"[{host}]" if ":" in host else host
        host_header = bracketed if port in (80, 443) else f"{bracketed}:{port}"
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        try:
            async with trio.open_nursery() as nursery:
                stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
                try:
                    guard = _ReaderGuard(nursery)
                    with trio.move_on_after(settings.connect_timeout) as deadline:
                        stream = await self._open_stream(parts.scheme, host, port)
                        with guard.handshake_scope:
                            ws = await trio_websocket.wrap_client_stream(
                                cast("trio.Nursery", guard),
                                stream,
                                host_header,
                                resource,
                                extra_headers=extra,
                                message_queue_size=self._message_queue_size,
                                max_message_size=settings.max_message_size,
                            )
                    if isinstance(guard.error, trio_websocket.ConnectionRejected):
                        raise _rejected(guard.error)
                    if deadline.cancelled_caught:
                        raise ConnectFailed(
                            f"no WebSocket handshake within {settings.connect_timeout}s"
                        )
                    if guard.handshake_scope.cancelled_caught:
                        raise ConnectFailed("connection closed during the WebSocket handshake")
                    try:
                        yield _WsSocket(ws)
                    finally:
                        # Shielded so a cancelled caller still sends a Close frame; bounded so
                        # a dead peer cannot hold shutdown up.
                        with (
                            trio.CancelScope(shield=True),
                            trio.move_on_after(settings.disconnect_timeout),
                        ):
                            await _close_quietly(ws)
                finally:
                    # Always close the stream ourselves; this also ends the library's reader.
                    if stream is not None:
                        await trio.aclose_forcefully(stream)
                    guard.reader_scope.cancel()
        except BaseExceptionGroup as group:
            # The guarded reader never raises, so the group holds only the body's exception.
            if len(group.exceptions) == 1:
                _reraise(group.exceptions[0])
            raise


async def _close_quietly(ws: trio_websocket.WebSocketConnection) -> None:
    """Run the close handshake, treating every "already closing" error as a finished close."""
    try:
        await ws.aclose()
    except (
        trio_websocket.ConnectionClosed,
        LocalProtocolError,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
    ) as exc:
        _log.debug("websocket_close_error", error=type(exc).__name__)
