"""Garbage collection between frames, not in the middle of one.

CPython's cyclic collector runs when allocations pass a threshold: in the middle of whatever
allocates, which on a busy daemon is an opportunity on its way to a bid. And every collection
of an older generation walks every object that ever reached it: the live opportunities and
bids, thousands of them, each collection a pause of several milliseconds (measured at 1,000
opportunities a second: young collections of 3-8 ms with the threshold at 10,000, and 3.5 ms
for each middle-generation collection with CPython's default of 700).

So the daemon runs the collector itself (:func:`collect_between_frames`), with the automatic
one off:

- every `young_every` seconds, in a moment the event loop is idle, a young collection: only
  the objects made since the last one (a fraction of a millisecond);
- what survives it moves to an older generation, and no young collection looks at it again.
  Reference counting still frees it as soon as nothing refers to it; only a reference cycle
  among objects that lived past a young collection waits, for
- the sweep, every `sweep_every` seconds, again in an idle moment: a full collection. It
  walks every live object made since the daemon started (the startup heap is frozen out of
  it): at 1,000 opportunities a second about 28,000 objects, 8-14 ms. In the daemon's own
  traffic it has found nothing to free (measured: sweeps every 8 s during 40,000
  opportunities freed 0 objects), so it is a safety net, not the collector, and it is rare.

A loop that is never idle (a burst) still gets its collections, `max_wait` seconds late.
"""

from __future__ import annotations

import gc
import time
from typing import Final

import structlog
import trio

from searcherd._idle import wait_for_idle

__all__ = ["SWEEP_EVERY", "YOUNG_EVERY", "collect_between_frames"]

_log = structlog.get_logger(__name__)

YOUNG_EVERY: Final = 0.05
"""Seconds between young collections: at 1,000 opportunities a second each takes ~0.25 ms."""

SWEEP_EVERY: Final = 600.0
"""Seconds between full collections, each a pause of milliseconds (see above)."""

_MAX_WAIT: Final = 0.25
"""Seconds a collection waits for an idle moment before it runs anyway."""


async def collect_between_frames(
    *,
    young_every: float = YOUNG_EVERY,
    sweep_every: float = SWEEP_EVERY,
    max_wait: float = _MAX_WAIT,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the cyclic collector in idle moments until cancelled (see the module docstring).

    Everything alive when it starts (modules, config, strategies, venues) lives as long as the
    process: it is frozen (`gc.freeze`) at once, so no collection ever walks it. On the way
    out the automatic collector is switched back on if it was on, and the startup heap is
    unfrozen: the interpreter is left as it was found (tests run daemons in-process).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.freeze()
    task_status.started()
    try:
        next_sweep = trio.current_time() + sweep_every
        while True:
            await trio.sleep(young_every)
            await wait_for_idle(max_wait)
            if trio.current_time() >= next_sweep:
                _sweep()
                next_sweep = trio.current_time() + sweep_every
            else:
                gc.collect(0)
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def _sweep() -> None:
    started = time.perf_counter()
    freed = gc.collect()
    _log.info("gc_swept", freed=freed, ms=round((time.perf_counter() - started) * 1000, 1))
