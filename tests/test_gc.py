"""Tests for searcherd._gc: the cyclic collector runs in idle moments, and nothing is lost to it.

Each test makes a reference cycle (which only the cyclic collector can free) and watches it
through a weak reference.
"""

from __future__ import annotations

import gc
import weakref
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from searcherd._gc import collect_between_frames

if TYPE_CHECKING:
    from collections.abc import Iterator

YOUNG = 0.25
SWEEP = 60.0


pytestmark = pytest.mark.usefixtures("plain_structlog")


@pytest.fixture(autouse=True)
def _collector_as_found() -> Iterator[None]:
    """The tests check that the collector is left as found: start from the usual state."""
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    gc.enable()


class _Node:
    """A node of a reference cycle."""

    other: Any = None


def _cycle() -> weakref.ref[_Node]:
    """A two-node cycle nothing else refers to, and a weak reference to one of its nodes."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


async def _spin(clock: trio.testing.MockClock) -> NoReturn:
    """Keep the loop busy for ever (never idle), moving the clock a little each round."""
    while True:
        clock.jump(0.01)
        await trio.lowlevel.checkpoint()


async def test_cycles_are_collected_by_the_young_collections_and_not_automatically(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While the collector runs, CPython's own is off and what existed at its start is frozen;
    garbage cycles go at the next young collection; afterwards the interpreter is as it was
    (collector on, nothing frozen)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda **kw: collect_between_frames(young_every=YOUNG, **kw))
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
        dead = _cycle()
        for _ in range(10_000):  # far past CPython's young threshold: it would have run
            _cycle()
        assert dead() is not None
        await trio.sleep(YOUNG * 1.5)
        assert dead() is None
        nursery.cancel_scope.cancel()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


async def test_a_cycle_that_outlived_a_young_collection_is_freed_by_the_sweep(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Survivors of a young collection leave the young generation: once garbage, they wait for
    the sweep (and only for it), which logs what it freed."""
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda **kw: collect_between_frames(young_every=YOUNG, sweep_every=SWEEP, **kw)
            )
            a, b = _Node(), _Node()
            a.other, b.other = b, a
            dead = weakref.ref(a)
            await trio.sleep(YOUNG * 1.5)  # a young collection: the live cycle moves on
            assert not any(o is a for o in gc.get_objects(generation=0))
            del a, b
            await trio.sleep(YOUNG * 10)
            assert dead() is not None  # young collections do not look at it again
            await trio.sleep(SWEEP)
            assert dead() is None
            nursery.cancel_scope.cancel()
    sweeps = [e for e in logs if e["event"] == "gc_swept"]
    assert len(sweeps) == 1
    assert sweeps[0]["freed"] >= 2


async def test_a_loop_that_is_never_idle_still_gets_its_collections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With no idle moment, a collection runs `max_wait` late rather than never."""
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda **kw: collect_between_frames(young_every=YOUNG, max_wait=1.0, **kw)
        )
        nursery.start_soon(_spin, autojump_clock)
        dead = _cycle()
        start = trio.current_time()
        while dead() is not None:
            assert trio.current_time() - start < YOUNG + 1.5, "no collection while busy"
            await trio.lowlevel.checkpoint()
        assert trio.current_time() - start >= YOUNG + 1.0  # it did wait for an idle moment
        nursery.cancel_scope.cancel()
