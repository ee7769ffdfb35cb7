"""The health and metrics listener: `GET /healthz` and `GET /metrics` over HTTP.

`serve_health` runs hypercorn's trio worker with a small hand-written ASGI app, so the listener
lives in the daemon's own nursery and stops when its scope is cancelled. It answers:

- `GET /healthz`: the daemon's snapshot as JSON; 200 when `snapshot()["healthy"]` is true, 503
  when not (so a load balancer or `searcherd status` needs only the status code).
- `GET /metrics`: the Prometheus text exposition of `metrics.registry`.
- 404 for any other path, 405 (with `Allow: GET`) for any other method on those two.

The snapshot the daemon produces (the contract `searcherd status` reads)::

    {
      "healthy": bool,
      "venues": {
        NAME: {
          "connected": bool,                 # the feed is connected and subscribed
          "healthy": bool,                   # connected and within its liveness window
          "last_message_age": float | None,  # seconds since the last frame, None if never
          "reconnects": int,
          "bids_in_flight_by_status": {STATUS: int},
          "last_error": str | None,
        },
      },
      "strategies": {
        NAME: {"state": str, "quarantined": bool, "errors": int, "timeouts": int, "drops": int},
      },
      "last_error": str | None,
      "version": str,
    }

Integers may be of any size: ones outside the 64-bit range are sent as decimal strings (JSON
readers, orjson included, would otherwise lose their precision).
"""

from __future__ import annotations

import logging
import socket
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from searcherd._simnet import AsgiApp, RawBody

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hypercorn.typing import HTTPScope

    from searcherd.metrics import Metrics

__all__ = ["HealthError", "encode_snapshot", "parse_listen", "serve_health"]

_log = structlog.get_logger(__name__)


_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1
_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"
_OPTIONS = orjson.OPT_NON_STR_KEYS


class HealthError(Exception):
    """The health listener cannot start: a malformed or unbindable `[health] listen`."""


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 hosts may be bracketed: `[::1]:9464`) into host and port.

    Raises `HealthError` for anything else, with the value in the message.
    """
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise HealthError(f'[health] listen must be "host:port", got {listen!r}')
    return host, int(port)


async def _bind(listen: str) -> socket.socket:
    """A bound (not yet listening) TCP socket for `listen`, or a clear `HealthError`."""
    host, port = parse_listen(listen)
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise HealthError(
            f"[health] listen {listen!r}: cannot resolve {host!r}: {exc.strerror}"
        ) from None
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise HealthError(f"[health] listen {listen!r}: cannot bind: {exc.strerror}") from None
    return sock


async def serve_health(
    listen: str,
    snapshot: Callable[[], Mapping[str, Any]],
    metrics: Metrics,
    *,
    task_status: trio.TaskStatus[int | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve /healthz and /metrics on `listen` until cancelled.

    Start it with `await nursery.start(serve_health, ...)`: the value passed to `started` is the
    port actually bound (useful with port 0), once the listener accepts connections. An empty
    `listen` means the listener is off: `started(None)` and return. A listen address that cannot
    be resolved or bound raises `HealthError` from `start`, before anything is served.
    """
    if not listen:
        _log.info("health_disabled")
        task_status.started(None)
        return
    sock = await _bind(listen)
    host, port = sock.getsockname()[:2]
    config = HypercornConfig()
    # We bind the socket ourselves (so a bad address is our clear error, not a traceback from
    # inside hypercorn's nursery) and hand the fd over; detach() makes hypercorn its only owner,
    # and its listener closes it when serving stops.
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    # A Logger instance is used as is: no handler of hypercorn's own, records propagate to the
    # root logger the daemon configures. WARNING keeps "Running on ..." out of the journal.
    error_logger = logging.getLogger("hypercorn.error")
    error_logger.setLevel(logging.WARNING)
    config.errorlog = error_logger
    config.graceful_timeout = 1.0
    app = _HealthApp(snapshot, metrics)
    async with trio.open_nursery() as nursery:
        # The shutdown trigger never fires: the listener stops when our scope is cancelled
        # (the daemon's service scope), and hypercorn installs no signal handlers of its own.
        await nursery.start(partial(serve, app, config, shutdown_trigger=trio.sleep_forever))
        _log.info("health_listening", host=host, port=port)
        task_status.started(port)


class _HealthApp(AsgiApp):
    """The ASGI app: two GET routes, everything else 404/405; never cached."""

    headers = ((b"cache-control", b"no-store"),)

    def __init__(self, snapshot: Callable[[], Mapping[str, Any]], metrics: Metrics) -> None:
        self._snapshot = snapshot
        self._metrics = metrics
        self._routes: dict[str, Callable[[], tuple[int, RawBody]]] = {
            "/healthz": self._healthz,
            "/metrics": self._metrics_text,
        }

    def route(self, scope: HTTPScope, body: bytes) -> tuple[int, bytes | RawBody]:
        """Answer one request (the request body is ignored)."""
        route = self._routes.get(scope["path"])
        if route is None:
            return 404, b"not found\n"
        if scope["method"] != "GET":
            return 405, RawBody(b"method not allowed\n", _TEXT, ((b"allow", b"GET"),))
        return route()

    def _healthz(self) -> tuple[int, RawBody]:
        try:
            snap = self._snapshot()
            body = encode_snapshot(snap)
        except Exception as exc:  # a broken snapshot is a 500, never a dead listener
            _log.error("health_snapshot_failed", error=repr(exc))
            return 500, RawBody(orjson.dumps({"healthy": False, "error": "snapshot failed"}), _JSON)
        return (200 if snap.get("healthy") is True else 503), RawBody(body, _JSON)

    def _metrics_text(self) -> tuple[int, RawBody]:
        data = generate_latest(self._metrics.registry)
        return 200, RawBody(data, CONTENT_TYPE_LATEST.encode())


def encode_snapshot(snapshot: Mapping[str, Any]) -> bytes:
    """The snapshot as JSON bytes; ints outside the 64-bit range become decimal strings."""
    try:
        return orjson.dumps(snapshot, default=str, option=_OPTIONS)
    except TypeError:
        # orjson refuses ints past 64 bits (and does not call `default` for them). Rare: only
        # then do we pay for a walk over the whole snapshot.
        return orjson.dumps(_big_ints_to_str(snapshot), default=str, option=_OPTIONS)


def _big_ints_to_str(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _UINT64_MAX else str(value)
    if isinstance(value, dict):
        return {key: _big_ints_to_str(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_to_str(item) for item in value]
    return value
