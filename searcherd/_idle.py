"""Bookkeeping off the hot path: done when the event loop has nothing else to run.

An opportunity's path (frame -> decode -> strategy -> build -> send) is what the daemon is
judged on. Bookkeeping (applying a bid's response and status pushes, their metrics and log
lines) is not urgent: a few milliseconds later is as good as now. Done inline, it sits in front
of the next opportunity; queued here, it runs when no task is runnable and no I/O is ready
(trio's own notion of idle, `trio.testing.wait_all_tasks_blocked`), a few items at a time, so
an opportunity waits behind at most one small slice of it.

A loop that is never idle still gets its bookkeeping done: work older than `max_delay` runs
anyway, one slice per scheduling round, taking its turn with every other task. It is late then,
never lost.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

import structlog
import trio
import trio.testing

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["IdleQueue", "wait_for_idle"]

_log = structlog.get_logger(__name__)

_SLICE: Final = 8
"""Items run between two looks at the loop: a slice costs tens of microseconds."""


async def wait_for_idle(max_wait: float) -> None:
    """Return once no other task is runnable and no I/O is ready, or after `max_wait` seconds."""
    with trio.move_on_after(max_wait):
        await trio.testing.wait_all_tasks_blocked()


class IdleQueue:
    """Calls deferred until the loop is idle (or they are `max_delay` seconds old), in order.

    `defer` is synchronous and never blocks; `run` does the work, in idle moments and, for work
    that falls due first, from a timer; `drain` does whatever is left at once (shutdown). A
    deferred call that raises is logged and skipped.
    """

    def __init__(self, name: str, *, max_delay: float = 0.02) -> None:
        self.name = name
        self._max_delay = max_delay
        self._items: deque[tuple[float, Callable[..., object], tuple[Any, ...]]] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        # True while `run` waits for work: `defer` unparks only then (an unpark with no one
        # parked still costs a call).
        self._parked = False

    def __len__(self) -> int:
        return len(self._items)

    def defer(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue `fn(*args)` to run later, after everything queued before it."""
        self._items.append((trio.current_time(), fn, args))
        if self._parked:
            self._parked = False
            self._lot.unpark()

    async def run(self) -> None:
        """Do the queued work for ever; on the way out (cancelled), do the rest at once."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_overdue)
                await self._run_when_idle()
        finally:
            self.drain()

    async def _run_when_idle(self) -> None:
        items = self._items
        while True:
            if not items:
                self._parked = True
                await self._lot.park()
                continue
            # No deadline on this wait: a cancel scope a step would cost as much as a slice of
            # the work itself. `_run_overdue` looks after a loop that is never idle.
            await trio.testing.wait_all_tasks_blocked()
            self._run_slice()

    async def _run_overdue(self) -> None:
        # One timer, set for when the oldest item falls due, instead of a deadline per step.
        # The idle path usually does that item first; the timer then finds nothing overdue.
        items = self._items
        while True:
            due = items[0][0] if items else trio.current_time()
            await trio.sleep_until(due + self._max_delay)
            while items and items[0][0] + self._max_delay <= trio.current_time():
                self._run_slice()
                await trio.lowlevel.checkpoint()  # overdue: a slice per round, no more

    def _run_slice(self) -> None:
        items = self._items
        for _ in range(min(_SLICE, len(items))):
            self._call(*items.popleft())

    def drain(self) -> None:
        """Do everything queued now, in order."""
        items = self._items
        while items:
            self._call(*items.popleft())

    def _call(self, _queued_at: float, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:
            # One bad item must not stop the rest (a venue bug, not the venue's feed).
            _log.exception(
                "deferred_call_failed", queue=self.name, call=getattr(fn, "__qualname__", "?")
            )
