"""The transport error family: what a broken or refused socket raises, whatever the library.

Re-exported by :mod:`searcherd.transport`, the public home of these names. They live apart so
the socket implementation (:mod:`searcherd._websocket`) and the transport can both raise them
without importing each other. Every message is safe to log: none carries a secret.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ConnectFailed", "HandshakeRejected", "SocketClosed", "TlsFailed", "TransportError"]


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
