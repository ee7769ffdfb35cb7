"""Tests for the Express Relay venue: connection, resubscription, dispatch, the live opportunity
set, bad frames, health, and the request tracker's protocol quirks."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.testing

from searcherd.bids import EvmBid
from searcherd.express_relay._requests import Outcome, RequestTracker
from searcherd.express_relay.messages import LimoOpportunity, Response, SwapOpportunity
from searcherd.express_relay.opportunities import LiveOpportunities

if TYPE_CHECKING:
    from conftest import ErHarness


def _offered_ids(er: ErHarness) -> list[str]:
    return [opp.opportunity_id for _, opp, _ in er.sink.offers]


async def test_opportunities_are_offered_once_and_swaps_expire(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A new opportunity is offered and counted; the same id again (a refresh) is not offered
    again; a swap leaves the live set after the auction window, with no removal message."""
    sim = await er.start()
    venue = await er.start_venue()
    opp = sim.push_opportunity(program="swap")
    await er.wait_until(lambda: len(er.sink.offers) == 1)
    assert venue.view.live_opportunities("solana") == [opp]
    sim.push_opportunity(opp)
    await trio.sleep(0.1)
    assert _offered_ids(er) == [opp.opportunity_id]
    assert (
        er.metrics.opportunities_received.labels("express_relay", "solana", "swap")._value.get()
        == 2
    )
    await trio.sleep(0.3)
    assert venue.view.live_opportunities() == []


async def test_changed_limo_order_replaces_the_old_one_and_removal_clears_it(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A changed limo order under the same address replaces the older one; a
    ``remove_opportunities`` push removes it."""
    sim = await er.start()
    venue = await er.start_venue()
    first = sim.push_opportunity(program="limo")
    assert isinstance(first, LimoOpportunity)
    changed = attrs.evolve(
        first, opportunity_id="0e4a5b8c-1111-4222-8333-944455556666", slot=first.slot + 1
    )
    sim.push_opportunity(changed)
    await er.wait_until(lambda: len(er.sink.offers) == 2)
    assert venue.view.live_opportunities("solana") == [changed]
    sim.remove_opportunity(changed.opportunity_id)
    await er.wait_until(lambda: venue.view.live_opportunities() == [])


async def test_stale_swap_is_dropped_and_counted_but_an_old_limo_order_is_not(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A swap quote created longer ago than ``max_opportunity_age`` is neither offered nor
    live; a limo order stays valid until removed, so its creation time does not drop it."""
    sim = await er.start(swap_lifetime=math.inf, limo_lifetime=math.inf)
    venue = await er.start_venue(max_opportunity_age=2.0)
    ten_seconds_ago = int((time.time() - 10) * 1_000_000)
    swap = attrs.evolve(sim.push_opportunity(program="swap"),
                        opportunity_id="5c2e4b7a-0000-4000-8000-000000000001",
                        creation_time=ten_seconds_ago)  # fmt: skip
    sim.push_opportunity(swap)
    await er.wait_until(
        lambda: er.metrics.drops.labels("express_relay", "", "stale")._value.get() == 1
    )
    assert swap.opportunity_id not in _offered_ids(er)
    assert swap not in venue.view.live_opportunities()
    limo = attrs.evolve(sim.push_opportunity(program="limo"),
                        opportunity_id="5c2e4b7a-0000-4000-8000-000000000002",
                        creation_time=ten_seconds_ago)  # fmt: skip
    sim.push_opportunity(limo)
    await er.wait_until(lambda: limo.opportunity_id in _offered_ids(er))
    assert er.metrics.drops.labels("express_relay", "", "stale")._value.get() == 1


async def test_bad_and_unknown_frames_do_not_stop_the_feed(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Malformed JSON, unknown types, programs and versions are counted, and the feed goes on."""
    sim = await er.start()
    venue = await er.start_venue()
    sim.send_malformed()
    sim.send_unknown_shape()
    sim.send_raw('{"type": "new_opportunity", "opportunity": {"version": "v1", "program": "dex"}}')
    sim.send_raw('{"type": "new_opportunity", "opportunity": {"version": "v2"}}')
    sim.send_raw(b'{"type": "svm_chain_update", "update": {"chain_id": 5}}')
    opp = sim.push_opportunity(program="limo")
    await er.wait_until(lambda: _offered_ids(er) == [opp.opportunity_id])
    m = er.metrics
    assert m.decode_errors.labels("express_relay", "not_json")._value.get() == 1
    assert m.decode_errors.labels("express_relay", "invalid")._value.get() == 1
    for kind in ("unknown_type", "unknown_program", "unknown_version"):
        assert m.unknown_messages.labels("express_relay", kind)._value.get() == 1
    assert venue.snapshot()["healthy"] is True
    assert venue._connection.health.handler_errors == 0


async def _reconnected(er: ErHarness, reconnects: int = 1) -> None:
    assert er.venue is not None
    venue = er.venue
    await er.wait_until(lambda: venue.snapshot()["reconnects"] >= reconnects)
    with trio.fail_after(300):
        await venue.wait_ready()


async def _feed_works(er: ErHarness) -> None:
    assert er.sim is not None
    opp = er.sim.push_opportunity(program="limo")
    await er.wait_until(lambda: opp.opportunity_id in _offered_ids(er))


async def test_reconnects_and_resubscribes_after_an_abrupt_close(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A TCP reset is followed by a reconnect, a fresh subscription and a working feed."""
    sim = await er.start()
    await er.start_venue()
    sim.drop_all_connections()
    await _reconnected(er)
    await _feed_works(er)
    assert er.metrics.reconnects.labels("express_relay")._value.get() == 1
    assert er.metrics.venue_connected.labels("express_relay")._value.get() == 1


async def test_reconnects_after_a_going_away_close(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A 1001 close frame is followed by a reconnect and a working feed."""
    sim = await er.start()
    venue = await er.start_venue()
    sim.close_all_connections(1001)
    await _reconnected(er)
    await _feed_works(er)
    assert "1001" in (venue.snapshot()["last_error"] or "")


async def test_reconnects_when_the_server_stalls(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that stops sending (pongs included) is detected and left for a fresh link."""
    sim = await er.start()
    venue = await er.start_venue()
    await er.wait_until(venue.is_fresh)
    sim.stall_connections()
    await er.wait_until(lambda: not venue.is_fresh() or venue.snapshot()["reconnects"] > 0)
    await _reconnected(er)
    await _feed_works(er)


async def test_unauthorized_is_reported_and_retried_slowly(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A 401 at the upgrade shows in health and is retried on the slow schedule (60 s)."""
    sim = await er.start(api_keys=("er-test-key-0123456789",))
    sim.reject_upgrades(401, count=1)
    started = trio.current_time()
    venue = await er.start_venue(api_key=True, ready=False)
    await er.wait_until(lambda: "401" in (venue.snapshot()["last_error"] or ""))
    assert venue.snapshot()["healthy"] is False
    with trio.fail_after(200):
        await venue.wait_ready()
    assert trio.current_time() - started >= 60.0
    assert "er-test-key" not in str(venue.snapshot())


async def test_subscribe_error_is_a_setup_failure(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """An unknown chain makes ``subscribe`` fail: the server's text is kept, never ready."""
    await er.start()
    venue = await er.start_venue(chains=("solana", "nope"), ready=False)
    await er.wait_until(lambda: "not found" in (venue.snapshot()["last_error"] or ""))
    assert venue.snapshot()["healthy"] is False
    assert '"nope"' in venue.snapshot()["last_error"]


async def test_backfill_offers_what_is_live_at_connect(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Opportunities live before the venue connected come from the HTTP backfill."""
    # No expiry and a wide staleness cutoff: the store's worker-thread hops at start let the
    # autojump clock jump ahead to the next timer, however far away it is.
    sim = await er.start(limo_lifetime=math.inf)
    opp = sim.push_opportunity(program="limo")
    venue = await er.start_venue(max_opportunity_age=1_000.0)
    assert _offered_ids(er) == [opp.opportunity_id]
    assert venue.view.live_opportunities("solana") == [opp]


async def test_a_bid_on_a_backfilled_opportunity_is_sent_during_setup(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A strategy called at once on a backfilled opportunity (inline, during the venue's setup)
    gets its bid sent: the link takes bids from its accepted `subscribe` on, not only once the
    whole setup is done."""
    sim = await er.start(evm_chains=("op_sepolia",), evm_lifetime=math.inf)
    opp = sim.push_opportunity(program="evm")
    bids: list[str] = []

    class BidAtOnce:
        """The recording sink, plus a strategy that bids inside `offer` (as inline ones do)."""

        def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
            er.sink.offer(venue, opportunity, received_at)
            bid = EvmBid(opportunity=opportunity, amount=1000, target_contract="0x" + "ab" * 20,
                         target_calldata=b"\x01")  # fmt: skip
            bids.append(live._submitter.submit("strat", bid, received_at))

        def bid_status(self, update: Any) -> None:
            er.sink.bid_status(update)

    # Swapped in before the link is up: the backfill runs once it has connected.
    live = await er.start_venue(max_opportunity_age=1_000.0, ready=False)
    live._sink = BidAtOnce()
    with trio.fail_after(60):
        await live.wait_ready()
    assert _offered_ids(er) == [opp.opportunity_id]
    [local_id] = bids
    await er.wait_until(lambda: "pending" in er.sink.statuses(local_id))
    assert er.sink.statuses(local_id)[0] == "pending"  # never "blocked"


async def test_chain_state_and_health(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Chain updates feed the view; health says connected, fresh, and how old the last frame is."""
    sim = await er.start()
    venue = await er.start_venue()
    await er.wait_until(lambda: venue.view.chain("solana") is not None)
    state = venue.view.chain("solana")
    assert state is not None
    assert state.blockhash == sim.latest_chain_update["solana"].blockhash
    snap = venue.snapshot()
    assert snap["connected"] is True
    assert snap["healthy"] is True
    assert snap["last_message_age"] is not None
    assert venue.is_fresh()


# -- the request tracker and the live set, without a socket --------------------------------


async def test_tracker_correlates_out_of_order_and_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Responses match by id in any order; an unanswered request times out; a late response
    reaches ``on_late``; ``id: null`` with several in flight blames none of them."""
    tracker = RequestTracker(timeout=1.0, max_in_flight=2)
    done: dict[str, Outcome] = {}
    late: list[Response] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tracker.run_timeouts)
        a = tracker.begin("x", lambda o: done.__setitem__("a", o))
        b = tracker.begin("x", lambda o: done.__setitem__("b", o), on_late=late.append)
        tracker.resolve(Response(None, False, "cannot parse"))
        assert done == {}
        tracker.resolve(Response(a.id, True, None))
        assert done["a"].response is not None
        await trio.sleep(1.5)
        failure = done["b"].failure
        assert failure is not None
        assert failure.reason == "timeout"
        tracker.resolve(Response(b.id, True, None))
        assert len(late) == 1
        tracker.resolve(Response("999", True, None))
        assert tracker.unmatched_responses == 1
        nursery.cancel_scope.cancel()


async def test_tracker_fails_everything_when_the_socket_dies() -> None:
    """``fail_all`` fails every request at once and frees their slots."""
    tracker = RequestTracker(timeout=5.0, max_in_flight=2)
    outcomes: list[Outcome] = []
    for _ in range(2):
        assert await tracker.acquire_slot(0.1)
        tracker.begin("post_bid", outcomes.append, limited=True)
    assert not await tracker.acquire_slot(0.01)
    assert tracker.fail_all("disconnected") == 2
    assert [o.failure.reason for o in outcomes if o.failure] == ["disconnected", "disconnected"]
    assert tracker.limited_in_flight == 0


async def test_tracker_frees_a_slot_at_once_when_its_callback_is_deferred() -> None:
    """With ``defer``, a response frees its slot on arrival (a burst is not held at the cap)
    while its ``on_done`` waits for whoever runs the deferred calls, in arrival order."""
    deferred: list[tuple[Any, ...]] = []
    tracker = RequestTracker(
        timeout=5.0, max_in_flight=1, defer=lambda fn, *args: deferred.append((fn, *args))
    )
    outcomes: list[Outcome] = []
    assert tracker.try_acquire_slot()
    first = tracker.begin("post_bid", outcomes.append, limited=True)
    assert not tracker.try_acquire_slot()
    tracker.resolve(Response(first.id, True, None))
    assert tracker.limited_in_flight == 0
    assert tracker.in_flight == 0
    assert outcomes == []
    assert tracker.try_acquire_slot()
    tracker.begin("post_bid", outcomes.append, limited=True)
    assert tracker.fail_all("disconnected") == 1
    for fn, *args in deferred:
        fn(*args)
    assert outcomes[0].response is not None
    assert outcomes[0].response.id == first.id
    assert outcomes[1].failure is not None
    assert outcomes[1].failure.reason == "disconnected"


async def test_a_deferred_late_response_comes_after_its_own_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With ``defer``, the timeout's ``on_done`` and a late response's ``on_late`` wait in the
    same queue, so the bid learns of its timeout before the answer that came too late."""
    deferred: list[tuple[Any, ...]] = []
    tracker = RequestTracker(
        timeout=1.0, max_in_flight=1, defer=lambda fn, *args: deferred.append((fn, *args))
    )
    calls: list[tuple[str, str | None]] = []

    def done(outcome: Outcome) -> None:
        calls.append(("done", outcome.failure.reason if outcome.failure else None))

    def late(response: Response) -> None:
        calls.append(("late", response.id))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tracker.run_timeouts)
        req = tracker.begin("post_bid", done, on_late=late)
        await trio.sleep(1.5)
        tracker.resolve(Response(req.id, True, None))
        nursery.cancel_scope.cancel()
    assert calls == []
    assert tracker.late_responses == 1
    for fn, *args in deferred:
        fn(*args)
    assert calls == [("done", "timeout"), ("late", req.id)]


def _clocked() -> tuple[LiveOpportunities, list[float]]:
    now = [0.0]
    return LiveOpportunities(swap_window=0.25, clock=lambda: now[0]), now


def test_live_set_keys_removals_by_permission_account_and_router() -> None:
    """Removals only take what matches the (chain, router, permission account) key."""
    import random

    from searcherd.express_relay import _sim_state as st
    from searcherd.express_relay.messages import OpportunityDelete

    rng = random.Random(1)
    live, now = _clocked()
    swap = st.make_swap(rng, "solana", time.time(), cancellable=False)
    limo = st.make_limo(rng, "solana", time.time(), 5)
    assert live.add(swap, 0.0)
    assert live.add(limo, 0.0)
    other_router = OpportunityDelete("svm", "solana", "v1", permission_account=swap.permission_account,
                                     router="x", program="swap")  # fmt: skip
    assert live.remove(other_router) == 0
    match = attrs.evolve(other_router, router=swap.router_account)
    assert live.remove(match) == 1
    limo_delete = OpportunityDelete("svm", "solana", "v1", permission_account=limo.order_address,
                                    router="any", program="limo")  # fmt: skip
    assert live.remove(limo_delete) == 1
    assert len(live) == 0
    again: Any = st.make_swap(rng, "solana", time.time(), cancellable=False)
    assert isinstance(again, SwapOpportunity)
    live.add(again, 0.0)
    now[0] = 0.3
    assert live.get("solana", again.opportunity_id) is None
