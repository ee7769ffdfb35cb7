"""Tests for searcherd._idle: deferred calls run when the loop is idle, or late, never lost."""

from __future__ import annotations

from typing import NoReturn

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from searcherd._idle import IdleQueue, wait_for_idle

STEP = 0.125
"""Virtual seconds a busy loop moves the clock per round (exact in binary)."""


pytestmark = pytest.mark.usefixtures("plain_structlog")


async def _spin(clock: trio.testing.MockClock | None = None) -> NoReturn:
    """Keep the loop busy for ever: always runnable, never blocked; move `clock` each round."""
    while True:
        if clock is not None:
            clock.jump(STEP)
        await trio.lowlevel.checkpoint()


async def _started(nursery: trio.Nursery, queue: IdleQueue) -> IdleQueue:
    """Run `queue` in `nursery` and return once it waits for work."""
    nursery.start_soon(queue.run)
    await trio.testing.wait_all_tasks_blocked()
    return queue


async def test_deferred_calls_run_in_order_once_the_loop_is_idle(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Deferred calls do not run inside defer; they run in order as soon as the loop is idle."""
    queue = await _started(nursery, IdleQueue("test", max_delay=10.0))
    calls: list[int] = []
    done = trio.Event()
    start = trio.current_time()
    for i in range(20):  # more than one slice
        queue.defer(calls.append, i)
    queue.defer(done.set)
    assert calls == []
    assert len(queue) == 21
    with trio.fail_after(1):
        await done.wait()
    assert calls == list(range(20))
    assert len(queue) == 0
    assert trio.current_time() == start  # idle at once: max_delay played no part


async def test_busy_loop_runs_overdue_work_after_max_delay(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A loop that is never idle still runs deferred work once it is max_delay old, in order."""
    queue = await _started(nursery, IdleQueue("test", max_delay=1.0))
    ran_at: list[tuple[int, float]] = []
    done = trio.Event()
    nursery.start_soon(_spin, autojump_clock)
    start = trio.current_time()
    for i in range(20):  # more than one slice: overdue work runs a slice per round
        queue.defer(lambda i: ran_at.append((i, trio.current_time())), i)
    queue.defer(done.set)
    with trio.fail_after(5):
        await done.wait()
    assert [i for i, _ in ran_at] == list(range(20))
    assert all(1.0 <= at - start <= 1.0 + 5 * STEP for _, at in ran_at)
    assert len(queue) == 0


async def test_raising_call_is_logged_and_later_calls_still_run(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A deferred call that raises is logged as deferred_call_failed; the next ones run."""

    def boom() -> None:
        raise ValueError("boom")

    queue = await _started(nursery, IdleQueue("test"))
    calls: list[str] = []
    done = trio.Event()
    with capture_logs() as logs:
        queue.defer(calls.append, "before")
        queue.defer(boom)
        queue.defer(calls.append, "after")
        queue.defer(done.set)
        with trio.fail_after(1):
            await done.wait()
    assert calls == ["before", "after"]
    failed = [e for e in logs if e["event"] == "deferred_call_failed"]
    assert len(failed) == 1
    assert failed[0]["queue"] == "test"
    assert failed[0]["call"].endswith("boom")
    assert failed[0]["log_level"] == "error"
    assert failed[0]["exc_info"] is True


async def test_cancelled_run_does_everything_still_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling run does the work still queued, in order: nothing is lost."""
    queue = IdleQueue("test", max_delay=10.0)
    calls: list[int] = []
    async with trio.open_nursery() as inner:
        inner.start_soon(queue.run)
        inner.start_soon(_spin)  # never idle and the clock stands still: nothing is due
        for i in range(20):
            queue.defer(calls.append, i)
        for _ in range(10):
            await trio.lowlevel.checkpoint()
        assert calls == []
        assert len(queue) == 20
        inner.cancel_scope.cancel()
    assert calls == list(range(20))
    assert len(queue) == 0


async def test_wait_for_idle_returns_at_once_when_nothing_else_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """wait_for_idle returns without any time passing when no other task is runnable."""
    start = trio.current_time()
    await wait_for_idle(10.0)
    assert trio.current_time() == start


async def test_wait_for_idle_returns_after_max_wait_on_a_busy_loop(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """wait_for_idle on a loop kept busy returns after max_wait, not before."""
    nursery.start_soon(_spin, autojump_clock)
    start = trio.current_time()
    await wait_for_idle(1.0)
    assert 1.0 <= trio.current_time() - start <= 1.0 + 2 * STEP
