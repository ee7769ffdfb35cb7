"""One worker thread that gets a CPU only when nothing else wants it.

The state writer's commits are the daemon's only sizeable work off the event loop: a few
milliseconds of SQLite every batch window. On a machine whose cores are busy (the daemon, the
node beside it, on a small box the venue's own traffic), that burst competes with the event
loop for a core, and an opportunity that lands then waits for it (measured on two cores:
opportunities that arrived during a commit had a p99 1.6x that of the rest).

Linux has a scheduling class for exactly this work: ``SCHED_IDLE`` threads run when a core
would otherwise idle, and a thread that wakes up takes the core from them at once. Lowering a
thread's own priority needs no privilege, but an unprivileged thread cannot raise it again,
so the priority belongs to a thread of its own: this one, not a thread of trio's cache that
any later `trio.to_thread` call could land on.

A starved idle thread (every core busy with other work) still runs, just slowly; the store
sends the work that cannot wait (a flush, a full queue) to trio's normal threads instead. The
catch is the GIL: the kernel puts an idle thread aside whenever another thread wants its core,
holding the GIL or not, and the event loop then waits for it. So the calls given to it should
spend their time in C code that lets the GIL go, with as little Python around it as possible
(searcherd._store_batch shows how the state writer does that).
Where ``SCHED_IDLE`` does not exist (not Linux) or is refused, the thread runs at normal
priority and says so once at info level.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import structlog
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BackgroundThread"]

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


class BackgroundThread:
    """A thread at idle CPU priority that runs the calls given to `run_sync`, one at a time.

    Like `trio.to_thread.run_sync` with `abandon_on_cancel=False`: a cancelled caller waits
    for its call to finish, so whatever the call uses (a database connection) is never handed
    to someone else mid-call. Start it with `start` inside `trio.run`; `stop` lets the thread
    end after the calls already given.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Let the thread end once the calls already given are done; it does not wait."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    async def run_sync(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the thread and return its result (or raise its exception)."""
        if self._thread is None:
            raise RuntimeError(f"{self.name}: the thread is not running")
        await trio.lowlevel.checkpoint_if_cancelled()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def job() -> None:
            result = outcome.capture(fn, *args)
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._jobs.put(job)
        # Not cancellable (see the class docstring): the abort is refused, the call finishes.
        result: _T = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result

    def _serve(self) -> None:
        _lower_priority(self.name)
        while (job := self._jobs.get()) is not None:
            job()


def _lower_priority(name: str) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError) as exc:  # not Linux, or refused (a seccomp profile)
        _log.info("thread_priority_unchanged", thread=name, reason=str(exc) or type(exc).__name__)
