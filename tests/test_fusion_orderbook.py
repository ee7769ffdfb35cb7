"""Tests for searcherd.fusion_plus.orderbook: folding events into immutable order snapshots."""

from __future__ import annotations

import random

import attrs
import pytest

from searcherd.fusion_plus._sim_orders import SimOrder, make_order
from searcherd.fusion_plus.messages import (
    OrderAllowanceChange,
    OrderBalanceChange,
    OrderCancelled,
    OrderFilled,
    OrderFilledPartially,
    OrderInvalid,
    SecretShared,
)
from searcherd.fusion_plus.orderbook import (
    FusionOrder,
    OrderBook,
    closing_windows,
    same_address,
)

OURS = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
OTHER = "0x90f79bf6eb2c4f870365e785982e1f101e93b906"
NOW = 1_767_225_600


def sim_order(**kwargs: object) -> SimOrder:
    """A generated order with a real extension (seeded, so stable)."""
    return make_order(random.Random(7), NOW, resolvers=(OURS,), **kwargs)  # type: ignore[arg-type]


def test_created_order_decodes_its_extension_and_deadline() -> None:
    """order_created gives an active snapshot with the decoded extension and the deadline."""
    book = OrderBook(OURS)
    sim = sim_order()
    change = book.apply(sim.created_event(), 1.0)
    order = change.order
    assert order is not None
    assert order.status == "active"
    assert order.extension is not None
    assert order.extension.version == "1.2"
    assert order.extension.whitelist.is_whitelisted(OURS)
    assert order.deadline == NOW + 180 + 12
    assert order.remaining_maker_amount == sim.order.making_amount
    assert book.active() == [order]


def test_v11_extension_is_decoded_too() -> None:
    """An order with the older v1.1 layout decodes (fallback after v1.2)."""
    book = OrderBook()
    order = book.apply(sim_order(version="1.1").created_event(), 0.0).order
    assert order is not None
    assert order.extension is not None
    assert order.extension.version == "1.1"
    assert order.extension_error is None


def test_updates_build_new_snapshots_and_keep_old_ones_intact() -> None:
    """Each event builds a new snapshot; the previous one never changes."""
    book = OrderBook()
    sim = sim_order(parts=3)
    h = sim.order_hash
    first = book.apply(sim.created_event(), 0.0).order
    book.apply(OrderBalanceChange(h, 100_000_000, 7), 1.0)
    book.apply(OrderAllowanceChange(h, 100_000_000, 8), 2.0)
    partial = book.apply(OrderFilledPartially(h, 40_000_000), 3.0).order
    assert first is not None
    assert first.status == "active"
    assert first.maker_balance is None
    assert partial is not None
    assert (partial.status, partial.maker_balance, partial.maker_allowance) == (
        "partially_filled",
        7,
        8,
    )
    assert partial.remaining_maker_amount == 40_000_000
    assert partial.is_active


@pytest.mark.parametrize(
    ("event", "status"),
    [(OrderFilled, "filled"), (OrderCancelled, "cancelled"), (OrderInvalid, "invalid")],
)
def test_terminal_events_finish_the_order_once(event: type, status: str) -> None:
    """A final status is set once; a conflicting later one is reported, not applied."""
    book = OrderBook()
    sim = sim_order()
    book.apply(sim.created_event(), 0.0)
    change = book.apply(event(sim.order_hash), 1.0)
    assert change.became_final
    assert change.order is not None
    assert change.order.status == status
    assert book.counts() == {status: 1}
    other = OrderInvalid if event is not OrderInvalid else OrderFilled
    late = book.apply(other(sim.order_hash), 2.0)
    assert late.anomaly == f"already_{status}"
    assert book.get(sim.order_hash).status == status  # type: ignore[union-attr]
    assert book.active() == []


def test_events_for_unknown_orders_are_reported() -> None:
    """An update for an order the book does not hold changes nothing and says so."""
    change = OrderBook().apply(OrderFilled("0x" + "ab" * 32), 0.0)
    assert change.order is None
    assert change.anomaly == "unknown_order"


def test_secret_joins_by_src_immutables_and_flags_ours() -> None:
    """secret_shared joins via srcImmutables.orderHash; our taker flags the order ours."""
    book = OrderBook(OURS)
    sim = sim_order(parts=3)
    book.apply(sim.created_event(), 0.0)
    fill = sim.record_fill(50_000_000, OURS.upper().replace("0X", "0x"), NOW + 5, random.Random(1))
    secret = sim.public_secret(fill)
    change = book.apply(SecretShared(secret), 1.0)
    assert change.new_secret
    assert change.became_ours
    assert change.order is not None
    assert change.order.secrets == (secret,)
    assert change.order.secret(fill.idx) == secret
    again = book.apply(SecretShared(secret), 2.0)
    assert not again.new_secret
    assert again.order is not None
    assert len(again.order.secrets) == 1


def test_secret_for_unknown_order_is_still_reported() -> None:
    """A secret whose order the book lacks comes back in the change, to be stored."""
    sim = sim_order()
    fill = sim.record_fill(sim.remaining, OTHER, NOW, random.Random(1))
    change = OrderBook(OURS).apply(SecretShared(sim.public_secret(fill)), 0.0)
    assert change.order is None
    assert change.secret is not None
    assert change.new_secret


def test_seed_refreshes_from_active_orders_and_keeps_what_we_learnt() -> None:
    """Reseeding takes amounts from the list and keeps secrets and the ours flag."""
    book = OrderBook(OURS)
    sim = sim_order(parts=3)
    book.apply(sim.created_event(), 0.0)
    fill = sim.record_fill(30_000_000, OURS, NOW, random.Random(1))
    book.apply(SecretShared(sim.public_secret(fill)), 1.0)
    sim.balance = 42
    order = book.seed(sim.active_item(), 2.0)
    assert order.status == "partially_filled"
    assert order.remaining_maker_amount == 70_000_000
    assert order.maker_balance == 42
    assert order.ours
    assert len(order.secrets) == 1
    assert order.deadline == NOW + 192


def test_expiry_and_lazy_deadline() -> None:
    """Orders strictly past their deadline expire in the sweep."""
    book = OrderBook()
    sim = sim_order()
    book.apply(sim.created_event(), 0.0)
    order = book.get(sim.order_hash)
    assert order is not None
    assert not order.is_expired_at(NOW + 192)
    assert order.is_expired_at(NOW + 193)
    assert book.expire_due(NOW + 192, 1.0) == []
    (change,) = book.expire_due(NOW + 193, 1.0)
    assert change.order is not None
    assert change.order.status == "expired"


def test_pricing_follows_the_auction() -> None:
    """rate_bump_at / taking_amount_at use the decoded auction (and v1.2 fees)."""
    book = OrderBook()
    sim = sim_order(taking_amount=99_000_000)
    order = book.apply(sim.created_event(), 0.0).order
    assert order is not None
    assert order.rate_bump_at(NOW) == 50_000
    assert order.rate_bump_at(NOW + 180) == 0
    assert order.taking_amount_at(NOW) == 99_495_000
    assert order.taking_amount_at(NOW + 180) == 99_000_000
    assert order.taking_amount_at(NOW, making_amount=50_000_000) == 49_747_500
    bare = attrs.evolve(order, extension=None, extension_error="no extension")
    with pytest.raises(ValueError, match="no extension"):
        bare.taking_amount_at(NOW)


def test_closing_windows_only_for_our_fills_and_only_before_they_close() -> None:
    """Windows are reported within the horizon, for our taker only, never after closing."""
    sim = sim_order(parts=3)
    mine = sim.record_fill(30_000_000, OURS, NOW, random.Random(1))
    theirs = sim.record_fill(30_000_000, OTHER, NOW, random.Random(2))
    order = FusionOrder(
        order_hash=sim.order_hash,
        src_chain_id=1,
        dst_chain_id=42161,
        status="partially_filled",
        secrets=(sim.public_secret(mine), sim.public_secret(theirs)),
    )
    assert closing_windows(order, NOW, 300, OURS) == []
    soon = closing_windows(order, NOW + 200, 300, OURS)
    assert [(w.window, w.idx, w.closes_at) for w in soon] == [
        ("dst_withdrawal", mine.idx, NOW + 10 + 452)
    ]
    later = {w.window for w in closing_windows(order, NOW + 900, 300, OURS)}
    assert later == {"src_cancellation"}
    assert closing_windows(order, NOW + 5000, 300, OURS) == []


def test_same_address_ignores_case_prefix_and_padding() -> None:
    """Addresses compare case-insensitively, also when padded to 32 bytes."""
    assert same_address(OURS, OURS.upper().replace("0X", "0x"))
    assert same_address(OURS, "0x" + "00" * 12 + OURS[2:])
    assert not same_address(OURS, OTHER)
    assert not same_address("", "")


def test_final_orders_are_forgotten_beyond_the_cap() -> None:
    """The book keeps at most `max_final` finished orders, oldest dropped first."""
    book = OrderBook(max_final=2)
    rng = random.Random(3)
    hashes = []
    for _ in range(3):
        sim = make_order(rng, NOW)
        book.apply(sim.created_event(), 0.0)
        book.apply(OrderFilled(sim.order_hash), 1.0)
        hashes.append(sim.order_hash)
    assert book.get(hashes[0]) is None
    assert book.get(hashes[2]) is not None
    assert book.counts() == {"filled": 2}
