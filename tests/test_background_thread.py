"""Tests for searcherd._background_thread: calls run one at a time on one idle-priority thread."""

from __future__ import annotations

import os
import threading

import pytest
import trio
import trio.testing

from searcherd._background_thread import BackgroundThread


async def test_calls_run_in_order_on_one_named_thread_and_return_their_results() -> None:
    """Every call runs on the same thread, named as asked, and returns to its caller."""
    worker = BackgroundThread("test-background")
    worker.start()
    try:
        seen = [
            await worker.run_sync(lambda n=n: (n, threading.current_thread())) for n in range(5)
        ]
    finally:
        worker.stop()
    assert [n for n, _ in seen] == list(range(5))
    threads = {thread for _, thread in seen}
    assert len(threads) == 1
    (thread,) = threads
    assert thread.name == "test-background"
    assert thread is not threading.current_thread()


async def test_an_exception_in_the_call_reaches_the_caller() -> None:
    """A call that raises raises in the caller, and the thread serves the next call."""
    worker = BackgroundThread("test-background")
    worker.start()
    try:
        with pytest.raises(ZeroDivisionError):
            await worker.run_sync(lambda: 1 / 0)
        assert await worker.run_sync(lambda: "still serving") == "still serving"
    finally:
        worker.stop()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_the_thread_runs_at_idle_priority() -> None:
    """The thread's scheduling class is SCHED_IDLE; the caller's is untouched."""
    worker = BackgroundThread("test-background")
    worker.start()
    try:
        policy = await worker.run_sync(os.sched_getscheduler, 0)
    finally:
        worker.stop()
    assert policy == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE


async def test_a_cancelled_caller_waits_for_its_call_to_finish() -> None:
    """Cancelling the caller does not abandon the call: the caller leaves only after it."""
    worker = BackgroundThread("test-background")
    worker.start()
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def call() -> None:
        started.set()
        release.wait()
        order.append("call finished")

    async def caller(scope_ready: trio.Event, scopes: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            scope_ready.set()
            try:
                await worker.run_sync(call)
            finally:
                order.append("caller left")

    try:
        async with trio.open_nursery() as nursery:
            scope_ready, scopes = trio.Event(), list[trio.CancelScope]()
            nursery.start_soon(caller, scope_ready, scopes)
            await scope_ready.wait()
            await trio.to_thread.run_sync(started.wait)
            scopes[0].cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert order == []  # cancelled, and still waiting for its call
            release.set()
    finally:
        release.set()
        worker.stop()
    assert order == ["call finished", "caller left"]


async def test_a_thread_not_started_refuses_calls() -> None:
    """`run_sync` before `start` (or after `stop`) is a clear error, not a hang."""
    worker = BackgroundThread("test-background")
    with pytest.raises(RuntimeError, match="test-background: the thread is not running"):
        await worker.run_sync(lambda: None)
    worker.start()
    worker.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await worker.run_sync(lambda: None)
