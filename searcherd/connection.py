"""The resilient venue socket: connect, set up the session, read forever, reconnect.

One :class:`Connection` serves one venue (Express Relay or Fusion+). Each *link* (one live
socket) runs four tasks in one nursery:

- the reader drains every frame into ``on_message`` without ever blocking, because a stalled
  reader stops the socket from answering server pings and the server then drops us;
- ``on_connected`` (the venue's session setup: subscribe, reseed, reconcile) runs beside the
  reader, since it awaits responses only the reader can deliver;
- a liveness watchdog ends a link that saw no frame and no pong for ``liveness_window``;
- an active pinger ends a link whose ping is not answered within ``ping_timeout``.

The first failure of any task ends the link; the loop then waits a capped, jittered backoff (or
the slow schedules for 401/403 and 429) and connects again, for ever. Only cancellation stops
:meth:`Connection.run`.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, ClassVar, NoReturn

import attrs
import structlog
import trio

from searcherd._backoff import Backoff
from searcherd.transport import (
    HandshakeRejected,
    SocketClosed,
    TransportError,
    WebSocketTransport,
    redact_url,
    secret_fragments,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from searcherd.transport import Socket, Transport

__all__ = [
    "Connection",
    "ConnectionHealth",
    "ConnectionSettings",
    "Link",
    "LinkFailure",
    "LivenessTimeout",
    "NotConnected",
    "PingTimeout",
    "SetupFailed",
]

_log = structlog.get_logger(__name__)

_MAX_ERROR = 300  # characters of an error kept in health and logs
_MAX_PREVIEW = 200  # characters of a frame shown when on_message fails on it


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _not_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _headers_repr(headers: tuple[tuple[str, str], ...]) -> str:
    return repr(tuple((name, "<redacted>") for name, _ in headers))


def _to_headers(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Normalise headers to a tuple of (name, value) pairs and reject unsendable ones.

    The error names the header but never shows its value (it may be a credential).
    """
    headers = tuple((str(name), str(text)) for name, text in value)
    for name, text in headers:
        if not name or any(c in name for c in ":\r\n ") or any(c in text for c in "\r\n"):
            raise ValueError(f"header {name!r} has an invalid name or a line break in its value")
        try:
            (name + text).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} is not latin-1 encodable") from None
    return headers


@attrs.frozen
class ConnectionSettings:
    """How one venue socket connects, watches its liveness and backs off.

    ``headers`` may hold ``Authorization``: the repr shows header names only and the URL without
    query or user info. ``ping_interval = 0`` turns the active ping off. Times are seconds.
    """

    url: str = attrs.field(repr=redact_url, validator=attrs.validators.min_len(1))
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), converter=_to_headers, repr=_headers_repr
    )
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    liveness_window: float = attrs.field(default=20.0, validator=_positive)
    ping_interval: float = attrs.field(default=10.0, validator=_not_negative)
    ping_timeout: float = attrs.field(default=5.0, validator=_positive)
    setup_timeout: float = attrs.field(default=30.0, validator=_positive)
    backoff_initial: float = attrs.field(default=0.5, validator=_positive)
    backoff_max: float = attrs.field(default=30.0, validator=_positive)
    unauthorized_retry: float = attrs.field(default=60.0, validator=_positive)
    rate_limited_min: float = attrs.field(default=10.0, validator=_positive)
    max_message_size: int = attrs.field(default=16 * 2**20, validator=attrs.validators.gt(0))
    disconnect_timeout: float = attrs.field(default=2.0, validator=_positive)


@attrs.frozen
class ConnectionHealth:
    """A snapshot of one connection's state, for health checks and metrics.

    Times are ``trio.current_time()`` values. ``healthy`` means ``on_connected`` completed on the
    current link. ``last_error`` is secret-free. ``handler_errors`` counts ``on_message`` raises.
    """

    connected: bool
    healthy: bool
    last_message_at: float | None
    connected_since: float | None
    reconnects: int
    last_error: str | None
    generation: int
    handler_errors: int


class NotConnected(Exception):
    """Raised by ``send`` when the socket (or the given link) is down."""


class LinkFailure(Exception):
    """Why the connection itself ended a link; ``kind`` classifies it for logs and health."""

    kind: ClassVar[str] = "link"


class LivenessTimeout(LinkFailure):
    """No frame and no pong arrived within ``liveness_window``."""

    kind = "liveness"


class PingTimeout(LinkFailure):
    """Our protocol ping was not answered within ``ping_timeout``."""

    kind = "ping"


class SetupFailed(LinkFailure):
    """``on_connected`` raised or did not finish within ``setup_timeout``."""

    kind = "setup"


class Link:
    """A handle for one live socket, given to ``on_connected``.

    Sending on a link that has gone down raises :class:`NotConnected` at once, so a session
    setup that outlived its socket fails fast instead of writing to the next one. ``generation``
    counts connection attempts (1, 2, ...).
    """

    def __init__(self, name: str, generation: int, socket: Socket, opened_at: float) -> None:
        self.generation = generation
        self._name = name
        self._socket = socket
        self._alive = True
        self._scope: trio.CancelScope | None = None
        self.failure: BaseException | None = None
        self.last_activity = opened_at
        self.ready_at: float | None = None
        self.frame_after_ready = False

    @property
    def alive(self) -> bool:
        """True until the link fails or is closed."""
        return self._alive

    async def send(self, data: str | bytes) -> None:
        """Send one frame on this link; raise :class:`NotConnected` if it is (or goes) down."""
        if not self._alive:
            await trio.lowlevel.checkpoint()
            raise NotConnected(f"{self._name}: link {self.generation} is down")
        try:
            await self._socket.send_message(data)
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise NotConnected(f"{self._name}: link {self.generation} closed: {exc}") from exc

    def __repr__(self) -> str:
        state = "alive" if self._alive else "down"
        return f"<Link {self._name} #{self.generation} {state}>"


def _preview(frame: str | bytes) -> str:
    text = frame if isinstance(frame, str) else repr(frame[:_MAX_PREVIEW])
    return text[:_MAX_PREVIEW]


class Connection:
    """One venue socket that never gives up.

    ``on_message(frame, received_at)`` gets every frame with the ``trio.current_time()`` of its
    receipt; it is synchronous and must not block (hand work off with ``send_nowait``). If it
    raises, the error is logged and counted and reading continues. ``after_message()``, if
    given, is awaited by the reader after each ``on_message``: a short send that belongs to the
    frame just handled (it must not wait for the server), made without a trip to another task.
    ``on_connected(link)`` is the venue's session setup, run on each new link while frames keep
    flowing; ``health.healthy`` turns True when it returns.
    ``on_disconnected(error)`` is called once per link, as soon as it fails (``error``) or is
    closed by cancellation (``None``), so the venue can fail in-flight requests at once.
    ``transport`` defaults to :class:`~searcherd.transport.WebSocketTransport`; ``rng`` feeds
    the backoff jitter.
    """

    def __init__(
        self,
        name: str,
        settings: ConnectionSettings,
        *,
        on_message: Callable[[str | bytes, float], None],
        on_connected: Callable[[Link], Awaitable[None]],
        on_disconnected: Callable[[BaseException | None], None] | None = None,
        after_message: Callable[[], Awaitable[None]] | None = None,
        transport: Transport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._on_message = on_message
        self._after_message = after_message
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._transport: Transport = transport if transport is not None else WebSocketTransport()
        self._backoff = Backoff(
            settings.backoff_initial,
            max(settings.backoff_max, settings.backoff_initial),
            rng=rng if rng is not None else random.Random(),
        )
        self._url = redact_url(settings.url)
        self._secrets = secret_fragments(settings.url, settings.headers)
        self._running = False
        self._link: Link | None = None
        # Set while the current link is healthy; replaced by a fresh Event when a healthy link
        # goes down (an unset Event is kept, so waiters on it stay valid).
        self._ready = trio.Event()
        self._generation = 0
        self._reconnects = 0
        self._connected_since: float | None = None
        self._last_message_at: float | None = None
        self._last_error: str | None = None
        self._handler_errors = 0

    def __repr__(self) -> str:
        return f"<Connection {self.name} {self._url}>"

    @property
    def health(self) -> ConnectionHealth:
        """A snapshot of the connection state (cheap; safe to poll)."""
        link = self._link
        return ConnectionHealth(
            connected=link is not None,
            healthy=link is not None and link.ready_at is not None,
            last_message_at=self._last_message_at,
            connected_since=self._connected_since,
            reconnects=self._reconnects,
            last_error=self._last_error,
            generation=self._generation,
            handler_errors=self._handler_errors,
        )

    async def send(self, data: str | bytes) -> None:
        """Send one frame on the current link; raise :class:`NotConnected` when down.

        Sending is allowed as soon as a link is open, before ``on_connected`` has finished;
        callers that need the session set up first ``await wait_healthy()``.
        """
        link = self._link
        if link is None:
            await trio.lowlevel.checkpoint()
            raise NotConnected(f"{self.name}: not connected")
        await link.send(data)

    async def wait_healthy(self) -> None:
        """Return once ``on_connected`` has completed on the current link."""
        while True:
            link = self._link
            if link is not None and link.ready_at is not None:
                await trio.lowlevel.checkpoint()
                return
            await self._ready.wait()

    async def run(self) -> NoReturn:
        """Connect and reconnect for ever; cancel the surrounding scope to stop.

        The attempt counter resets only after a link proved useful (setup completed and then a
        frame arrived, or it stayed up for ``backoff_max``), so a server that accepts and drops
        at once cannot cause a tight reconnect loop. Raises RuntimeError if already running.
        """
        if self._running:
            raise RuntimeError(f"connection {self.name!r} is already running")
        self._running = True
        attempt = 0
        try:
            while True:
                failure, useful = await self._attempt()
                if useful:
                    attempt = 0
                delay = self._retry_delay(failure, attempt)
                attempt += 1
                self._reconnects += 1
                _log.info(
                    "connection_retry", connection=self.name, delay=round(delay, 3), attempt=attempt
                )
                await trio.sleep(delay)
        finally:
            self._running = False

    async def _attempt(self) -> tuple[BaseException, bool]:
        """Open one link and serve it until it fails; return (why, whether it was useful)."""
        self._generation += 1
        generation = self._generation
        link: Link | None = None
        error: Exception | None = None
        try:
            async with self._transport.open(
                self.settings.url, self.settings.headers, self.settings
            ) as socket:
                link = Link(self.name, generation, socket, trio.current_time())
                await self._serve(link)
        except Exception as exc:  # any failure of one link is retried: the loop must not die
            error = exc
        finally:
            # Also on cancellation, so in-flight requests fail at once.
            if link is not None:
                self._mark_down(link, link.failure or error)
        if link is None:
            failure: BaseException = error if error is not None else SocketClosed()
            self._last_error = self._describe(failure)
            _log.warning(
                "connection_failed",
                connection=self.name,
                url=self._url,
                generation=generation,
                kind=_kind(failure),
                reason=self._last_error,
                exc_info=_unexpected(failure),
            )
            return failure, False
        # First failure wins: errors while closing are consequences of the failure that started
        # the close, so they must not hide it.
        failure = link.failure or error or SocketClosed()
        useful = link.ready_at is not None and (
            link.frame_after_ready
            or trio.current_time() - link.ready_at >= self.settings.backoff_max
        )
        self._last_error = self._describe(failure)
        _log.warning(
            "connection_lost",
            connection=self.name,
            generation=generation,
            kind=_kind(failure),
            reason=self._last_error,
            useful=useful,
            exc_info=_unexpected(failure),
        )
        return failure, useful

    async def _serve(self, link: Link) -> None:
        """Run the link's tasks until the first of them fails (see :meth:`_fail`)."""
        self._link = link
        self._connected_since = link.last_activity
        _log.info(
            "connection_open", connection=self.name, url=self._url, generation=link.generation
        )
        async with trio.open_nursery() as nursery:
            link._scope = nursery.cancel_scope
            # Start order does not matter: the socket buffers frames until the reader runs, and
            # setup only ever waits for frames the reader delivers.
            nursery.start_soon(self._guard, link, self._read)
            nursery.start_soon(self._guard, link, self._watch_liveness)
            if self.settings.ping_interval > 0:
                nursery.start_soon(self._guard, link, self._ping)
            nursery.start_soon(self._guard, link, self._setup)

    async def _guard(self, link: Link, task: Callable[[Link], Awaitable[None]]) -> None:
        # Link tasks end the link instead of raising, so no exception group ever forms and the
        # first failure is the one reported.
        try:
            await task(link)
        except Exception as exc:
            self._fail(link, exc)

    def _fail(self, link: Link, exc: BaseException) -> None:
        if link.failure is None:
            link.failure = exc
        self._mark_down(link, link.failure)
        if link._scope is not None:
            link._scope.cancel()

    def _mark_down(self, link: Link, error: BaseException | None) -> None:
        """Take ``link`` out of service (idempotent) and tell the venue, before the slow close."""
        if not link._alive:
            return
        link._alive = False
        if self._link is link:
            self._link = None
        self._connected_since = None
        if self._ready.is_set():
            self._ready = trio.Event()
        if self._on_disconnected is not None:
            try:
                self._on_disconnected(error)
            except Exception:
                _log.exception("connection_on_disconnected_failed", connection=self.name)

    async def _read(self, link: Link) -> None:
        socket = link._socket
        after_message = self._after_message
        while True:
            frame = await socket.get_message()
            now = trio.current_time()
            link.last_activity = now
            self._last_message_at = now
            if link.ready_at is not None:
                link.frame_after_ready = True
            try:
                self._on_message(frame, now)
            except Exception:
                # A venue bug must not silently stop the feed: log it loudly and read on.
                self._handler_errors += 1
                _log.exception(
                    "connection_on_message_failed",
                    connection=self.name,
                    generation=link.generation,
                    size=len(frame),
                    frame=_preview(frame),
                )
            if after_message is not None:
                await after_message()

    async def _watch_liveness(self, link: Link) -> None:
        window = self.settings.liveness_window
        while True:
            # Re-read last_activity on every wake-up: the reader and pinger move it forward.
            deadline = link.last_activity + window
            if trio.current_time() >= deadline:
                raise LivenessTimeout(f"no frame or pong for {window:g}s")
            await trio.sleep_until(deadline)

    async def _ping(self, link: Link) -> None:
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(timeout) as scope:
                await link._socket.ping()
            if scope.cancelled_caught:
                raise PingTimeout(f"no pong within {timeout:g}s")
            # A pong proves the peer is alive even on a quiet feed.
            link.last_activity = max(link.last_activity, trio.current_time())

    async def _setup(self, link: Link) -> None:
        timeout = self.settings.setup_timeout
        started = trio.current_time()
        try:
            with trio.fail_after(timeout):
                await self._on_connected(link)
        except trio.TooSlowError as exc:
            raise SetupFailed(f"on_connected did not finish within {timeout:g}s") from exc
        except Exception as exc:
            if link.alive:  # otherwise it merely noticed the link's death
                _log.exception(
                    "connection_setup_failed", connection=self.name, generation=link.generation
                )
            raise SetupFailed(f"on_connected raised {type(exc).__name__}: {exc}") from exc
        if not link.alive:
            return
        link.ready_at = trio.current_time()
        self._ready.set()
        _log.info(
            "connection_ready",
            connection=self.name,
            generation=link.generation,
            setup_s=round(link.ready_at - started, 3),
        )

    def _retry_delay(self, failure: BaseException, attempt: int) -> float:
        """The wait before the next attempt: backoff, or the slow schedules for 401/403/429."""
        delay = self._backoff.delay(attempt)
        if not isinstance(failure, HandshakeRejected):
            return delay
        if failure.status in (401, 403):
            delay = max(self.settings.unauthorized_retry, delay)
            _log.error(
                "connection_unauthorized",
                connection=self.name,
                status=failure.status,
                url=self._url,
                body=self._scrub(failure.body),
                retry_in=round(delay, 3),
            )
        elif failure.status == 429:
            delay += self.settings.rate_limited_min
            if failure.retry_after is not None:
                delay = max(delay, failure.retry_after)
            _log.warning(
                "connection_rate_limited",
                connection=self.name,
                url=self._url,
                retry_after=failure.retry_after,
                retry_in=round(delay, 3),
            )
        return delay

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return self._scrub(f"{_kind(exc)}: {text}")[:_MAX_ERROR]


def _kind(exc: BaseException) -> str:
    kind = getattr(type(exc), "kind", None)
    return kind if isinstance(kind, str) else type(exc).__name__


def _unexpected(exc: BaseException) -> BaseException | bool:
    """The exception itself (for a traceback) when it is not a classified failure."""
    return False if isinstance(exc, (TransportError, LinkFailure)) else exc
