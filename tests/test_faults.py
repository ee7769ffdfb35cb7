"""The fault matrix: every way the auction server breaks, with bids flowing, and nothing lost.

Each test runs the real Express Relay venue, the real evaluator and a small real strategy that
bids on every swap opportunity, against the simulator, while the test keeps publishing swap
opportunities. One fault is injected in the middle of the flow, then three things are checked:

1. the venue keeps running: after a fault that breaks the link it is reconnected, subscribed
   again and ready within ``backoff_max + liveness_window`` on the trio clock (plus the slow
   retry the server asked for on 401/429); after a fault that does not break the link, it never
   left it;
2. bids flow again: the simulator accepts new bids from the strategy after the fault;
3. nothing is lost: once the opportunities stop and every auction has ended, the state table
   agrees with the simulator's record of every bid (``assert_state_matches_simulator``).

Narrower tests of single faults live next to the code (the venue, submitter, reconciler and
connection tests); this module proves the whole daemon path under each of them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import pytest
import structlog
import trio
import trio.testing

from searcherd.bids import SwapBid
from searcherd.config import Count, EvaluatorConfig, LimitsConfig, Seconds
from searcherd.connection import ConnectionSettings
from searcherd.evaluator import Evaluator
from searcherd.express_relay.messages import BidStatus, SwapOpportunity, TokensUserSpecified
from searcherd.express_relay.simulator import Timings
from searcherd.plugins import LoadedStrategies, LoadedStrategy
from searcherd.strategy import NoParams, Strategy, StrategyContext

sys.path.insert(0, str(Path(__file__).parent))
from _nothing_lost import (
    assert_state_matches_simulator,
    open_bids,
    record_of,
    restart_simulator,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import ErHarness

    from searcherd.bids import BidIntent
    from searcherd.express_relay.simulator import ExpressRelaySimulator
    from searcherd.express_relay.venue import ExpressRelayVenue

ER_KEY: Final = "er-test-key-0123456789"
STRATEGY: Final = "every_swap"
PUBLISH_EVERY: Final = 0.5  # seconds between published swap opportunities
VENUE_SETTINGS: Final[dict[str, Any]] = {
    "api_key": True,  # own-bid listing: id-less bids are matched by signature after a fault
    "backoff_max": 5.0,
    "liveness_window": 10.0,
    "ping_interval": 3.0,
    "ping_timeout": 2.0,
    "request_timeout": 2.0,
    "reconcile_interval": 1.0,
    "swap_auction_window": 5.0,
}
_DEFAULTS: Final = ConnectionSettings(url="ws://unused")
RECOVERY: Final = VENUE_SETTINGS["backoff_max"] + VENUE_SETTINGS["liveness_window"]
SETTLE_LIMIT: Final = 400.0  # trio seconds for every auction to end once publishing stops


class EverySwap(Strategy[NoParams]):
    """Bid 99% of the specified amount on every swap opportunity once a blockhash is known."""

    name = STRATEGY
    venues = ("express_relay",)

    def on_opportunity(self, opportunity: Any) -> SwapBid | None:
        """A swap bid for a swap opportunity; nothing otherwise."""
        if not isinstance(opportunity, SwapOpportunity):
            return None
        view = self.context.express_relay
        if view is None or view.chain(opportunity.chain_id) is None:
            return None
        tokens = opportunity.tokens
        specified = (
            tokens.user_amount
            if isinstance(tokens, TokensUserSpecified)
            else tokens.searcher_amount
        )
        return SwapBid(opportunity=opportunity, amount=max(1, specified * 99 // 100))


@attrs.define
class _ToVenue:
    """The evaluator's sink: hands bid intents to whichever venue runs now."""

    er: ErHarness

    def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
        """Forward one bid intent to the running venue."""
        assert self.er.venue is not None
        self.er.venue.submit(strategy, bid, received_at)  # type: ignore[arg-type]


@attrs.define
class _Tee:
    """The venue's sink: the evaluator, plus the harness's recorder for assertions."""

    evaluator: Evaluator
    recorder: Any

    def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
        """Offer to the strategies and record."""
        self.recorder.offer(venue, opportunity, received_at)
        self.evaluator.offer(venue, opportunity, received_at)

    def bid_status(self, update: Any) -> None:
        """Route a status change to the strategy and record it."""
        self.recorder.bid_status(update)
        self.evaluator.bid_status(update)


class Flow:
    """The running system under test: simulator, venue, evaluator, strategy and a publisher."""

    def __init__(self, er: ErHarness) -> None:
        self.er = er
        self.publishing = True
        self.frozen: set[str] = set()  # simulator bids that can no longer change (see restart)

    @property
    def sim(self) -> ExpressRelaySimulator:
        """The simulator running now (a restart replaces it)."""
        assert self.er.sim is not None
        return self.er.sim

    @property
    def venue(self) -> ExpressRelayVenue:
        """The venue under test."""
        assert self.er.venue is not None
        return self.er.venue

    async def start(self) -> None:
        """Start everything and wait until the strategy's bids are being accepted."""
        er = self.er
        await er.start(
            api_keys=(ER_KEY,),
            swap_lifetime=5.0,
            chain_update_interval=2.0,
            timings=Timings(expire=20.0, cancel_window=5.0),
            outcomes={"won": 3.0, "lost": 3.0, "failed": 1.0, "expired": 1.0},
        )
        evaluator = Evaluator(
            EvaluatorConfig(max_opportunity_age=Seconds(10.0)), er.metrics, sink=_ToVenue(er)
        )
        er.sink = _Tee(evaluator, er.sink)  # type: ignore[assignment]
        limits = LimitsConfig(max_in_flight=Count(10_000), max_bids_per_second=Count(10_000))
        venue = await er.start_venue(limits=limits, max_opportunity_age=10.0, **VENUE_SETTINGS)
        context = StrategyContext(
            STRATEGY, structlog.get_logger(STRATEGY), express_relay=venue.view
        )
        strategy = EverySwap(NoParams(), context)
        loaded = LoadedStrategy(STRATEGY, EverySwap, NoParams(), strategy, Path(__file__))
        await er.nursery.start(evaluator.run, LoadedStrategies((loaded,)))
        er.nursery.start_soon(self._publish)
        await self.wait_for_new_bids(3)

    async def _publish(self) -> None:
        while True:
            if self.publishing:
                self.sim.push_opportunity(program="swap")
            await trio.sleep(PUBLISH_EVERY)

    async def wait_for_new_bids(self, count: int, limit: float = 30.0) -> None:
        """Wait until the simulator accepted ``count`` more bids than it has now."""
        target = len(self.sim.bids) + count
        await self.er.wait_until(lambda: len(self.sim.bids) >= target, limit)

    async def wait_for_open_bid(self) -> str:
        """Wait for a bid the simulator has not finished yet and return its id."""
        await self.er.wait_until(lambda: bool(open_bids(self.sim, self.frozen)), 30.0)
        return open_bids(self.sim, self.frozen)[0]

    async def wait_recovered(self, since: float, reconnects: int, bound: float) -> float:
        """Wait until the venue is on a new link and ready; return how long it took."""
        venue = self.venue
        await self.er.wait_until(lambda: venue.snapshot()["reconnects"] > reconnects, bound + 5)
        with trio.fail_after(bound + 5):
            await venue.wait_ready()
        took = trio.current_time() - since
        assert took <= bound, f"recovered after {took:.1f}s, bound {bound:.1f}s"
        subscribed = [c for c in self.sim.connections.values() if "solana" in c.subscriptions]
        assert subscribed, "no connection subscribed again"
        return took

    async def settle_and_check(self) -> None:
        """Stop publishing, let every auction end, then compare the table with the simulator."""
        self.publishing = False
        er = self.er

        def settled() -> bool:
            return not open_bids(self.sim, self.frozen)

        await er.wait_until(settled, SETTLE_LIMIT)
        # The venue learns the last statuses by push or by its reconciler's polling; give it
        # until the table agrees, flushing the store's queue before each look.
        with trio.move_on_after(SETTLE_LIMIT):
            while True:
                await er.store.flush()
                try:
                    assert_state_matches_simulator(er.store.path, self.sim)
                    break
                except AssertionError:
                    await trio.sleep(1.0)
        await er.store.flush()
        diff = assert_state_matches_simulator(er.store.path, self.sim)
        assert diff.sim_bids >= 6, f"too few bids flowed to prove anything: {diff.describe()}"
        assert self.venue.snapshot()["healthy"] is True
        assert self.sim.internal_errors == []


@pytest.fixture
async def flow(er: ErHarness, autojump_clock: trio.testing.MockClock) -> Flow:
    """Everything started and bids flowing (on the autojump clock)."""
    running = Flow(er)
    await running.start()
    return running


# -- faults that break the link ------------------------------------------------------------


async def _tcp_reset(flow: Flow) -> None:
    flow.sim.drop_all_connections()


async def _close_1001(flow: Flow) -> None:
    flow.sim.close_all_connections(1001)


async def _half_open(flow: Flow) -> None:
    # Nothing more is sent, pongs included; the socket itself stays open.
    flow.sim.stall_connections()


async def _restart(flow: Flow) -> None:
    flow.er.sim, frozen = await restart_simulator(flow.er.nursery, flow.sim)
    flow.frozen |= frozen


async def _oversized(flow: Flow) -> None:
    flow.sim.send_oversized(_DEFAULTS.max_message_size + 1024)


async def _unauthorized(flow: Flow) -> None:
    flow.sim.reject_upgrades(401)
    flow.sim.drop_all_connections()


async def _rate_limited(flow: Flow) -> None:
    flow.sim.reject_upgrades(429)
    flow.sim.drop_all_connections()


async def _status_change_while_away(flow: Flow) -> None:
    bid_id = await flow.wait_for_open_bid()
    flow.sim.drop_all_connections()
    # The connection is marked closed at once: these changes can only be learned over HTTP.
    for open_id in open_bids(flow.sim, flow.frozen):
        record = flow.sim.bids[open_id]
        flow.sim.set_bid_status(open_id, BidStatus("won", record.signature))
    assert flow.sim.bids[bid_id].status.type == "won"


async def _too_far_behind(flow: Flow) -> None:
    flow.sim.flood_events()


LINK_FAULTS: Final[dict[str, tuple[Callable[[Flow], Awaitable[None]], float]]] = {
    "abrupt_tcp_close": (_tcp_reset, RECOVERY),
    "close_1001": (_close_1001, RECOVERY),
    "half_open": (_half_open, RECOVERY),
    "server_restart_same_port": (_restart, RECOVERY),
    "frame_over_size_limit": (_oversized, RECOVERY),
    "upgrade_401": (_unauthorized, RECOVERY + _DEFAULTS.unauthorized_retry),
    "upgrade_429": (_rate_limited, RECOVERY + _DEFAULTS.rate_limited_min),
    "status_change_while_away": (_status_change_while_away, RECOVERY),
    "1000_events_behind": (_too_far_behind, RECOVERY),
}


@pytest.mark.parametrize("fault", sorted(LINK_FAULTS))
async def test_link_fault_recovers_within_bound_and_loses_no_bid(
    flow: Flow, fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    """After a fault that breaks the link, the venue is reconnected, resubscribed and ready
    within the configured bound, bids flow again, and the state table agrees with the
    simulator on every bid."""
    inject, bound = LINK_FAULTS[fault]
    reconnects = flow.venue.snapshot()["reconnects"]
    # The hardest moment to break a link: a bid the server accepted whose answer has not come
    # back yet. Only the own-bid listing can tell the venue its server id afterwards.
    flow.sim.delay_responses(3600.0)
    await flow.wait_for_new_bids(1)
    started = trio.current_time()
    await inject(flow)
    flow.sim.delay_responses(0.0)
    await flow.wait_recovered(started, reconnects, bound)
    await flow.wait_for_new_bids(3)
    await flow.settle_and_check()


# -- faults that leave the link up ---------------------------------------------------------


async def _malformed(flow: Flow) -> None:
    flow.sim.send_malformed()


async def _unknown_shape(flow: Flow) -> None:
    flow.sim.send_unknown_shape()


async def _reordered(flow: Flow) -> None:
    flow.sim.reorder_responses(3)


async def _duplicated(flow: Flow) -> None:
    flow.sim.duplicate_responses(True)
    await flow.wait_for_new_bids(3)
    flow.sim.duplicate_responses(False)


async def _late(flow: Flow) -> None:
    # The next response comes a second after the request timed out.
    flow.sim.respond_late(VENUE_SETTINGS["request_timeout"] + 1.0)
    await flow.wait_for_new_bids(2)


async def _id_null(flow: Flow) -> None:
    # The server sends `id: null` when it cannot parse a frame; with no request of ours in
    # flight it can be tied to nothing and must only be logged.
    flow.publishing = False
    tracker = flow.venue._tracker
    await flow.er.wait_until(lambda: tracker.in_flight == 0, 30.0)
    flow.sim.send_raw('{"id": null, "status": "error", "result": "EOF while parsing a value"}')
    await trio.sleep(0.5)
    flow.publishing = True


STAY_FAULTS: Final[dict[str, Callable[[Flow], Awaitable[None]]]] = {
    "malformed_json": _malformed,
    "json_of_unknown_shape": _unknown_shape,
    "out_of_order_responses": _reordered,
    "duplicated_responses": _duplicated,
    "response_after_timeout": _late,
    "id_null_error": _id_null,
}


@pytest.mark.parametrize("fault", sorted(STAY_FAULTS))
async def test_frame_fault_keeps_the_link_and_loses_no_bid(
    flow: Flow, fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    """After a fault in the frames themselves, the venue stays on the same healthy link, bids
    keep flowing, and the state table agrees with the simulator on every bid."""
    reconnects = flow.venue.snapshot()["reconnects"]
    await STAY_FAULTS[fault](flow)
    await flow.wait_for_new_bids(3)
    snapshot = flow.venue.snapshot()
    assert snapshot["reconnects"] == reconnects
    assert snapshot["healthy"] is True
    assert flow.venue._connection.health.handler_errors == 0
    await flow.settle_and_check()
    assert flow.venue.snapshot()["reconnects"] == reconnects


async def test_unknown_status_keeps_the_link_and_is_recorded_not_applied(
    flow: Flow, autojump_clock: trio.testing.MockClock
) -> None:
    """A status type the client does not know leaves the link up, shows in the bid's history
    as not applied, and the bid still ends with the final status the server gives it later;
    the state table agrees with the simulator on every bid."""
    reconnects = flow.venue.snapshot()["reconnects"]
    bid_id = await flow.wait_for_open_bid()
    flow.sim.send_unknown_status(bid_id)
    await trio.sleep(1.0)
    flow.sim.set_bid_status(bid_id, BidStatus("lost", None))
    await flow.wait_for_new_bids(3)
    await flow.settle_and_check()
    assert flow.venue.snapshot()["reconnects"] == reconnects
    rows = await flow.er.rows(
        "SELECT h.status, h.applied FROM bid_status_history h JOIN bids b USING (local_id)"
        " WHERE b.server_bid_id = ? ORDER BY h.id",
        bid_id,
    )
    assert ("simulation_failed", 0) in rows
    assert rows[-1] == ("lost", 1)
    assert record_of(flow.sim)[bid_id].status == "lost"
