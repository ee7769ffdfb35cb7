"""The signal watcher: SIGTERM/SIGINT stop the daemon gracefully, SIGHUP reloads it.

The watcher is started with `nursery.start`, so its handlers are installed before anything
reports the daemon ready: a SIGHUP that arrives right after READY=1 must reload, not kill.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["watch_signals"]

_log = structlog.get_logger(__name__)


async def watch_signals(
    on_stop: Callable[[], None],
    on_force_stop: Callable[[], None],
    on_reload: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Dispatch signals until cancelled.

    The first SIGTERM or SIGINT calls `on_stop` (graceful); a second one calls `on_force_stop`
    (stop now). We keep the receiver open after the first signal instead of returning: with
    the default handlers back, a second SIGINT would raise KeyboardInterrupt with a traceback.
    Reloads run one at a time in this task; SIGHUPs that arrive during a reload coalesce into
    one more reload (trio keeps pending signals as a set).
    """
    stopping = False
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                _log.info("signal_received", signal=name, action="reload")
                await on_reload()
            elif not stopping:
                stopping = True
                _log.info("signal_received", signal=name, action="stop")
                on_stop()
            else:
                _log.warning("signal_received", signal=name, action="force_stop")
                on_force_stop()
