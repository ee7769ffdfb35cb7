"""The strategy evaluator: one bounded inbox and one task per strategy, each call under a deadline.

The socket reader hands every opportunity to `Evaluator.offer`, which never blocks: it appends
to each interested strategy's inbox (a `deque`) and wakes that strategy's task. A strategy whose
`on_opportunity` is a plain function and whose task is idle (nothing queued, no call running) is
called right there instead, in the reader's task: the same call the task would make next, under
the same rules, without the trip through the scheduler (the hot path of a latency-bound daemon).
Should that plain function return an awaitable, its task awaits it (under the same deadline)
and the strategy goes through its task from then on. A full inbox
drops (the oldest queued opportunity or the new one, per `[evaluator] drop_policy`) and counts
the drop, because a blocked reader stops answering the venue's pings and opportunities are
perishable anyway. An opportunity older than `max_opportunity_age` when its turn comes is
dropped as stale and never reaches the strategy.

Each strategy task calls the strategy's hooks one at a time, so a strategy sees its
opportunities in arrival order and never runs concurrently with itself. Every call runs under
`call_timeout`:

- an async hook is cancelled at the deadline;
- a sync hook runs inline and cannot be cancelled: it is timed, and a call that overran counts
  as a timeout and its result is discarded. While it runs it holds the whole event loop (the
  socket readers too), so strategy authors keep sync hooks short and move heavy work to an
  async hook (`trio.to_thread.run_sync`). A sync hook that never returns hangs the daemon.

An exception or a timeout is logged, counted and never leaves the strategy's task. After
`max_consecutive_failures` failed calls in a row (a success resets the streak) the strategy is
quarantined: it stops receiving, its queues are discarded and `on_stop` is called; the others
carry on. It runs again after a reload that brings it back.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import structlog
import trio
from structlog.contextvars import bind_contextvars, bound_contextvars, reset_contextvars

from searcherd.bids import BidUpdate, EvmBid, FillIntent, LimoBid, SwapBid
from searcherd.plugins import LoadedStrategies, LoadedStrategy, StrategyLoadError, load_enabled
from searcherd.strategy import Strategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client import Counter

    from searcherd.bids import BidIntent
    from searcherd.config import Config, EvaluatorConfig
    from searcherd.metrics import Metrics
    from searcherd.strategy import ExpressRelayView, FusionPlusView

__all__ = ["BidSink", "Evaluator"]

_log = structlog.get_logger(__name__)

_STATUS_QUEUE_MAX: Final = 4096
"""Bid status updates queued for one strategy before new ones are dropped (and counted)."""
_DROP_LOG_INTERVAL: Final = 1.0
"""At most one debug line per strategy per this many seconds about drops (no log flood)."""
_BID_TYPES: Final = (SwapBid, LimoBid, EvmBid, FillIntent)

_Entry = tuple[str, Any, float]
"""An inbox entry: (venue, opportunity, received_at)."""


class BidSink(Protocol):
    """Where the evaluator sends bid intents: the venue submitters, behind the risk gate."""

    def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
        """Take one bid intent; must not block (it is called from a strategy's task)."""
        ...


class _Runner:
    """One strategy's queues, state and counters; its task is `Evaluator._run_strategy`."""

    def __init__(self, loaded: LoadedStrategy, config: EvaluatorConfig, metrics: Metrics) -> None:
        self.name = loaded.name
        self.strategy = loaded.instance
        self.venues = loaded.venues
        self.inbox: deque[_Entry] = deque()
        self.inbox_size = config.inbox_size
        self.drop_oldest = config.drop_policy == "oldest"
        self.statuses: deque[BidUpdate] = deque()
        self.lot = trio.lowlevel.ParkingLot()
        # True while the task waits on `lot`: producers unpark only then (nothing to wake
        # otherwise, and an unpark with no one parked still costs a call).
        self.parked = False
        # Called inline by `offer` while idle: a plain `on_opportunity` (until it returns an
        # awaitable once). `handoff` holds such an awaitable for the task to finish.
        self.inline = not inspect.iscoroutinefunction(loaded.instance.on_opportunity)
        self.handoff: tuple[Any, str, Any, float, float] | None = None
        self.state = "running"  # running | quarantined | stopped
        self.stopping = False
        self.done = trio.Event()
        self.errors = 0
        self.timeouts = 0
        self.streak = 0
        self.evaluated = 0
        self.drops = {"inbox_full": 0, "stale": 0, "status_queue_full": 0}
        self.metrics = metrics
        # Children bound once: `.labels()` costs a lock and a lookup per call.
        self.m_evaluated = metrics.opportunities_evaluated.labels(strategy=self.name)
        self.m_errors = metrics.strategy_errors.labels(strategy=self.name)
        self.m_timeouts = metrics.strategy_timeouts.labels(strategy=self.name)
        # A strategy that keeps the base class's `on_bid_status` (a no-op that returns None)
        # needs no call per status: only its effect, a successful call, is applied.
        hook = getattr(type(self.strategy), "on_bid_status", None)
        own = getattr(self.strategy, "__dict__", {})  # a hook set on the instance itself
        self.ignores_statuses = hook is Strategy.on_bid_status and "on_bid_status" not in own
        self._unlogged_drops = 0
        self._drop_log_at = float("-inf")

    def wake(self) -> None:
        """Wake the task if it waits for work."""
        if self.parked:
            self.parked = False
            self.lot.unpark()

    def put(self, entry: _Entry, now: Callable[[], float]) -> None:
        """Queue one opportunity under the drop policy; never blocks."""
        inbox = self.inbox
        if len(inbox) >= self.inbox_size:
            if not self.drop_oldest:
                self.drop(entry[0], "inbox_full", now)
                return
            self.drop(inbox.popleft()[0], "inbox_full", now)
        inbox.append(entry)
        self.wake()

    def drop(self, venue: str, reason: str, now: Callable[[], float]) -> None:
        """Count one dropped item; log at debug, at most once per interval per strategy."""
        self.drops[reason] += 1
        self.metrics.drops.labels(venue=venue, strategy=self.name, reason=reason).inc()
        self._unlogged_drops += 1
        t = now()
        if t >= self._drop_log_at:
            _log.debug(
                "strategy_drops",
                strategy=self.name,
                venue=venue,
                reason=reason,
                dropped=self._unlogged_drops,
                inbox_depth=len(self.inbox),
            )
            self._unlogged_drops = 0
            self._drop_log_at = t + _DROP_LOG_INTERVAL

    def built(self, venue: str) -> Counter:
        """The `bids_built` child for this strategy and `venue`."""
        return self.metrics.child(self.metrics.bids_built, self.name, venue)


def _opportunity_id(opportunity: Any) -> Any:
    """Express Relay opportunities have an `opportunity_id`; Fusion+ orders an `order_hash`."""
    oid = getattr(opportunity, "opportunity_id", None)
    return oid if oid is not None else getattr(opportunity, "order_hash", None)


def _bad_result(result: Any, venue: str) -> str | None:
    """Why `result` is not a valid `on_opportunity` return for `venue` (None when it is)."""
    if isinstance(result, _BID_TYPES):
        items: Sequence[Any] = (result,)
    elif isinstance(result, Sequence) and not isinstance(result, (str, bytes)):
        items = result
    else:
        return (
            f"returned {type(result).__name__}: expected a bid intent, a sequence of them or None"
        )
    for item in items:
        if not isinstance(item, _BID_TYPES):
            return f"returned a sequence holding {type(item).__name__}: expected bid intents"
        if item.venue != venue:
            return f"returned a {item.venue} bid intent for a {venue} opportunity"
    return None


class Evaluator:
    """Runs the loaded strategies: routing, inboxes, deadlines, isolation, quarantine, reload.

    `offer` and `bid_status` are synchronous and never block; `run` owns the strategy tasks;
    `replace` swaps the whole set on reload; `status` reports per strategy for /healthz.
    """

    def __init__(
        self,
        config: EvaluatorConfig,
        metrics: Metrics,
        sink: BidSink,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._sink = sink
        self._clock = clock
        self._runners: dict[str, _Runner] = {}
        self._routes: dict[str, tuple[_Runner, ...]] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = trio.Event()
        self._swap_lock = trio.Lock()

    # -- intake (sync, called from socket readers) -------------------------------------------

    def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
        """Queue `opportunity` for every running strategy of `venue`; never blocks."""
        routes = self._routes.get(venue)
        if not routes:
            return
        # One entry shared by every inbox: the only allocation per opportunity.
        entry = (venue, opportunity, received_at)
        for runner in routes:
            # `parked` means its task waits with nothing queued and no call running: calling
            # now is exactly what the task would do next, so order and one-call-at-a-time hold.
            if runner.parked and runner.inline and not runner.stopping:
                self._evaluate_inline(runner, venue, opportunity, received_at)
            else:
                runner.put(entry, self._clock)

    def bid_status(self, update: BidUpdate) -> None:
        """Queue a status change for the strategy that made the bid; never blocks.

        Updates for a strategy that is not running (removed by a reload, quarantined) are
        skipped; past `_STATUS_QUEUE_MAX` queued updates new ones are dropped and counted.
        """
        runner = self._runners.get(update.strategy)
        if runner is None or runner.state != "running" or runner.stopping:
            _log.debug("bid_status_unrouted", strategy=update.strategy, bid_id=update.local_id)
            return
        if runner.ignores_statuses:
            # The base class's hook does nothing: no call, no wake-up, and no effect on the
            # failure streak (a status of an old bid says nothing about the strategy's health).
            return
        if len(runner.statuses) >= _STATUS_QUEUE_MAX:
            runner.drop(update.venue, "status_queue_full", self._clock)
            return
        runner.statuses.append(update)
        runner.wake()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(
        self,
        strategies: LoadedStrategies,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run `strategies` until `stop()` (each gets `on_stop`) or until cancelled.

        On cancellation every running strategy still gets `on_stop`, shielded and bounded by
        `call_timeout`.
        """
        if self._nursery is not None:
            raise RuntimeError("the evaluator is already running")
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for runner in self._install(strategies):
                    nursery.start_soon(self._run_strategy, runner, name=f"strategy:{runner.name}")
                task_status.started()
                await self._closing.wait()
                async with self._swap_lock:
                    await self._stop_runners(list(self._runners.values()))
                    self._install(LoadedStrategies())
            finally:
                self._nursery = None

    @property
    def running(self) -> bool:
        """True between `run` starting the strategies and `stop` (a reload may replace them)."""
        return self._nursery is not None and not self._closing.is_set()

    def stop(self) -> None:
        """Make `run` stop every strategy (calling `on_stop`) and return."""
        self._closing.set()
        self._routes = {}  # from now on no strategy takes an opportunity, inline or queued

    async def replace(self, strategies: LoadedStrategies) -> None:
        """Swap the running set for `strategies` (SIGHUP reload); returns once swapped.

        New opportunities go to the new inboxes from the moment this is called. Every old
        strategy finishes its current call and gets `on_stop` before any new one gets
        `on_start`, so two instances of one strategy never run at once. What was still queued
        in an old inbox is discarded, also for a strategy that survives under the same name:
        stale by the time the new instance could see it, and its state is the old instance's.
        """
        async with self._swap_lock:
            nursery = self._nursery
            if nursery is None:
                raise RuntimeError("the evaluator is not running")
            old = list(self._runners.values())
            new = self._install(strategies)
            await self._stop_runners(old)
            for name in {r.name for r in old} - {r.name for r in new}:
                self._metrics.strategy_quarantined.labels(strategy=name).set(0)
            for runner in new:
                nursery.start_soon(self._run_strategy, runner, name=f"strategy:{runner.name}")
            _log.info("strategies_replaced", old=[r.name for r in old], new=[r.name for r in new])

    async def reload(
        self,
        config: Config,
        *,
        express_relay: ExpressRelayView | None = None,
        fusion_plus: FusionPlusView | None = None,
    ) -> bool:
        """Load `config`'s enabled strategies from source and swap them in (SIGHUP).

        On any load problem the running set is kept, the problems are logged
        (`strategies_reload_failed`) and False is returned. Loading runs plugin module code
        inline, once per reload.
        """
        try:
            new = load_enabled(config, express_relay=express_relay, fusion_plus=fusion_plus)
        except StrategyLoadError as exc:
            _log.error("strategies_reload_failed", problems=exc.problems, kept=list(self._runners))
            return False
        await self.replace(new)
        return True

    def status(self) -> dict[str, dict[str, Any]]:
        """Per strategy: state, venues, calls, errors, timeouts, drops and queue depths."""
        return {
            name: {
                "state": r.state,
                "quarantined": r.state == "quarantined",
                "venues": list(r.venues),
                "evaluated": r.evaluated,
                "errors": r.errors,
                "timeouts": r.timeouts,
                "consecutive_failures": r.streak,
                "drops": dict(r.drops),
                "inbox_depth": len(r.inbox),
                "status_depth": len(r.statuses),
            }
            for name, r in self._runners.items()
        }

    def _install(self, strategies: LoadedStrategies) -> list[_Runner]:
        """Make `strategies` the routed set (their tasks are started by the caller)."""
        runners = [_Runner(s, self._config, self._metrics) for s in strategies]
        self._runners = {r.name: r for r in runners}
        for r in runners:
            self._metrics.strategy_quarantined.labels(strategy=r.name).set(0)
        self._reroute()
        return runners

    def _reroute(self) -> None:
        """Rebuild the venue -> running strategies table (after a swap or a quarantine)."""
        routes: dict[str, list[_Runner]] = {}
        for r in self._runners.values():
            if r.state == "running" and not r.stopping:
                for venue in r.venues:
                    routes.setdefault(venue, []).append(r)
        # Swapped in one assignment: `offer` sees the old table or the new, never a mix.
        self._routes = {venue: tuple(rs) for venue, rs in routes.items()}

    async def _stop_runners(self, runners: list[_Runner]) -> None:
        """Ask `runners` to stop and wait until each has run `on_stop` (bounded per call)."""
        for r in runners:
            r.stopping = True
            r.wake()
        for r in runners:
            await r.done.wait()

    # -- the strategy task -------------------------------------------------------------------

    async def _run_strategy(self, runner: _Runner) -> None:
        """Call one strategy's hooks in order until it is stopped or quarantined."""
        # Each trio task runs in a copy of its parent's context: this binding is this task's.
        bind_contextvars(strategy=runner.name)
        strategy = runner.strategy
        max_age = self._config.max_opportunity_age
        clock = self._clock
        try:
            started, _ = await self._call(runner, "on_start", strategy.on_start)
            if started:
                runner.streak = 0
            while runner.state == "running" and not runner.stopping:
                if runner.handoff is not None:
                    # An inline call returned an awaitable: finish that call before any other.
                    await self._finish_handoff(runner)
                # Status updates first: they are about bids already made, and small.
                elif runner.statuses:
                    update = runner.statuses.popleft()
                    with bound_contextvars(
                        venue=update.venue,
                        opportunity_id=update.opportunity_id,
                        bid_id=update.local_id,
                    ):
                        ok, _ = await self._call(
                            runner, "on_bid_status", strategy.on_bid_status, update
                        )
                    if ok:
                        runner.streak = 0
                elif runner.inbox:
                    venue, opportunity, received_at = runner.inbox.popleft()
                    if clock() - received_at > max_age:
                        runner.drop(venue, "stale", clock)
                        continue
                    await self._evaluate(runner, venue, opportunity, received_at)
                    # A sync hook never yields: without this, one task would drain a whole
                    # burst before the sender writes the first bid or the reader reads on.
                    await trio.lowlevel.checkpoint()
                else:
                    runner.parked = True
                    await runner.lot.park()
        finally:
            if runner.handoff is not None:
                close = getattr(runner.handoff[0], "close", None)  # a coroutine never awaited
                if close is not None:
                    close()
                runner.handoff = None
            discarded = len(runner.inbox)
            runner.inbox.clear()
            runner.statuses.clear()
            if runner.state == "running":
                runner.state = "stopped"
            # Shielded so that shutdown (a cancelled run) still lets the strategy clean up;
            # `_call` bounds it by `call_timeout`.
            with trio.CancelScope(shield=True):
                await self._call(runner, "on_stop", strategy.on_stop)
            _log.info("strategy_stopped", state=runner.state, discarded=discarded)
            runner.done.set()

    async def _evaluate(
        self, runner: _Runner, venue: str, opportunity: Any, received_at: float
    ) -> None:
        """One `on_opportunity` call in the strategy's task; its bids go to the sink."""
        runner.evaluated += 1
        runner.m_evaluated.inc()
        # Tokens reset by hand: `bound_contextvars` is a generator context manager and costs
        # three times as much, once per opportunity.
        tokens = bind_contextvars(venue=venue, opportunity_id=_opportunity_id(opportunity))
        try:
            ok, result = await self._call(
                runner, "on_opportunity", runner.strategy.on_opportunity, opportunity
            )
            self._take_bids(runner, venue, ok, result, received_at)
        finally:
            reset_contextvars(**tokens)

    def _evaluate_inline(
        self, runner: _Runner, venue: str, opportunity: Any, received_at: float
    ) -> None:
        """One `on_opportunity` call in the caller's task (see the module docstring)."""
        runner.evaluated += 1
        runner.m_evaluated.inc()
        # The strategy's own task has `strategy` bound; this task has not.
        tokens = bind_contextvars(
            strategy=runner.name, venue=venue, opportunity_id=_opportunity_id(opportunity)
        )
        try:
            deadline = trio.current_time() + self._config.call_timeout
            ok, result = self._call_now(
                runner, "on_opportunity", runner.strategy.on_opportunity, opportunity
            )
            if ok and inspect.isawaitable(result):
                # A plain function that returned an awaitable: only a task can await it.
                runner.inline = False
                runner.handoff = (result, venue, opportunity, received_at, deadline)
                runner.wake()
                return
            self._take_bids(runner, venue, ok, result, received_at)
        finally:
            reset_contextvars(**tokens)

    async def _finish_handoff(self, runner: _Runner) -> None:
        """Await what an inline call returned, under that call's deadline, and take its bids."""
        assert runner.handoff is not None
        awaitable, venue, opportunity, received_at, deadline = runner.handoff
        runner.handoff = None
        tokens = bind_contextvars(venue=venue, opportunity_id=_opportunity_id(opportunity))
        try:
            ok, result = await self._await_hook(runner, "on_opportunity", awaitable, deadline)
            self._take_bids(runner, venue, ok, result, received_at)
        finally:
            reset_contextvars(**tokens)

    def _take_bids(
        self, runner: _Runner, venue: str, ok: bool, result: Any, received_at: float
    ) -> None:
        """Check what `on_opportunity` returned and hand its bids to the sink."""
        if not ok:
            return
        if result is None:
            runner.streak = 0
            return
        problem = _bad_result(result, venue)
        if problem is not None:
            runner.errors += 1
            runner.m_errors.inc()
            _log.error("strategy_bad_result", hook="on_opportunity", problem=problem)
            self._failed(runner)
            return
        runner.streak = 0
        if isinstance(result, _BID_TYPES):
            self._submit(runner, result, received_at)
        else:
            for bid in result:
                self._submit(runner, bid, received_at)

    def _submit(self, runner: _Runner, bid: BidIntent, received_at: float) -> None:
        """Hand one bid to the sink; a sink failure is logged, never the strategy's fault."""
        runner.built(bid.venue).inc()
        try:
            self._sink.submit(runner.name, bid, received_at)
        except Exception:
            _log.exception("bid_submit_failed")

    async def _call(
        self, runner: _Runner, hook: str, fn: Callable[..., Any], *args: Any
    ) -> tuple[bool, Any]:
        """Call a sync or async hook under the deadline; (False, None) on error or timeout.

        The caller resets the failure streak on success: `on_opportunity`'s result must still
        be checked before the call counts as one.
        """
        # Taken before the call, so an async hook's deadline counts from the same moment a
        # cancel scope opened around the whole call would have.
        deadline = trio.current_time() + self._config.call_timeout
        ok, result = self._call_now(runner, hook, fn, *args)
        if ok and inspect.isawaitable(result):
            return await self._await_hook(runner, hook, result, deadline)
        return ok, result

    def _call_now(
        self, runner: _Runner, hook: str, fn: Callable[..., Any], *args: Any
    ) -> tuple[bool, Any]:
        """Call `fn` without awaiting: (False, None) on error; a plain result is timed (a sync
        hook cannot be cancelled: one that overran counts as a timeout); an awaitable is
        returned for the caller to await."""
        started = self._clock()
        try:
            result = fn(*args)
        except Exception:
            self._errored(runner, hook)
            return False, None
        if inspect.isawaitable(result):
            return True, result
        if self._clock() - started > self._config.call_timeout:
            self._timed_out(runner, hook, sync=True)
            return False, None
        return True, result

    async def _await_hook(
        self, runner: _Runner, hook: str, awaitable: Any, deadline: float
    ) -> tuple[bool, Any]:
        """Await a hook's awaitable, cancelled at `deadline`; (False, None) on error or timeout."""
        try:
            # Only an awaited hook can be cancelled, so only it gets a cancel scope (a sync
            # hook, the common case, spares one per call).
            with trio.move_on_at(deadline) as scope:
                result = await awaitable
        except Exception:
            self._errored(runner, hook)
            return False, None
        # `cancel_called` as well: a hook that swallowed the Cancelled still overran.
        if scope.cancelled_caught or scope.cancel_called:
            self._timed_out(runner, hook, sync=False)
            return False, None
        return True, result

    def _errored(self, runner: _Runner, hook: str) -> None:
        """Count and log a hook that raised (called from its `except` block)."""
        runner.errors += 1
        runner.m_errors.inc()
        _log.error("strategy_error", hook=hook, exc_info=True)
        self._failed(runner)

    def _timed_out(self, runner: _Runner, hook: str, *, sync: bool) -> None:
        """Count and log a hook that overran its deadline."""
        runner.timeouts += 1
        runner.m_timeouts.inc()
        _log.warning("strategy_timeout", hook=hook, timeout=self._config.call_timeout, sync=sync)
        self._failed(runner)

    def _failed(self, runner: _Runner) -> None:
        """Count a failed call; quarantine the strategy after too many in a row."""
        runner.streak += 1
        if runner.streak < self._config.max_consecutive_failures or runner.state != "running":
            return
        runner.state = "quarantined"
        runner.wake()  # after an inline call its task is parked: it must see this and stop
        self._reroute()
        self._metrics.strategy_quarantined.labels(strategy=runner.name).set(1)
        _log.error(
            "strategy_quarantined",
            consecutive_failures=runner.streak,
            errors=runner.errors,
            timeouts=runner.timeouts,
        )
