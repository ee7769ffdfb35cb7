"""Tests for the Express Relay submitter: bid lifecycles against the simulator, local statuses,
responses (late, ``id: null``, errors), the in-flight cap and the final-is-final rule."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
import trio.testing

from searcherd._logging import configure_logging
from searcherd.bids import EvmBid, LimoBid, SwapBid
from searcherd.config import Count, LimitsConfig
from searcherd.express_relay.messages import (
    BidStatus,
    EvmOpportunity,
    LimoOpportunity,
    SwapOpportunity,
)
from searcherd.express_relay.simulator import Timings

if TYPE_CHECKING:
    from conftest import ErHarness

    from searcherd.express_relay.simulator import ExpressRelaySimulator
    from searcherd.express_relay.venue import ExpressRelayVenue

EVM_CHAIN = "op_sepolia"
TARGET = "0x" + "ab" * 20


async def _offer(er: ErHarness, program: str, **kw: Any) -> tuple[Any, float]:
    """Push one opportunity and return it as the sink received it (with its receipt time)."""
    assert er.sim is not None
    before = len(er.sink.offers)
    er.sim.push_opportunity(program=program, **kw)
    await er.wait_until(lambda: len(er.sink.offers) > before)
    _, opp, received_at = er.sink.offers[-1]
    return opp, received_at


def _intent(opp: Any, amount: int = 1000) -> SwapBid | LimoBid | EvmBid:
    if isinstance(opp, SwapOpportunity):
        return SwapBid(opportunity=opp, amount=amount)
    if isinstance(opp, LimoOpportunity):
        return LimoBid(opportunity=opp, amount=amount)
    assert isinstance(opp, EvmOpportunity)
    return EvmBid(opportunity=opp, amount=amount, target_contract=TARGET, target_calldata=b"\x01")


async def _ready_for_svm(er: ErHarness, venue: ExpressRelayVenue) -> None:
    await er.wait_until(lambda: venue.view.chain("solana") is not None)


async def _bid(er: ErHarness, venue: ExpressRelayVenue, program: str, **kw: Any) -> str:
    """Offer one opportunity of ``program``, bid on it, return the bid's local id."""
    if program != "evm":
        await _ready_for_svm(er, venue)
    opp, received_at = await _offer(er, program, **kw)
    return venue._submitter.submit("strat", _intent(opp), received_at)


async def _final(er: ErHarness, local_id: str) -> Any:
    await er.wait_until(lambda: (u := er.sink.last(local_id)) is not None and u.is_final)
    return er.sink.last(local_id)


async def _pending_limo_bid(
    er: ErHarness,
) -> tuple[ExpressRelaySimulator, ExpressRelayVenue, str]:
    """A simulator with a 50 s auction, a venue and one limo bid still ``pending``."""
    sim = await er.start(outcomes={"won": 1.0}, timings=Timings(auction=50.0))
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "limo")
    await er.wait_until(lambda: er.sink.statuses(local_id) == ["pending"])
    return sim, venue, local_id


def _server_id(er: ErHarness, local_id: str) -> str:
    update = er.sink.last(local_id)
    assert update is not None
    assert update.server_bid_id is not None
    return update.server_bid_id


@pytest.mark.parametrize(
    ("level", "events"),
    [
        ("info", []),
        ("debug", ["bid_sent", "bid_status", "bid_status", "bid_final"]),
    ],
)
async def test_a_bids_own_lines_are_debug_lines(
    er: ErHarness,
    autojump_clock: trio.testing.MockClock,
    restore_logging: None,
    level: str,
    events: list[str],
) -> None:
    """At info level a bid writes no line of its own (the bids summary counts it); at debug
    level it writes its send, each status and its outcome, with everything that identifies it."""
    stream = io.StringIO()
    configure_logging(level, "json", stream, cache=False)
    await er.start(outcomes={"won": 1.0})
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "swap", cancellable=False)
    await _final(er, local_id)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("bid") == local_id]
    assert [line["event"] for line in mine] == events
    if mine:
        final = mine[-1]
        assert (final["status"], final["kind"], final["amount"]) == ("won", "swap", "1000")
        assert final["strategy"] == "strat"
        assert final["opportunity_id"] is not None
        assert final["server_bid_id"] == _server_id(er, local_id)


@pytest.mark.parametrize(
    ("program", "outcome", "cancellable", "path"),
    [
        ("swap", "won", False, ["pending", "sent_to_user_for_submission", "won"]),
        ("swap", "won", True, ["pending", "awaiting_signature", "submitted", "won"]),
        ("swap", "lost", False, ["pending", "lost"]),
        ("swap", "failed", False, ["pending", "sent_to_user_for_submission", "failed"]),
        ("swap", "expired", False, ["pending", "sent_to_user_for_submission", "expired"]),
        ("swap", "submission_failed", True, ["pending", "awaiting_signature", "submission_failed"]),
        ("limo", "won", False, ["pending", "submitted", "won"]),
        ("limo", "lost", False, ["pending", "lost"]),
        ("limo", "failed", False, ["pending", "submitted", "failed"]),
        ("limo", "expired", False, ["pending", "submitted", "expired"]),
    ],
)
async def test_svm_bid_lifecycle_reaches_each_final_status(
    er: ErHarness,
    autojump_clock: trio.testing.MockClock,
    program: str,
    outcome: str,
    cancellable: bool,
    path: list[str],
) -> None:
    """Every SVM kind reaches each final status, each step recorded and passed to the sink."""
    await er.start(outcomes={outcome: 1.0})
    venue = await er.start_venue()
    kw = {"cancellable": cancellable} if program == "swap" else {}
    local_id = await _bid(er, venue, program, **kw)
    final = await _final(er, local_id)
    assert er.sink.statuses(local_id) == path
    assert final.status == outcome
    assert final.server_bid_id in er.sim.bids  # type: ignore[union-attr]
    rows = await er.rows(
        "SELECT status, source, applied FROM bid_status_history WHERE local_id = ? ORDER BY id",
        local_id,
    )
    assert [r[0] for r in rows] == ["submitting", *path]
    assert all(r[2] == 1 for r in rows)
    (row,) = await er.rows(
        "SELECT status, server_bid_id, detail FROM bids WHERE local_id = ?", local_id
    )
    assert row[0] == outcome
    assert row[1] == final.server_bid_id
    # The signature is kept so a crash right after sending can still be matched.
    record = er.sim.bids[final.server_bid_id]  # type: ignore[union-attr]
    assert record.signature is not None
    assert record.signature in row[2]
    assert venue.snapshot()["bids_in_flight_by_status"] == {}
    assert er.risk.in_flight() == 0
    assert er.metrics.bids_final.labels("strat", "express_relay", outcome)._value.get() == 1


async def test_open_bid_drops_its_signature_once_it_has_a_server_id(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """The signature is what matches an id-less bid; once the server's id is known the row
    keeps it and the bid in memory does not (thousands of bids wait minutes for `expired`)."""
    _, venue, local_id = await _pending_limo_bid(er)
    tb = venue._submitter.get(local_id)
    assert tb is not None
    assert tb.server_bid_id is not None
    assert tb.signature is None
    (detail,) = await er.rows("SELECT json_extract(detail, '$.signature') FROM bids")
    assert detail[0] == er.sim.bids[tb.server_bid_id].signature  # type: ignore[union-attr]


async def test_open_bid_keeps_no_copy_of_a_waiting_status_result(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A waiting status's result (the bid's own transaction) reaches the strategies and the row;
    the bid in memory keeps none, and the same status pushed again still adds nothing."""
    sim = await er.start(outcomes={"expired": 1.0})
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "swap", cancellable=True)
    await er.wait_until(lambda: er.sink.statuses(local_id) == ["pending", "awaiting_signature"])
    server_id = _server_id(er, local_id)
    signature = sim.bids[server_id].signature
    assert signature is not None
    tb = venue._submitter.get(local_id)
    assert tb is not None
    assert tb.result is None
    waiting = er.sink.last(local_id)
    assert waiting is not None
    assert waiting.result == signature

    sim.set_bid_status(server_id, BidStatus("awaiting_signature", signature))
    sim.set_bid_status(server_id, BidStatus("expired", signature))
    final = await _final(er, local_id)
    assert final.result == signature
    finished = venue._submitter.get(local_id)
    assert finished is not None
    assert finished.result == signature  # a final result is kept
    assert er.sink.statuses(local_id) == ["pending", "awaiting_signature", "expired"]
    rows = await er.rows(
        "SELECT status, result FROM bid_status_history WHERE local_id = ? ORDER BY id", local_id
    )
    assert rows == [
        ("submitting", None),
        ("pending", None),
        ("awaiting_signature", signature),
        ("expired", signature),
    ]


async def _waiting_swap_bid(er: ErHarness) -> tuple[ExpressRelayVenue, str]:
    """A venue and one swap bid waiting in ``sent_to_user_for_submission`` (expires at 120 s)."""
    await er.start(outcomes={"expired": 1.0})
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "swap", cancellable=False)
    await er.wait_until(
        lambda: er.sink.statuses(local_id) == ["pending", "sent_to_user_for_submission"]
    )
    return venue, local_id


async def test_a_waiting_bid_is_packed_until_its_final_status(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A bid waiting out a slow status is kept packed, not as an object; health counts it, a
    lookup finds it, and its final status reaches it and the strategies as usual."""
    venue, local_id = await _waiting_swap_bid(er)
    submitter = venue._submitter
    waiting = er.sink.last(local_id)
    assert waiting is not None
    assert submitter.open_bids() == []
    assert len(submitter._parked) == 1
    assert venue.snapshot()["bids_in_flight_by_status"] == {"sent_to_user_for_submission": 1}
    assert submitter.is_open(local_id)
    found = submitter.get(local_id)
    assert found is not None
    assert (found.status, found.server_bid_id) == (waiting.status, waiting.server_bid_id)
    assert er.risk.in_flight() == 1

    final = await _final(er, local_id)
    assert final.status == "expired"
    assert attrs.evolve(final, status=waiting.status, result=waiting.result) == waiting
    rows = await er.rows(
        "SELECT status, source FROM bid_status_history WHERE local_id = ? ORDER BY id", local_id
    )
    assert rows[-1] == ("expired", "ws")  # the push found it (not a check over HTTP)
    assert len(submitter._parked) == 0
    assert not submitter.is_open(local_id)
    assert venue.snapshot()["bids_in_flight_by_status"] == {}
    assert er.risk.in_flight() == 0
    assert er.metrics.bids_final.labels("strat", "express_relay", "expired")._value.get() == 1


async def test_a_status_applied_to_a_copy_reaches_the_bid_itself(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """The reconciler holds bids across an HTTP wait, and a lookup of a packed bid gives a copy:
    a status applied to such a copy goes to the bid followed, and ends it once."""
    venue, local_id = await _waiting_swap_bid(er)
    submitter = venue._submitter
    copy = submitter.get(local_id)
    assert copy is not None
    submitter.apply_status(copy, BidStatus("won", "sig"), source="http")
    assert er.sink.statuses(local_id)[-1] == "won"
    assert len(submitter._parked) == 0
    assert er.risk.in_flight() == 0

    assert er.sim is not None
    er.sim.set_bid_status(_server_id(er, local_id), BidStatus("won", "sig"))  # the push, late
    await trio.sleep(1.0)
    assert er.sink.statuses(local_id) == ["pending", "sent_to_user_for_submission", "won"]
    assert er.metrics.bids_final.labels("strat", "express_relay", "won")._value.get() == 1
    assert er.metrics.status_anomalies.labels("express_relay")._value.get() == 0


@pytest.mark.parametrize("outcome", ["won", "lost"])
async def test_evm_bid_lifecycle_keeps_the_index(
    er: ErHarness, autojump_clock: trio.testing.MockClock, outcome: str
) -> None:
    """A legacy EVM raw bid is sent as such and its statuses arrive (won with its index)."""
    sim = await er.start(svm_chains=(), evm_chains=(EVM_CHAIN,), outcomes={outcome: 1.0})
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "evm")
    final = await _final(er, local_id)
    assert final.status == outcome
    record = sim.bids[_server_id(er, local_id)]
    assert record.kind == "evm"
    assert record.amount == 1000
    if outcome == "won":
        assert er.sink.statuses(local_id) == ["pending", "submitted", "won"]
        assert record.status.index is not None
    else:
        assert er.sink.statuses(local_id) == ["pending", "lost"]


async def test_failed_with_null_reason_is_final(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """``failed`` with ``reason: null`` (allowed by the server) ends the bid like any failure."""
    sim, _venue, local_id = await _pending_limo_bid(er)
    sim.set_bid_status(_server_id(er, local_id), BidStatus("failed", "sig", reason=None))
    final = await _final(er, local_id)
    assert final.status == "failed"
    assert final.reason is None


async def test_cancel_of_awaiting_signature_bid(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """An authenticated owner cancels a bid in awaiting_signature (here through the view a
    strategy gets); it ends ``cancelled``."""
    await er.start(
        outcomes={"cancelled": 1.0},
        api_keys=("er-test-key-0123456789",),
        timings=Timings(auction=5.0),
        swap_lifetime=10.0,
    )
    venue = await er.start_venue(api_key=True)
    local_id = await _bid(er, venue, "swap", cancellable=True)
    assert "no server bid id" in await venue.cancel_bid(local_id)
    await er.wait_until(lambda: er.sink.statuses(local_id) == ["pending"])
    assert "awaiting_signature" in await venue.cancel_bid(local_id)  # still pending: explained
    await er.wait_until(lambda: "awaiting_signature" in er.sink.statuses(local_id))
    outcome = await venue.view.cancel_bid(local_id)
    assert "accepted" in outcome
    final = await _final(er, local_id)
    assert final.status == "cancelled"
    assert "already final" in await venue.cancel_bid(local_id)
    assert "unknown bid" in await venue.cancel_bid("nope")


async def test_cancel_needs_an_api_key(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Without an API key the cancel is explained, not sent."""
    await er.start(outcomes={"cancelled": 1.0})
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "swap", cancellable=True)
    await er.wait_until(lambda: "awaiting_signature" in er.sink.statuses(local_id))
    assert "api_key" in await venue.cancel_bid(local_id)


async def test_dry_run_builds_and_records_but_never_sends(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """In dry run the bid is built (signature recorded) and marked ``dry_run``; nothing is sent."""
    sim = await er.start()
    venue = await er.start_venue(dry_run=True)
    await _ready_for_svm(er, venue)
    opp, at = await _offer(er, "limo")
    venue.submit("strat", _intent(opp), at)
    (update,) = er.sink.updates
    assert update.status == "dry_run"
    await trio.sleep(5)
    assert sim.bids == {}
    (row,) = await er.rows("SELECT status, detail FROM bids")
    assert row[0] == "dry_run"
    assert '"signature"' in row[1]
    assert er.metrics.bids_submitted.labels("strat", "express_relay")._value.get() == 0


async def test_risk_gate_blocks_with_its_reason(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A bid refused by the risk gate is recorded ``blocked`` with the limit's name, never sent."""
    sim = await er.start()
    venue = await er.start_venue(limits=LimitsConfig(kill_switch=True))
    await _ready_for_svm(er, venue)
    opp, at = await _offer(er, "limo")
    venue.submit("strat", _intent(opp), at)
    (update,) = er.sink.updates
    assert (update.status, update.reason) == ("blocked", "kill_switch")
    await trio.sleep(2)
    assert sim.bids == {}
    (row,) = await er.rows("SELECT status, reason FROM bids")
    assert row == ("blocked", "kill_switch")
    assert er.metrics.risk_blocked.labels("strat", "kill_switch")._value.get() == 1


async def test_unbuildable_bids_are_invalid_with_a_reason(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """No signer, no blockhash yet, or an amount the program cannot hold: ``invalid``, not sent."""
    sim = await er.start(chain_update_interval=20.0)
    venue = await er.start_venue(signer=None)
    opp, at = await _offer(er, "limo")
    venue.submit("strat", _intent(opp), at)
    assert er.sink.updates[-1].status == "invalid"
    assert "signing key" in (er.sink.updates[-1].reason or "")
    venue = await er.start_venue()
    # The chain update of the first link has gone with it; this link has none yet.
    venue.submit("strat", _intent(opp), at)
    assert er.sink.updates[-1].status == "invalid"
    await er.wait_until(lambda: venue.view.chain("solana") is not None)
    venue.submit("strat", _intent(opp, amount=2**70), at)
    assert er.sink.updates[-1].status == "invalid"
    assert sim.bids == {}


async def test_server_error_is_rejected_with_its_text(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A ``post_bid`` error response ends the bid ``rejected`` with the server's words."""

    def refuse(**_: Any) -> None:
        raise ValueError("Simulation failed: custom program error: 0x1")

    await er.start(svm_bid_check=refuse)
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "limo")
    final = await _final(er, local_id)
    assert (final.status, final.reason) == (
        "rejected",
        "Simulation failed: custom program error: 0x1",
    )
    assert er.risk.in_flight() == 0


async def test_late_response_attaches_the_server_id(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """No answer within the timeout -> ``unconfirmed``; the late answer brings the id back and
    tracking resumes to the final status."""
    sim = await er.start(outcomes={"won": 1.0}, timings=Timings(auction=10.0, step=1.0))
    venue = await er.start_venue(request_timeout=2.0)
    await _ready_for_svm(er, venue)
    sim.respond_late(5.0)
    local_id = await _bid(er, venue, "limo")
    await er.wait_until(lambda: er.sink.statuses(local_id)[:1] == ["unconfirmed"])
    final = await _final(er, local_id)
    assert er.sink.statuses(local_id) == ["unconfirmed", "pending", "submitted", "won"]
    assert final.server_bid_id in sim.bids
    assert venue._tracker.late_responses == 1


async def test_id_null_error_fails_the_one_request_in_flight(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """An ``id: null`` error with exactly one request in flight is that request's answer."""
    sim = await er.start()
    venue = await er.start_venue(request_timeout=10.0)
    await _ready_for_svm(er, venue)
    sim.delay_responses(3.0, count=1)
    local_id = await _bid(er, venue, "limo")
    await er.wait_until(lambda: venue._tracker.in_flight == 1)
    sim.send_raw('{"id": null, "status": "error", "result": "missing field `id` at line 1"}')
    final = await _final(er, local_id)
    assert final.status == "rejected"
    assert final.reason == "missing field `id` at line 1"


async def test_never_more_than_the_cap_in_flight(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """With 200 bids and slow answers, at most 150 ``post_bid`` are in flight at any time, and
    every bid is still sent and answered."""
    sim = await er.start(svm_chains=(), evm_chains=(EVM_CHAIN,), outcomes={"lost": 1.0})
    venue = await er.start_venue(
        limits=LimitsConfig(max_in_flight=Count(1000), max_bids_per_second=Count(1000)),
        request_timeout=30.0,
    )
    opp, at = await _offer(er, "evm")
    sim.delay_responses(2.0)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, venue._tracker.limited_in_flight)
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for amount in range(1, 201):
            venue.submit("strat", _intent(opp, amount=amount), at)
        await er.wait_until(lambda: len(sim.bids) == 200)
        await er.wait_until(lambda: len([u for u in er.sink.updates if u.is_final]) == 200)
        nursery.cancel_scope.cancel()
    assert peak == 150
    assert {u.status for u in er.sink.updates if u.is_final} == {"lost"}


async def test_update_after_final_is_an_anomaly(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """A status after a final one is recorded with ``applied=0``, counted, never applied."""
    sim = await er.start(outcomes={"lost": 1.0})
    venue = await er.start_venue()
    local_id = await _bid(er, venue, "limo")
    await _final(er, local_id)
    sim.set_bid_status(_server_id(er, local_id), BidStatus("won", "sig"))
    await er.wait_until(
        lambda: er.metrics.status_anomalies.labels("express_relay")._value.get() == 1
    )
    assert er.sink.statuses(local_id) == ["pending", "lost"]
    rows = await er.rows(
        "SELECT status, applied FROM bid_status_history WHERE local_id = ? ORDER BY id", local_id
    )
    assert rows[-1] == ("won", 0)
    (row,) = await er.rows("SELECT status FROM bids WHERE local_id = ?", local_id)
    assert row == ("lost",)


async def test_unknown_status_is_kept_not_applied(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """An unknown status type is counted and recorded unapplied; the bid stays open."""
    sim, venue, local_id = await _pending_limo_bid(er)
    sim.send_unknown_status(_server_id(er, local_id))
    await er.wait_until(
        lambda: er.metrics.unknown_messages.labels("express_relay", "status")._value.get() == 1
    )
    rows = await er.rows(
        "SELECT status, applied FROM bid_status_history WHERE local_id = ? ORDER BY id", local_id
    )
    assert rows[-1] == ("simulation_failed", 0)
    assert venue.snapshot()["bids_in_flight_by_status"] == {"pending": 1}


async def test_drain_stops_intake_and_waits_for_answers(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """``drain`` refuses new bids and returns once the bid in flight has its answer."""
    sim = await er.start()
    venue = await er.start_venue()
    await _ready_for_svm(er, venue)
    sim.delay_responses(1.5, count=1)
    local_id = await _bid(er, venue, "limo")
    await er.wait_until(lambda: venue._tracker.in_flight == 1)
    await venue.drain()
    assert er.sink.statuses(local_id)[0] == "pending"
    opp, at = await _offer(er, "limo")
    venue.submit("strat", _intent(opp), at)
    assert (er.sink.updates[-1].status, er.sink.updates[-1].reason) == ("blocked", "venue_draining")
