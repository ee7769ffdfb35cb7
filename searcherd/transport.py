"""Pluggable WebSocket transport: what a venue connection runs over.

A :class:`Transport` opens one socket per call of ``open(url, headers, settings)``, an async
context manager yielding a :class:`Socket`. The default, :class:`WebSocketTransport`, speaks
WebSocket through wsproto (see :mod:`searcherd._websocket` for why not trio-websocket); a
custom transport (the Fusion+ SDK's "custom provider") is anything with the same shape, e.g. a
proxy or an in-memory fake in tests.

Transports report trouble with the :class:`TransportError` family, whose messages never contain
secrets, so the connection loop can classify failures (TLS, rejected upgrade, closed socket)
without knowing the library underneath.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Protocol

import trio

from searcherd._transport_errors import ConnectFailed as ConnectFailed
from searcherd._transport_errors import HandshakeRejected as HandshakeRejected
from searcherd._transport_errors import SocketClosed as SocketClosed
from searcherd._transport_errors import TlsFailed as TlsFailed
from searcherd._transport_errors import TransportError as TransportError
from searcherd._websocket import connect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

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

_MIN_SECRET = 6  # shorter fragments are not scrubbed


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


def _tls_error(exc: BaseException) -> TlsFailed | None:
    """Return a TlsFailed if ``exc`` (or its cause) is an SSL error."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        if isinstance(candidate, ssl.SSLError):
            return TlsFailed(f"TLS handshake failed: {candidate}")
    return None


class WebSocketTransport:
    """The default transport: WebSocket over a TCP (``ws://``) or TLS (``wss://``) stream.

    The TLS handshake runs eagerly, before the upgrade, so an untrusted certificate fails at
    once as :class:`TlsFailed` instead of after the whole connect timeout. The stream is always
    closed on exit, after a close handshake bounded by ``settings.disconnect_timeout``.

    ``ssl_context`` defaults to ``ssl.create_default_context()`` (system trust store).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context

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
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
        try:
            with trio.move_on_after(settings.connect_timeout) as deadline:
                stream = await self._open_stream(parts.scheme, host, port)
                socket = await connect(
                    stream, host_header, resource, extra, settings.max_message_size
                )
            if deadline.cancelled_caught:
                raise ConnectFailed(f"no WebSocket handshake within {settings.connect_timeout}s")
            try:
                yield socket
            finally:
                # Shielded so a cancelled caller still sends a Close frame; bounded so a dead
                # peer cannot hold shutdown up.
                with trio.CancelScope(shield=True), trio.move_on_after(settings.disconnect_timeout):
                    await socket.aclose()
        finally:
            if stream is not None:
                await trio.aclose_forcefully(stream)
