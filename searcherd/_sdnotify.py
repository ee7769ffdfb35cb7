"""The systemd notify protocol, spoken directly (no libsystemd).

Under `Type=notify`, systemd passes `$NOTIFY_SOCKET`: an AF_UNIX datagram socket, either a path
or, with a leading `@`, a name in the Linux abstract namespace. Each notification is one datagram
of newline-separated `KEY=VALUE` lines. systemd's maintainers call this protocol the stable API
and recommend reimplementing it rather than linking libsystemd, so that is what this module does.

Outside systemd (`$NOTIFY_SOCKET` unset) every call is a no-op, so the daemon runs the same from a
shell. A failed send is logged and swallowed: a notification must never take the daemon down.

The watchdog task pings only while the caller's freshness check passes (every enabled feed has
received data within its liveness window). A wedged feed, or a blocked event loop, stops the
pings, and systemd restarts the service after `WatchdogSec=`.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["Notifier", "format_status", "run_watchdog"]

_log = structlog.get_logger(__name__)

# systemd shows STATUS= in one line of `systemctl status`; keep ours readable there.
_ERROR_CHARS = 80


class Notifier:
    """Sends sd_notify datagrams to `$NOTIFY_SOCKET`; does nothing when it is unset.

    `environ` replaces `os.environ` (tests use it). The address is read once, at construction:
    systemd sets it before exec and never changes it.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _parse_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to send to."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half of `WATCHDOG_USEC`), or None if off.

        None when systemd asked for no watchdog, or asked another process for it
        (`WATCHDOG_PID` names a different pid), or when there is no notify socket at all.
        """
        return self._watchdog_interval if self.enabled else None

    def notify(self, *fields: str) -> bool:
        """Send `fields` (`KEY=VALUE` strings) as one datagram; True if it was sent.

        Never raises: a missing or full socket is logged (`sd_notify_failed`) and the daemon goes
        on. The socket is non-blocking so a stalled systemd can never stall the event loop.
        """
        if self._address is None:
            return False
        payload = "\n".join(fields).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            _log.warning("sd_notify_failed", error=exc.strerror or str(exc), fields=len(fields))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`: startup (or a reload) is complete; optionally with a STATUS line."""
        return self.notify("READY=1", *_status_field(status))

    def status(self, text: str) -> bool:
        """`STATUS=...`: the one-line state `systemctl status` shows."""
        return self.notify(*_status_field(text))

    def reloading(self) -> bool:
        """`RELOADING=1` with `MONOTONIC_USEC=`; follow it with `ready()` when the reload ends."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = "stopping") -> bool:
        """`STOPPING=1`: send it first thing on shutdown."""
        return self.notify("STOPPING=1", *_status_field(status))

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: one keep-alive ping. `run_watchdog` sends these on schedule."""
        return self.notify("WATCHDOG=1")


def _parse_address(raw: str) -> str | bytes | None:
    """`$NOTIFY_SOCKET` as an address for `sendto`, or None if unset or unusable."""
    if not raw:
        return None
    if raw.startswith("@"):
        # The abstract namespace: a leading NUL instead of '@', no trailing NUL.
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # Newer systemd can also hand out vsock: addresses; we only speak AF_UNIX.
    _log.warning("sd_notify_unsupported_socket", notify_socket=raw)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of `WATCHDOG_USEC` in seconds, if the watchdog is meant for this process."""
    raw_usec = env.get("WATCHDOG_USEC", "")
    if not raw_usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        _log.warning("sd_watchdog_invalid", watchdog_usec=raw_usec)
        return None
    if usec <= 0:
        return None
    return usec / 2 / 1_000_000


def _status_field(text: str | None) -> tuple[str, ...]:
    """`STATUS=text` on one line (a newline would start a new KEY=VALUE), or nothing."""
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.split()),)


async def run_watchdog(
    notifier: Notifier,
    is_fresh: Callable[[], bool],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Send WATCHDOG=1 every `WATCHDOG_USEC/2`, but only while `is_fresh()` is true.

    `is_fresh` must answer "has every enabled feed received data within its liveness window?"
    (and should count a feed still inside its first window after startup as fresh). While it is
    false the pings stop, so systemd restarts a daemon whose feed is wedged; the first missed
    ping logs `watchdog_withheld` once, and `watchdog_resumed` is logged when pings start again.
    A freshness check that raises counts as not fresh (and is logged), never as a crash.

    Returns at once (after `started()`) when systemd asked for no watchdog.
    """
    interval = notifier.watchdog_interval
    task_status.started()
    if interval is None:
        return
    _log.info("watchdog_started", interval=interval)
    withheld = False
    # Deadlines advance by a fixed step from the start, so a slow freshness check or a busy
    # loop does not drift the cadence later and later.
    deadline = trio.current_time()
    while True:
        fresh = _check(is_fresh)
        if fresh:
            notifier.watchdog()
            if withheld:
                withheld = False
                _log.info("watchdog_resumed")
        elif not withheld:
            withheld = True
            _log.warning("watchdog_withheld", reason="a feed is not fresh")
        deadline += interval
        await trio.sleep_until(deadline)


def _check(is_fresh: Callable[[], bool]) -> bool:
    try:
        return bool(is_fresh())
    except Exception as exc:  # a bug in the check must not kill the watchdog task
        _log.error("watchdog_check_failed", error=repr(exc))
        return False


def format_status(summary: Mapping[str, Any]) -> str:
    """A one-line STATUS text from the health snapshot (see `searcherd.health`).

    Example: `venues up 1/2 (fusion_plus down) | bids in flight 3 | last error: timeout`.
    Missing or malformed parts are skipped rather than raising: this runs in a periodic loop.
    """
    parts = []
    venues = summary.get("venues")
    if isinstance(venues, dict) and venues:
        down = sorted(
            str(name)
            for name, venue in venues.items()
            if not (isinstance(venue, dict) and venue.get("connected"))
        )
        text = f"venues up {len(venues) - len(down)}/{len(venues)}"
        if down:
            text += f" ({', '.join(down)} down)"
        parts.append(text)
        parts.append(f"bids in flight {_in_flight(venues)}")
    else:
        parts.append("no venues")
    error = summary.get("last_error")
    if error:
        text = " ".join(str(error).split())
        if len(text) > _ERROR_CHARS:
            text = text[: _ERROR_CHARS - 3] + "..."
        parts.append(f"last error: {text}")
    return " | ".join(parts)


def _in_flight(venues: Mapping[str, Any]) -> int:
    total = 0
    for venue in venues.values():
        by_status = venue.get("bids_in_flight_by_status") if isinstance(venue, dict) else None
        if isinstance(by_status, dict):
            total += sum(n for n in by_status.values() if isinstance(n, int))
    return total
