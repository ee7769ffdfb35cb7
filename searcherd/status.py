"""`searcherd status`: ask a running daemon how it is, over its health listener.

The command reads `[health] listen` from the config, GETs `/healthz` with a short timeout and
prints a human summary (or the JSON with `--json`). The exit code says it all for scripts:

- 0 (`EXIT_HEALTHY`): the daemon answered 200, healthy;
- 3 (`EXIT_UNHEALTHY`): it answered 503, running but not healthy;
- 4 (`EXIT_UNREACHABLE`): no usable answer: not running, the listener is off, or something
  else answers on that address.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final, TextIO

import httpx
import orjson

from searcherd.health import HealthError, parse_listen

if TYPE_CHECKING:
    from searcherd.config import Config

__all__ = [
    "EXIT_HEALTHY",
    "EXIT_UNHEALTHY",
    "EXIT_UNREACHABLE",
    "format_summary",
    "health_url",
    "run_status",
]

EXIT_HEALTHY: Final = 0
EXIT_UNHEALTHY: Final = 3
EXIT_UNREACHABLE: Final = 4

# The daemon answers from memory; anything slower than this is as good as down.
_TIMEOUT: Final = 3.0

# A wildcard listen address is reached through loopback.
_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def health_url(listen: str) -> str:
    """The `/healthz` URL for a `[health] listen` value (wildcards become loopback).

    Raises `HealthError` for a malformed value.
    """
    host, port = parse_listen(listen)
    host = _WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def run_status(config: Config, *, as_json: bool, out: TextIO, err: TextIO | None = None) -> int:
    """Query the daemon named by `config` and print its health to `out`; return the exit code.

    Problems (listener off, not reachable, a strange answer) are one line on `err` (default
    stderr) and exit code 4; they never raise.
    """
    err = sys.stderr if err is None else err
    listen = config.health.listen
    if not listen:
        print(
            "searcherd: the health listener is off ([health] listen is empty); "
            "set it to query a running daemon",
            file=err,
        )
        return EXIT_UNREACHABLE
    try:
        url = health_url(listen)
    except HealthError as exc:
        print(f"searcherd: {exc}", file=err)
        return EXIT_UNREACHABLE
    try:
        # trust_env=False: a proxy from the environment must not stand between us and loopback.
        with httpx.Client(timeout=_TIMEOUT, trust_env=False) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        print(
            f"searcherd: not reachable at {url} ({_reason(exc)}); is the daemon running?",
            file=err,
        )
        return EXIT_UNREACHABLE
    if response.status_code not in (200, 503):
        print(f"searcherd: unexpected answer from {url}: HTTP {response.status_code}", file=err)
        return EXIT_UNREACHABLE
    try:
        snapshot = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        snapshot = None
    if not isinstance(snapshot, dict):
        print(f"searcherd: unexpected answer from {url}: not a JSON object", file=err)
        return EXIT_UNREACHABLE
    if as_json:
        out.write(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(format_summary(snapshot))
    return EXIT_HEALTHY if response.status_code == 200 else EXIT_UNHEALTHY


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    return type(exc).__name__


def format_summary(snapshot: dict[str, Any]) -> str:
    """The snapshot (shape in `searcherd.health`) as a few aligned lines for a terminal.

    Tolerant of missing keys: an older or newer daemon still gets a readable summary.
    """
    version = snapshot.get("version") or "?"
    state = "healthy" if snapshot.get("healthy") is True else "UNHEALTHY"
    lines = [f"searcherd {version}: {state}"]
    venues = snapshot.get("venues")
    if isinstance(venues, dict) and venues:
        lines.append("venues:")
        rows = [_venue_row(str(name), v) for name, v in venues.items() if isinstance(v, dict)]
        lines += _aligned(rows)
    strategies = snapshot.get("strategies")
    if isinstance(strategies, dict) and strategies:
        lines.append("strategies:")
        rows = [
            _strategy_row(str(name), s) for name, s in strategies.items() if isinstance(s, dict)
        ]
        lines += _aligned(rows)
    lines.append(f"last error: {_one_line(snapshot.get('last_error')) or 'none'}")
    return "\n".join(lines) + "\n"


def _venue_row(name: str, venue: dict[str, Any]) -> list[str]:
    connected = "connected" if venue.get("connected") else "DISCONNECTED"
    healthy = "healthy" if venue.get("healthy") else "UNHEALTHY"
    age = venue.get("last_message_age")
    age_text = f"last message {age:.1f}s ago" if isinstance(age, int | float) else "no messages"
    by_status = venue.get("bids_in_flight_by_status")
    in_flight = (
        " ".join(f"{k}={v}" for k, v in sorted(by_status.items()))
        if isinstance(by_status, dict) and by_status
        else "none"
    )
    row = [
        name,
        connected,
        healthy,
        age_text,
        f"reconnects {venue.get('reconnects', 0)}",
        f"in flight: {in_flight}",
    ]
    if venue.get("last_error"):
        row.append(f"last error: {_one_line(venue['last_error'])}")
    return row


def _strategy_row(name: str, strategy: dict[str, Any]) -> list[str]:
    state = str(strategy.get("state", "?"))
    if strategy.get("quarantined"):
        state += " (QUARANTINED)"
    return [
        name,
        state,
        f"errors {strategy.get('errors', 0)}",
        f"timeouts {strategy.get('timeouts', 0)}",
        f"drops {strategy.get('drops', 0)}",
    ]


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows indented by two spaces, each column padded to its widest cell."""
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths.get(i, 0), len(cell))
    return [
        "  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def _one_line(value: Any) -> str:
    return " ".join(str(value).split()) if value else ""
