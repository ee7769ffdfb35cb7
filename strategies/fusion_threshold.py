"""Fusion+: decide to fill an order once its Dutch auction price falls to our threshold.

A Fusion+ order sells `making_amount` of the maker's token on the source chain for the taker
token on the destination chain, through a Dutch auction: the taking amount a resolver must
deliver starts high (the rate bump) and falls towards the order's `taking_amount` by the end of
the auction. A resolver fills when that required amount is low enough to be worth it.

This strategy expresses "worth it" as one number: `threshold_bps`, the most we deliver per unit
made, in basis points of the making amount (10 000 = one taking unit per making unit; pairs with
different decimals or prices need a scaled value). On every order event it looks at the order
book (`context.fusion_plus`) and emits a `FillIntent` for each active order whose required taking
amount for the fill, now, is at or below `making * threshold_bps / 10 000`, once per order. The
intent names the making amount (`fill_bps` of what remains, when the order allows partial fills)
and the taking amount required at the decision time; the venue records it and hands it to the
resolver executor.

The required amount only falls with time and the strategy is called on order events, so a
crossing is noticed at the next event of any order (the whole book is checked each time). With
`resolver_address` set, only orders our resolver is whitelisted for, and may fill now
(exclusivity), are considered, priced with its whitelist fee discount.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import attrs

from searcherd.bids import FillIntent
from searcherd.fusion_plus.auction import MakerTraits
from searcherd.fusion_plus.orderbook import FusionOrder
from searcherd.strategy import Strategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from searcherd.bids import BidUpdate
    from searcherd.strategy import StrategyContext

_BPS: Final = 10_000
_ADDRESS_LENGTH: Final = 42


def _check_address(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value and (len(value) != _ADDRESS_LENGTH or not value.startswith("0x")):
        raise ValueError(f"{attribute.name} must be a 0x-prefixed 20-byte address, got {value!r}")
    try:
        int(value or "0x0", 16)
    except ValueError:
        raise ValueError(f"{attribute.name} is not hex: {value!r}") from None


@attrs.frozen
class Params:
    """`[strategies.fusion_threshold]`: the price threshold and how much to fill."""

    threshold_bps: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))
    """Fill when the required taking amount <= making amount x threshold_bps / 10 000."""
    fill_bps: int = attrs.field(
        default=10_000, validator=[attrs.validators.ge(1), attrs.validators.le(_BPS)]
    )
    """The share of the remaining making amount to fill (partial-fill orders only)."""
    min_making_amount: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    """Orders (remainders) smaller than this are not worth the gas."""
    src_chain_ids: tuple[int, ...] = ()
    """Only orders from these source chains; empty = every chain."""
    resolver_address: str = attrs.field(default="", validator=_check_address)
    """Our resolver: only orders it may fill now; "" = no whitelist check."""


_Params = Params  # the class body's `Params` is the class attribute, not this class


class FusionThreshold(Strategy[Params]):
    """Emit a fill intent for each order whose auction price crossed `threshold_bps`."""

    name = "fusion_threshold"
    venues = ("fusion_plus",)
    Params = Params

    def __init__(self, params: _Params, context: StrategyContext) -> None:
        super().__init__(params, context)
        #: Unix seconds, the auction's time base (a seam for tests that drive time).
        self.clock: Callable[[], float] = time.time
        self._decided: set[str] = set()

    def fill_for(self, order: FusionOrder, now: int) -> FillIntent | None:
        """The fill intent for `order` at unix second `now`, or None while it is not worth it."""
        params = self.params
        if not order.is_active or order.is_expired_at(now) or order.ours:
            return None
        if params.src_chain_ids and order.src_chain_id not in params.src_chain_ids:
            return None
        making = order.making_amount
        if order.order is None or making is None or order.extension is None:
            return None  # not an EVM order struct we can price
        remaining = making if order.remaining_maker_amount is None else order.remaining_maker_amount
        whitelisted = True
        if params.resolver_address:
            whitelist = order.extension.whitelist
            if not whitelist.can_execute_at(params.resolver_address, now):
                return None
            whitelisted = whitelist.is_whitelisted(params.resolver_address)
        amount = remaining
        if params.fill_bps < _BPS and MakerTraits(order.order.maker_traits).allow_partial_fills:
            amount = max(1, remaining * params.fill_bps // _BPS)
        if amount < params.min_making_amount:
            return None
        for funds in (order.maker_balance, order.maker_allowance):
            if funds is not None and funds < amount:
                return None  # the maker cannot deliver: the fill would revert
        try:
            taking = order.taking_amount_at(now, making_amount=amount, whitelisted=whitelisted)
        except ValueError:
            return None
        if taking * _BPS > amount * params.threshold_bps:
            return None
        return FillIntent(
            order_hash=order.order_hash,
            src_chain_id=order.src_chain_id,
            making_amount=amount,
            taking_amount=taking,
            note=f"required taking {taking} <= {params.threshold_bps} bps of {amount}",
        )

    def on_opportunity(self, opportunity: object) -> list[FillIntent] | None:
        """Check the whole book on each order event; one intent per crossed order, once."""
        if not isinstance(opportunity, FusionOrder):
            return None
        if opportunity.is_final:
            self._decided.discard(opportunity.order_hash)  # keeps the set to live orders
        book = self.context.fusion_plus
        orders: dict[str, Any] = {o.order_hash: o for o in (book.active_orders() if book else ())}
        orders[opportunity.order_hash] = opportunity  # the snapshot just offered is the newest
        now = int(self.clock())
        intents = []
        for order in orders.values():
            if not isinstance(order, FusionOrder) or order.order_hash in self._decided:
                continue
            intent = self.fill_for(order, now)
            if intent is not None:
                self._decided.add(order.order_hash)
                intents.append(intent)
        return intents or None

    def on_bid_status(self, update: BidUpdate) -> None:
        """A fill the venue refused for a reason that may pass (risk gate) may be decided again."""
        if update.status in ("blocked", "rejected"):
            self._decided.discard(update.opportunity_id or "")
