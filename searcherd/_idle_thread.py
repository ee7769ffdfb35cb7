"""One worker thread at idle CPU priority, awaited from trio: where the state table's SQLite
work runs.

On a machine with few cores, a commit's CPU (tens of microseconds per bid) competes with the
event loop; whenever the kernel runs the writer instead of the loop, the opportunity waiting on
the loop is late (the daemon's p90 and p99 latency came out a fifth lower with the writer at
idle priority, see the CHANGELOG). `SCHED_IDLE` (Linux) runs the thread only on a core nothing
else wants; nice 19 did not help.

The thread is the pool's own and never runs anything else: an unprivileged thread cannot
return from `SCHED_IDLE`, so it must not be one of trio's shared worker threads (a strategy's
`trio.to_thread` call would inherit the priority). Where the policy does not exist or is
refused, the thread runs at normal priority.

The price: on a machine whose cores are all busy with other programs, commits wait for a free
moment, and the rows a crash can lose grow from one batch window to everything not yet
committed (`StateStore.pending` counts them).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

__all__ = ["IdlePriorityThread"]

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


def _lower_priority() -> None:
    """Put the calling thread on `SCHED_IDLE` (pid 0 is the calling thread on Linux)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:  # not Linux, or refused (a seccomp filter)
        _log.info("state_writer_normal_priority", reason=str(exc) or type(exc).__name__)


class IdlePriorityThread:
    """Runs calls one at a time, in order, on a single thread at idle CPU priority."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=name, initializer=_lower_priority
        )

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run `fn(*args)` on the thread and return its result (or raise its exception).

        Not cancellable, like `trio.to_thread.run_sync`: a call that started runs to its end,
        so a commit is never left half-observed.
        """
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def done(future: Future[_T]) -> None:
            # On the worker thread: hand the outcome back to the loop, the only thread-safe way.
            token.run_sync_soon(trio.lowlevel.reschedule, task, outcome.capture(future.result))

        self._pool.submit(fn, *args).add_done_callback(done)
        result: _T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result

    def close(self) -> None:
        """Let the thread end once its queued calls are done (does not wait for it)."""
        self._pool.shutdown(wait=False)
