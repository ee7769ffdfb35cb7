"""Tests for searcherd.evaluator: routing, inboxes, deadlines, isolation, quarantine, reload."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import structlog
import trio
import trio.testing
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from searcherd.bids import BidIntent, BidUpdate, FillIntent
from searcherd.config import Config, DaemonConfig, EvaluatorConfig
from searcherd.evaluator import Evaluator
from searcherd.metrics import Metrics
from searcherd.plugins import LoadedStrategies, LoadedStrategy, load_enabled
from searcherd.strategy import NoParams, Strategy, StrategyContext

FP = "fusion_plus"


pytestmark = pytest.mark.usefixtures("plain_structlog")


@attrs.frozen
class _Order:
    """A stand-in Fusion+ order: the evaluator only reads its id."""

    order_hash: str


def _fill(order: _Order, amount: int = 1) -> FillIntent:
    return FillIntent(order_hash=order.order_hash, src_chain_id=1, making_amount=amount)


class _Sink:
    """Records what the evaluator submits."""

    def __init__(self) -> None:
        self.bids: list[tuple[str, BidIntent, float]] = []

    def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
        self.bids.append((strategy, bid, received_at))


class _Recorder(Strategy[NoParams]):
    """Records every hook call; bids one fill per order (sync hooks)."""

    name = "recorder"
    venues = (FP,)

    def __init__(self, params: NoParams, context: StrategyContext) -> None:
        super().__init__(params, context)
        self.calls: list[Any] = []

    def on_start(self) -> None:
        self.calls.append("start")

    def on_opportunity(self, opportunity: Any) -> Any:
        self.calls.append(opportunity.order_hash)
        return _fill(opportunity)

    def on_bid_status(self, update: BidUpdate) -> None:
        self.calls.append(update.status)

    def on_stop(self) -> None:
        self.calls.append("stop")


class _AsyncRecorder(_Recorder):
    """The same with async hooks."""

    async def on_start(self) -> None:  # type: ignore[override]
        await trio.lowlevel.checkpoint()
        self.calls.append("start")

    async def on_opportunity(self, opportunity: Any) -> Any:
        await trio.lowlevel.checkpoint()
        self.calls.append(opportunity.order_hash)
        return [_fill(opportunity, 1), _fill(opportunity, 2), _fill(opportunity, 3)]

    async def on_bid_status(self, update: BidUpdate) -> None:  # type: ignore[override]
        await trio.lowlevel.checkpoint()
        self.calls.append(update.status)

    async def on_stop(self) -> None:  # type: ignore[override]
        await trio.lowlevel.checkpoint()
        self.calls.append("stop")


class _Raiser(_Recorder):
    """Raises on every opportunity whose hash starts with 'bad'."""

    def on_opportunity(self, opportunity: Any) -> Any:
        self.calls.append(opportunity.order_hash)
        if opportunity.order_hash.startswith("bad"):
            raise ValueError("strategy bug")
        return None


class _Blocker(_Recorder):
    """Waits on `gate` in every opportunity call (a slow strategy)."""

    def __init__(self, params: NoParams, context: StrategyContext) -> None:
        super().__init__(params, context)
        self.gate = trio.Event()
        self.delay = 0.0

    async def on_opportunity(self, opportunity: Any) -> Any:
        self.calls.append(opportunity.order_hash)
        if self.delay:
            await trio.sleep(self.delay)
        else:
            await self.gate.wait()
        return None


_S = TypeVar("_S", bound=Strategy[NoParams])


def _make(cls: type[_S], name: str) -> _S:
    return cls(NoParams(), StrategyContext(name, structlog.get_logger()))


def _loaded(*strategies: Strategy[Any]) -> LoadedStrategies:
    return LoadedStrategies(
        tuple(
            LoadedStrategy(s.context.name, type(s), s.params, s, Path("test.py"))
            for s in strategies
        )
    )


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"searcherd_{name}", labels)
    return 0.0 if value is None else value


async def _start(
    nursery: trio.Nursery, *strategies: Strategy[Any], clock: Any = None, **config: Any
) -> tuple[Evaluator, _Sink, Metrics]:
    metrics, sink = Metrics(), _Sink()
    kwargs = {"clock": clock} if clock is not None else {}
    ev = Evaluator(EvaluatorConfig(**config), metrics, sink, **kwargs)
    await nursery.start(ev.run, _loaded(*strategies))
    await trio.testing.wait_all_tasks_blocked()
    return ev, sink, metrics


async def test_sync_and_async_hooks_and_multiple_bids(nursery: trio.Nursery) -> None:
    """Sync and async hooks are both called; every bid of a returned list reaches the sink."""
    sync, asyn = _make(_Recorder, "sync"), _make(_AsyncRecorder, "asyn")
    ev, sink, metrics = await _start(nursery, sync, asyn)
    ev.offer(FP, _Order("h1"), trio.current_time())
    await trio.testing.wait_all_tasks_blocked()
    assert sync.calls == ["start", "h1"]
    assert asyn.calls == ["start", "h1"]
    assert [(s, b.amount) for s, b, _ in sink.bids if s == "asyn"] == [
        ("asyn", 1), ("asyn", 2), ("asyn", 3)
    ]  # fmt: skip
    assert [s for s, _, _ in sink.bids].count("sync") == 1
    assert _sample(metrics, "bids_built_total", strategy="asyn", venue=FP) == 3
    assert _sample(metrics, "opportunities_evaluated_total", strategy="sync") == 1
    ev.stop()
    await trio.testing.wait_all_tasks_blocked()
    assert sync.calls[-1] == asyn.calls[-1] == "stop"


async def test_routes_by_venue(nursery: trio.Nursery) -> None:
    """A strategy only receives opportunities of the venues it declares."""
    rec = _make(_Recorder, "rec")
    ev, _, _ = await _start(nursery, rec)
    ev.offer("express_relay", _Order("er"), trio.current_time())
    ev.offer(FP, _Order("fp"), trio.current_time())
    await trio.testing.wait_all_tasks_blocked()
    assert rec.calls == ["start", "fp"]


async def test_order_preserved(nursery: trio.Nursery) -> None:
    """A strategy sees its opportunities in the order they were offered."""
    rec = _make(_AsyncRecorder, "rec")
    ev, _, _ = await _start(nursery, rec, inbox_size=100)
    for i in range(50):
        ev.offer(FP, _Order(f"o{i}"), trio.current_time())
        if i % 7 == 0:
            await trio.lowlevel.checkpoint()
    await trio.testing.wait_all_tasks_blocked()
    assert rec.calls[1:] == [f"o{i}" for i in range(50)]


async def test_idle_sync_strategy_is_called_inline_by_offer(nursery: trio.Nursery) -> None:
    """A plain `on_opportunity` of an idle strategy runs inside `offer`: its bid is in the sink
    when `offer` returns, before any other task has run (no trip through the scheduler)."""
    rec = _make(_Recorder, "rec")
    ev, sink, metrics = await _start(nursery, rec)
    ev.offer(FP, _Order("h1"), 5.0)
    assert rec.calls == ["start", "h1"]
    [(strategy, bid, at)] = sink.bids
    assert (strategy, getattr(bid, "order_hash", None), at) == ("rec", "h1", 5.0)
    assert _sample(metrics, "opportunities_evaluated_total", strategy="rec") == 1


async def test_busy_strategy_queues_and_keeps_order_behind_its_statuses(
    nursery: trio.Nursery,
) -> None:
    """With a status waiting, an offer is not called inline: the task takes the status first,
    then the opportunity, in order."""
    rec = _make(_Recorder, "rec")
    ev, sink, _ = await _start(nursery, rec)
    ev.bid_status(_update("rec", "pending"))
    ev.offer(FP, _Order("h1"), trio.current_time())
    ev.offer(FP, _Order("h2"), trio.current_time())
    assert rec.calls == ["start"]  # nothing ran inline: the task has work queued
    await trio.testing.wait_all_tasks_blocked()
    assert rec.calls == ["start", "pending", "h1", "h2"]
    ev.offer(FP, _Order("h3"), trio.current_time())
    assert rec.calls[-1] == "h3"  # idle again: inline again
    assert len(sink.bids) == 3


class _ReturnsAwaitable(_Recorder):
    """A plain function that returns a coroutine (allowed by the plugin API)."""

    def on_opportunity(self, opportunity: Any) -> Any:
        async def later() -> Any:
            await trio.lowlevel.checkpoint()
            self.calls.append(opportunity.order_hash)
            return _fill(opportunity)

        return later()


async def test_plain_hook_returning_an_awaitable_is_finished_by_its_task(
    nursery: trio.Nursery,
) -> None:
    """An inline call that returns an awaitable hands it to the strategy's task, which awaits it
    and submits its bid; later opportunities go through the task, still in order."""
    odd = _make(_ReturnsAwaitable, "odd")
    ev, sink, metrics = await _start(nursery, odd)
    ev.offer(FP, _Order("h1"), trio.current_time())
    ev.offer(FP, _Order("h2"), trio.current_time())
    assert odd.calls == ["start"]
    await trio.testing.wait_all_tasks_blocked()
    assert odd.calls == ["start", "h1", "h2"]
    assert [b.order_hash for _, b, _ in sink.bids] == ["h1", "h2"]  # type: ignore[union-attr]
    assert _sample(metrics, "strategy_errors_total", strategy="odd") == 0


async def test_a_stopping_strategy_is_not_called_inline(nursery: trio.Nursery) -> None:
    """Once the evaluator stops, offers no longer reach a strategy, inline or queued."""
    rec = _make(_Recorder, "rec")
    ev, sink, _ = await _start(nursery, rec)
    ev.stop()
    ev.offer(FP, _Order("late"), trio.current_time())
    await trio.testing.wait_all_tasks_blocked()
    assert "late" not in rec.calls
    assert rec.calls[-1] == "stop"
    assert sink.bids == []


async def test_raising_strategy_counted_quarantined_others_carry_on(
    nursery: trio.Nursery,
) -> None:
    """Errors are counted; N in a row quarantine; a success resets; others keep running."""
    bad, good = _make(_Raiser, "bad"), _make(_Recorder, "good")
    with capture_logs() as logs:
        ev, _, metrics = await _start(nursery, bad, good, max_consecutive_failures=3)
        for h in ["bad1", "bad2", "ok", "bad3", "bad4", "bad5", "bad6"]:
            ev.offer(FP, _Order(h), trio.current_time())
            await trio.testing.wait_all_tasks_blocked()
    assert bad.calls == ["start", "bad1", "bad2", "ok", "bad3", "bad4", "bad5", "stop"]
    assert good.calls[1:] == ["bad1", "bad2", "ok", "bad3", "bad4", "bad5", "bad6"]
    assert _sample(metrics, "strategy_errors_total", strategy="bad") == 5
    assert _sample(metrics, "strategy_quarantined", strategy="bad") == 1
    assert _sample(metrics, "strategy_quarantined", strategy="good") == 0
    status = ev.status()
    assert status["bad"]["state"] == "quarantined"
    assert status["bad"]["errors"] == 5
    assert status["good"]["state"] == "running"
    errors = [e for e in logs if e["event"] == "strategy_error"]
    assert len(errors) == 5
    assert errors[0]["exc_info"] is True
    assert [e["log_level"] for e in logs if e["event"] == "strategy_quarantined"] == ["error"]
    ev.bid_status(_update("bad", "won"))  # ignored, not delivered to a quarantined strategy
    await trio.testing.wait_all_tasks_blocked()
    assert bad.calls[-1] == "stop"


async def test_hanging_strategy_cancelled_at_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An async hook past call_timeout is cancelled and counted; the next one runs."""
    slow = _make(_Blocker, "slow")
    ev, _, metrics = await _start(nursery, slow, call_timeout=0.5)
    t0 = trio.current_time()
    ev.offer(FP, _Order("a"), t0)
    ev.offer(FP, _Order("b"), t0)
    await trio.sleep(0.75)
    assert slow.calls == ["start", "a", "b"]
    assert _sample(metrics, "strategy_timeouts_total", strategy="slow") == 1
    await trio.sleep(0.5)
    assert ev.status()["slow"]["timeouts"] == 2


async def test_sync_overrun_counted_and_result_discarded(nursery: trio.Nursery) -> None:
    """A sync hook cannot be cancelled: an overrun is timed, counted, its bids dropped."""
    now = [0.0]

    class _SlowSync(_Recorder):
        def on_opportunity(self, opportunity: Any) -> Any:
            now[0] += 2.0  # the hook "takes" two seconds of the evaluator's clock
            return super().on_opportunity(opportunity)

    strat = _make(_SlowSync, "slowsync")
    ev, sink, metrics = await _start(
        nursery, strat, clock=lambda: now[0], call_timeout=1.0, max_opportunity_age=10.0
    )
    ev.offer(FP, _Order("x"), now[0])
    await trio.testing.wait_all_tasks_blocked()
    assert strat.calls == ["start", "x"]
    assert sink.bids == []
    assert _sample(metrics, "strategy_timeouts_total", strategy="slowsync") == 1


@pytest.mark.parametrize(("policy", "kept"), [("oldest", ["o4", "o5"]), ("newest", ["o1", "o2"])])
async def test_full_inbox_drops_counted_and_offer_never_blocks(
    nursery: trio.Nursery, policy: str, kept: list[str]
) -> None:
    """A slow strategy's inbox drops under either policy; the reader calling offer never waits."""
    slow = _make(_Blocker, "slow")
    ev, _, metrics = await _start(
        nursery, slow, inbox_size=2, drop_policy=policy, call_timeout=60.0
    )
    ev.offer(FP, _Order("o0"), trio.current_time())
    await trio.testing.wait_all_tasks_blocked()  # o0 is in the strategy's hands now
    reader_done = trio.Event()

    async def reader() -> None:
        for i in range(1, 6):
            ev.offer(FP, _Order(f"o{i}"), trio.current_time())
            await trio.lowlevel.checkpoint()
        reader_done.set()

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    assert reader_done.is_set()  # while the strategy is still stuck on o0
    assert slow.calls == ["start", "o0"]
    assert ev.status()["slow"]["inbox_depth"] == 2
    assert ev.status()["slow"]["drops"]["inbox_full"] == 3
    assert _sample(metrics, "drops_total", venue=FP, strategy="slow", reason="inbox_full") == 3
    slow.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert slow.calls == ["start", "o0", *kept]


async def test_stale_opportunities_dropped_at_dequeue(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Opportunities older than max_opportunity_age when dequeued never reach the strategy."""
    slow = _make(_Blocker, "slow")
    slow.delay = 1.0
    ev, _, metrics = await _start(
        nursery, slow, max_opportunity_age=2.5, call_timeout=5.0, inbox_size=10
    )
    t0 = trio.current_time()
    ev.offer(FP, _Order("old"), t0 - 3.0)
    for i in range(5):
        ev.offer(FP, _Order(f"o{i}"), t0)
    await trio.sleep(10)
    # o0..o2 start at ages 0, 1, 2; o3 would start at age 3.
    assert slow.calls == ["start", "o0", "o1", "o2"]
    assert _sample(metrics, "drops_total", venue=FP, strategy="slow", reason="stale") == 3
    assert _sample(metrics, "opportunities_evaluated_total", strategy="slow") == 3


def _update(strategy: str, status: str) -> BidUpdate:
    return BidUpdate(
        local_id="b1",
        strategy=strategy,
        venue=FP,
        chain_id="1",
        opportunity_id="h",
        amount=1,
        status=status,
    )


async def test_bid_status_delivered_in_order_to_owner(nursery: trio.Nursery) -> None:
    """Status updates reach the owning strategy's on_bid_status, in order, and no other."""
    a, b = _make(_AsyncRecorder, "a"), _make(_Recorder, "b")
    ev, _, _ = await _start(nursery, a, b)
    for status in ["submitting", "submitted", "won"]:
        ev.bid_status(_update("a", status))
    ev.bid_status(_update("gone", "lost"))  # no such strategy: skipped
    await trio.testing.wait_all_tasks_blocked()
    assert a.calls == ["start", "submitting", "submitted", "won"]
    assert b.calls == ["start"]


async def test_bad_return_value_is_a_strategy_error(nursery: trio.Nursery) -> None:
    """A return that is not a bid, a sequence of bids or None is logged and counted."""

    class _Wrong(_Recorder):
        def on_opportunity(self, opportunity: Any) -> Any:
            return {"amount": 5} if opportunity.order_hash == "dict" else [_fill(opportunity), 3]

    strat = _make(_Wrong, "wrong")
    with capture_logs() as logs:
        ev, sink, metrics = await _start(nursery, strat)
        ev.offer(FP, _Order("dict"), trio.current_time())
        ev.offer(FP, _Order("list"), trio.current_time())
        await trio.testing.wait_all_tasks_blocked()
    assert sink.bids == []
    assert _sample(metrics, "strategy_errors_total", strategy="wrong") == 2
    problems = [e["problem"] for e in logs if e["event"] == "strategy_bad_result"]
    assert problems == [
        "returned dict: expected a bid intent, a sequence of them or None",
        "returned a sequence holding int: expected bid intents",
    ]
    assert ev.status()["wrong"]["consecutive_failures"] == 2


async def test_log_context_bound_per_call(nursery: trio.Nursery) -> None:
    """Logs inside a hook carry strategy, venue and opportunity_id from contextvars."""

    class _Talker(_Recorder):
        def on_opportunity(self, opportunity: Any) -> Any:
            structlog.get_logger().info("thinking")
            return None

    with capture_logs(processors=[merge_contextvars]) as logs:
        ev, _, _ = await _start(nursery, _make(_Talker, "talker"))
        ev.offer(FP, _Order("0xabc"), trio.current_time())
        await trio.testing.wait_all_tasks_blocked()
    [entry] = [e for e in logs if e["event"] == "thinking"]
    assert (entry["strategy"], entry["venue"], entry["opportunity_id"]) == ("talker", FP, "0xabc")


async def test_sink_failure_does_not_kill_strategy(nursery: trio.Nursery) -> None:
    """A sink that raises is logged; the strategy keeps being called."""

    class _BadSink:
        def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
            raise RuntimeError("submitter down")

    rec = _make(_Recorder, "rec")
    ev = Evaluator(EvaluatorConfig(), Metrics(), _BadSink())
    await nursery.start(ev.run, _loaded(rec))
    with capture_logs() as logs:
        ev.offer(FP, _Order("a"), trio.current_time())
        ev.offer(FP, _Order("b"), trio.current_time())
        await trio.testing.wait_all_tasks_blocked()
    assert rec.calls == ["start", "a", "b"]
    assert [e["event"] for e in logs].count("bid_submit_failed") == 2
    assert ev.status()["rec"]["errors"] == 0


async def test_replace_stops_old_before_starting_new(nursery: trio.Nursery) -> None:
    """replace() calls on_stop on every old strategy before on_start of the new ones."""
    order: list[str] = []

    class _Tracked(_Recorder):
        def on_start(self) -> None:
            order.append(f"start {self.context.name}#{id(self) % 1000}")

        def on_stop(self) -> None:
            order.append(f"stop {self.context.name}#{id(self) % 1000}")

    old = _make(_Tracked, "s")
    ev, _, _ = await _start(nursery, old)
    new = _make(_Tracked, "s")
    await ev.replace(_loaded(new))
    await trio.testing.wait_all_tasks_blocked()

    def tag(strategy: _Tracked) -> str:
        return f"{strategy.context.name}#{id(strategy) % 1000}"

    assert order == [f"start {tag(old)}", f"stop {tag(old)}", f"start {tag(new)}"]
    ev.offer(FP, _Order("x"), trio.current_time())
    await trio.testing.wait_all_tasks_blocked()
    assert new.calls == ["x"]
    assert old.calls == []


async def test_cancelled_run_still_calls_on_stop(nursery: trio.Nursery) -> None:
    """Cancelling run() (daemon shutdown) still gives each strategy its on_stop."""
    rec = _make(_AsyncRecorder, "rec")
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            await inner.start(Evaluator(EvaluatorConfig(), Metrics(), _Sink()).run, _loaded(rec))
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    assert rec.calls == ["start", "stop"]


_FILE = """
from searcherd.bids import FillIntent
from searcherd.strategy import Strategy

class Mark(Strategy[object]):
    name = "mark"
    venues = ("fusion_plus",)

    def on_opportunity(self, opp):
        return FillIntent(order_hash=opp.order_hash, src_chain_id=1, making_amount={})
"""


async def test_reload_runs_new_code_or_keeps_old_set_on_broken_file(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A reload runs edited code (same size, same mtime); a broken file keeps the old set."""
    path = tmp_path / "mark.py"
    path.write_text(textwrap.dedent(_FILE.format(111)), encoding="utf-8")
    stat = path.stat()
    config = Config(
        daemon=DaemonConfig(strategies_dir=str(tmp_path)), strategies={"mark": {"enabled": True}}
    )
    metrics, sink = Metrics(), _Sink()
    ev = Evaluator(EvaluatorConfig(), metrics, sink)
    await nursery.start(ev.run, load_enabled(config))

    async def amounts_after_offer() -> list[int]:
        sink.bids.clear()
        ev.offer(FP, _Order("h"), trio.current_time())
        await trio.testing.wait_all_tasks_blocked()
        return [bid.amount for _, bid, _ in sink.bids]

    assert await amounts_after_offer() == [111]
    path.write_text(textwrap.dedent(_FILE.format(222)), encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert await ev.reload(config)
    assert await amounts_after_offer() == [222]

    path.write_text("from searcherd.bids import (\n", encoding="utf-8")
    with capture_logs() as logs:
        assert not await ev.reload(config)
    [failed] = [e for e in logs if e["event"] == "strategies_reload_failed"]
    assert "mark.py:1: SyntaxError" in failed["problems"][0]
    assert failed["kept"] == ["mark"]
    assert await amounts_after_offer() == [222]
    assert ev.status()["mark"]["state"] == "running"


async def test_hanging_on_start_and_on_stop_are_bounded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """on_start and on_stop run under call_timeout too: a hang there cannot stall a reload."""

    class _Stuck(_Recorder):
        async def on_start(self) -> None:  # type: ignore[override]
            await trio.sleep_forever()

        async def on_stop(self) -> None:  # type: ignore[override]
            await trio.sleep_forever()

    stuck = _make(_Stuck, "stuck")
    ev, _, metrics = await _start(nursery, stuck, call_timeout=0.5)
    await trio.sleep(1)
    ev.offer(FP, _Order("after_start"), trio.current_time())
    await trio.testing.wait_all_tasks_blocked()
    assert stuck.calls == ["after_start"]
    t0 = trio.current_time()
    await ev.replace(_loaded())
    assert trio.current_time() - t0 == pytest.approx(0.5)
    assert _sample(metrics, "strategy_timeouts_total", strategy="stuck") == 2
    assert ev.status() == {}
