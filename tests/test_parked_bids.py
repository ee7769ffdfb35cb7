"""Tests for the packed form of Express Relay bids waiting out a slow status: what packs, that
it unpacks to the same bid, and the lookups the submitter and the reconciler make."""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import pytest

from searcherd.express_relay._parked import SLOW_STATUSES, ParkedBids
from searcherd.express_relay._tracked import TrackedBid


def _bid(**changes: Any) -> TrackedBid:
    """A waiting bid as the submitter holds it once the server took it."""
    fields: dict[str, Any] = {
        "local_id": str(uuid.uuid4()),
        "strategy": "strat",
        "chain_id": "solana",
        "opportunity_id": str(uuid.uuid4()),
        "amount": 1_000_000,
        "kind": "swap",
        "status": "submitted",
        "created_at": 1_790_000_000.125,
        "last_change": 42.5,
        "server_bid_id": str(uuid.uuid4()),
        "in_flight": True,
    }
    fields.update(changes)
    return TrackedBid(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": "sent_to_user_for_submission", "kind": "limo", "opportunity_id": None},
        {"status": "awaiting_signature", "restored": True, "in_flight": False},
        {"amount": 0},
        {"amount": 2**256 - 1, "kind": "evm", "chain_id": "op_sepolia"},
        {"amount": -5, "last_change": float("-inf")},
    ],
)
def test_a_packed_bid_unpacks_to_the_same_bid(changes: dict[str, Any]) -> None:
    """Every field a waiting bid has comes back as it was, names as the very same strings."""
    parked = ParkedBids()
    tb = _bid(**changes)
    assert parked.pack(tb)
    assert len(parked) == 1
    back = parked.unpark(tb.server_bid_id)  # type: ignore[arg-type]
    assert back is not None
    assert attrs.asdict(back) == attrs.asdict(tb)
    assert back.strategy is tb.strategy
    assert len(parked) == 0
    assert parked.unpark(tb.server_bid_id) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "pending"},  # its outcome comes within seconds
        {"status": "won"},
        {"server_bid_id": None},
        {"reason": "deadline_passed"},
        {"local_id": "old-1"},
        {"local_id": str(uuid.uuid4()).upper()},  # would come back lowercase
        {"opportunity_id": "{" + str(uuid.uuid4()) + "}"},  # uuid.UUID reads it, not the same
    ],
)
def test_a_bid_that_does_not_pack_exactly_stays_an_object(changes: dict[str, Any]) -> None:
    """Only a bid waiting out a slow status, with ids that unpack to the same text, packs."""
    parked = ParkedBids()
    assert not parked.pack(_bid(**changes))
    assert len(parked) == 0


def test_a_full_names_table_leaves_new_names_unpacked() -> None:
    """Names are a byte each: past 256 different ones a bid with a new name stays an object,
    while bids with known names still pack."""
    parked = ParkedBids()
    for i in range(256 - len(SLOW_STATUSES) - 2):  # the chain and the kind take one each
        assert parked.pack(_bid(strategy=f"s{i}", status=sorted(SLOW_STATUSES)[i % 3]))
    assert not parked.pack(_bid(strategy="one-too-many"))
    assert parked.pack(_bid(strategy="s7"))


def test_idle_lists_the_bids_silent_since_a_time_oldest_first() -> None:
    """Packing order is last-change order, so the answer is the head of the table."""
    parked = ParkedBids()
    bids = [_bid(last_change=float(t)) for t in (10, 20, 30)]
    for tb in bids:
        parked.pack(tb)
    assert parked.idle(5.0) == []
    assert parked.idle(20.0) == [bids[0].server_bid_id, bids[1].server_bid_id]
    assert parked.idle(float("inf")) == [tb.server_bid_id for tb in bids]
    assert len(parked) == 3  # listing takes nothing out


def test_find_gives_a_copy_and_leaves_the_bid_packed() -> None:
    """A lookup by local id (a cancel by hand) reads the bid without unpacking it."""
    parked = ParkedBids()
    tb, other = _bid(), _bid(status="awaiting_signature")
    parked.pack(tb)
    parked.pack(other)
    found = parked.find(other.local_id)
    assert found is not None
    assert attrs.asdict(found) == attrs.asdict(other)
    assert len(parked) == 2
    assert parked.find(str(uuid.uuid4())) is None
    assert parked.find("not-a-uuid") is None
    assert parked.counts() == {"submitted": 1, "awaiting_signature": 1}
