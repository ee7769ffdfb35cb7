"""Tests for bid status reconciliation over HTTP: after a reconnect, after silence, and after a
restart (with and without the server's bid id)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from searcherd.bids import LimoBid, SwapBid
from searcherd.express_relay.messages import BidStatus
from searcherd.express_relay.reconciler import _SWEEP_SLICE
from searcherd.express_relay.simulator import Timings
from searcherd.store import BidRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from conftest import ErHarness

    from searcherd.express_relay.simulator import ExpressRelaySimulator
    from searcherd.express_relay.venue import ExpressRelayVenue

    _OpenBid = Callable[..., Awaitable[tuple[ExpressRelaySimulator, ExpressRelayVenue, str]]]


SLOW = Timings(auction=1000.0, step=1000.0, expire=5000.0)


async def _limo_bid(er: ErHarness, venue: ExpressRelayVenue) -> str:
    assert er.sim is not None
    await er.wait_until(lambda: venue.view.chain("solana") is not None)
    before = len(er.sink.offers)
    er.sim.push_opportunity(program="limo")
    await er.wait_until(lambda: len(er.sink.offers) > before)
    _, opp, received_at = er.sink.offers[-1]
    return venue._submitter.submit("strat", LimoBid(opportunity=opp, amount=500), received_at)


async def _pending_limo_bid(
    er: ErHarness, **venue_options: Any
) -> tuple[ExpressRelaySimulator, ExpressRelayVenue, str]:
    """A slow simulator, a venue and one limo bid the server has answered with ``pending``."""
    sim = await er.start(timings=SLOW)
    venue = await er.start_venue(**venue_options)
    local_id = await _limo_bid(er, venue)
    await er.wait_until(lambda: er.sink.statuses(local_id) == ["pending"])
    return sim, venue, local_id


def _server_id(er: ErHarness, local_id: str) -> str:
    update = er.sink.last(local_id)
    assert update is not None
    assert update.server_bid_id is not None
    return update.server_bid_id


async def _history(er: ErHarness, local_id: str) -> list[tuple[Any, ...]]:
    return await er.rows(
        "SELECT status, source, applied FROM bid_status_history WHERE local_id = ? ORDER BY id",
        local_id,
    )


async def test_silent_bid_is_polled(er: ErHarness, autojump_clock: trio.testing.MockClock) -> None:
    """A bid whose pushes can no longer reach us (posted on an earlier link) is polled after
    ``reconcile_interval`` of silence."""
    sim, venue, local_id = await _pending_limo_bid(er, reconcile_interval=5.0)
    sim.drop_all_connections()
    await er.wait_until(lambda: venue.snapshot()["reconnects"] >= 1)
    with trio.fail_after(300):
        await venue.wait_ready()
    changed_at = trio.current_time()
    sim.set_bid_status(_server_id(er, local_id), BidStatus("lost", None))
    await er.wait_until(lambda: er.sink.statuses(local_id)[-1] == "lost")
    assert trio.current_time() - changed_at <= 6.5
    assert (await _history(er, local_id))[-1] == ("lost", "http", 1)


async def _packed_swap_bid(
    er: ErHarness, **venue_options: Any
) -> tuple[ExpressRelaySimulator, ExpressRelayVenue, str]:
    """A venue and one swap bid the venue keeps packed, waiting for a user who never sends."""
    sim = await er.start(outcomes={"expired": 1.0}, timings=Timings(expire=5000.0))
    venue = await er.start_venue(**venue_options)
    await er.wait_until(lambda: venue.view.chain("solana") is not None)
    before = len(er.sink.offers)
    sim.push_opportunity(program="swap", cancellable=False)
    await er.wait_until(lambda: len(er.sink.offers) > before)
    _, opp, received_at = er.sink.offers[-1]
    local_id = venue._submitter.submit("strat", SwapBid(opportunity=opp, amount=1), received_at)
    await er.wait_until(lambda: len(venue._submitter._parked) == 1)
    return sim, venue, local_id


@pytest.mark.parametrize("open_bid", [_pending_limo_bid, _packed_swap_bid])
async def test_status_changed_during_an_outage_is_recorded_after_reconnect(
    er: ErHarness, autojump_clock: trio.testing.MockClock, open_bid: _OpenBid
) -> None:
    """A status the server set while the socket was down arrives by HTTP after the reconnect,
    for a bid kept packed while it waits as for any other."""
    sim, venue, local_id = await open_bid(er)
    before = er.sink.statuses(local_id)
    sim.drop_all_connections()
    # The connection is marked closed at once, so this change is never pushed.
    sim.set_bid_status(_server_id(er, local_id), BidStatus("won", "sig-1"))
    await er.wait_until(lambda: venue.snapshot()["reconnects"] >= 1)
    with trio.fail_after(300):
        await venue.wait_ready()
    assert er.sink.statuses(local_id) == [*before, "won"]
    assert (await _history(er, local_id))[-1] == ("won", "http", 1)
    assert len(venue._submitter._parked) == 0


async def test_a_packed_bid_silent_too_long_is_checked_and_packed_again(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A packed bid is checked after the slow statuses' silence (40 x the interval); a check
    that finds it still waiting packs it again and writes nothing."""
    _sim, venue, local_id = await _packed_swap_bid(er, reconcile_interval=5.0)
    await trio.sleep(150.0)
    assert venue._reconciler.checks == 0
    await trio.sleep(100.0)
    assert venue._reconciler.checks == 1
    assert len(venue._submitter._parked) == 1
    assert venue._submitter.open_bids() == []
    assert [status for status, _, _ in await _history(er, local_id)] == [
        "submitting",
        "pending",
        "sent_to_user_for_submission",
    ]


async def test_restart_reconciles_bids_of_the_previous_run(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Non-final bids in the state table are followed again after a restart and reconciled."""
    sim, venue, local_id = await _pending_limo_bid(er)
    server_id = _server_id(er, local_id)
    await er.store.flush()
    er.stop_venue()  # the daemon stops; the bid is still pending in the table
    sim.set_bid_status(server_id, BidStatus("won", "sig-2"))
    venue = await er.start_venue()
    assert er.sink.last(local_id).status == "won"  # type: ignore[union-attr]
    (row,) = await er.rows("SELECT status, server_bid_id FROM bids WHERE local_id = ?", local_id)
    assert row == ("won", server_id)
    assert er.risk.in_flight() == 0
    assert venue.snapshot()["bids_in_flight_by_status"] == {}


async def test_restart_matches_a_bid_without_server_id_by_signature(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """With an API key, a bid that never got its answer is found in our own bid list by its
    transaction signature, and followed from there."""
    sim = await er.start(timings=SLOW, api_keys=("er-test-key-0123456789",))
    venue = await er.start_venue(api_key=True)
    sim.delay_responses(10_000.0)  # the answer never comes back before the "crash"
    local_id = await _limo_bid(er, venue)
    await er.wait_until(lambda: len(sim.bids) == 1)
    await er.store.flush()
    er.stop_venue()
    (server_id,) = sim.bids
    sim.delay_responses(0.0)
    sim.set_bid_status(server_id, BidStatus("won", "sig-3"))
    await er.start_venue(api_key=True)
    final = er.sink.last(local_id)
    assert final is not None
    assert (final.status, final.server_bid_id) == ("won", server_id)
    (row,) = await er.rows("SELECT status, server_bid_id FROM bids WHERE local_id = ?", local_id)
    assert row == ("won", server_id)


async def test_restart_without_api_key_leaves_id_less_bids_unconfirmed(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Without an API key an id-less bid of a previous run cannot be found: it is marked
    ``unconfirmed`` with the reason and no longer followed."""
    await er.start()
    er.store.add_bid(
        BidRecord(
            local_id="old-1",
            venue="express_relay",
            chain_id="solana",
            strategy="strat",
            opportunity_id=None,
            amount=7,
            status="submitting",
            created_at=1.0,
            detail={"kind": "limo", "signature": "abc"},
        )
    )
    await er.store.flush()
    venue = await er.start_venue()
    update = er.sink.last("old-1")
    assert update is not None
    assert update.status == "unconfirmed"
    assert "API key" in (update.reason or "")
    assert venue.snapshot()["bids_in_flight_by_status"] == {}
    assert er.risk.in_flight() == 0


async def test_sweep_of_many_open_bids_lets_other_tasks_run_and_finds_every_due_bid(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A sweep over several slices of open bids yields between slices and returns all due."""
    await er.start()
    venue = await er.start_venue()
    er.stop_venue()  # only the sweep under test looks at the bids
    rows = [
        {
            "local_id": f"open-{i}",
            "strategy": "strat",
            "chain_id": "solana",
            "opportunity_id": None,
            "amount": 1,
            "status": "pending",
            "created_at": 1.0,
            "server_bid_id": f"server-{i}",
            "detail": {"kind": "limo"},
        }
        for i in range(3 * _SWEEP_SLICE)
    ]
    assert venue._submitter.restore(rows) == len(rows)
    sweeping = False
    runs_during_sweep = 0

    async def other() -> None:
        nonlocal runs_during_sweep
        while True:
            if sweeping:
                runs_during_sweep += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        sweeping = True
        due, stuck = await venue._reconciler._sweep(trio.current_time())
        sweeping = False
        nursery.cancel_scope.cancel()
    assert runs_during_sweep >= 2
    assert sorted(tb.local_id for tb in due) == sorted(f"open-{i}" for i in range(len(rows)))
    assert stuck == []
