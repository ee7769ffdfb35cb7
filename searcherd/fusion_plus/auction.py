"""Fusion+ pricing: the Dutch auction rate bump, the required taking amount, order expiry.

All math is integer math in the order the settlement contract does it, with the same rounding
directions, so a price computed here is the price the chain will demand:

* rate bump: linear interpolation between curve points, floored, minus the gas bump
  (`gasBumpEstimate * baseFee / gasPriceEstimate / 1e6`, floored at each division), never < 0;
* taking amount for a fill of `making_amount`: ceil(proportional share of the order's taking
  amount), then ceil(x (1e5 + fees) / 1e5), then ceil(x (1e7 + bump) / 1e7).

The order deadline is the `expiration` field of `makerTraits` (the SDK sets it to auction end +
12 s); an order is expired only strictly after it, as the limit-order contract checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

import attrs

if TYPE_CHECKING:
    from searcherd.fusion_plus.extension import AuctionDetails, Fees

__all__ = [
    "DEFAULT_EXPIRATION_DELAY",
    "RATE_BUMP_DENOMINATOR",
    "MakerTraits",
    "auction_end",
    "fill_secret_index",
    "is_expired",
    "order_deadline",
    "rate_bump_at",
    "taking_amount_at",
]

RATE_BUMP_DENOMINATOR: Final = 10_000_000  # a rate bump of 1e7 is +100%
DEFAULT_EXPIRATION_DELAY: Final = 12  # SDK default: deadline = auction end + 12 s
_GAS_PRICE_BASE: Final = 1_000_000  # gasPriceEstimate 1000 means 1 gwei
_FEE_BASE_1E5: Final = 100_000
_FEE_BASE_1E2: Final = 100
_U40: Final = (1 << 40) - 1


class _Amounts(Protocol):
    """Anything with the order struct's two amounts (e.g. `messages.LimitOrder`)."""

    @property
    def making_amount(self) -> int: ...

    @property
    def taking_amount(self) -> int: ...


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def auction_end(details: AuctionDetails) -> int:
    """Unix second at which the auction's rate bump reaches zero (start + duration)."""
    return details.start_time + details.duration


def _auction_bump(details: AuctionDetails, t: int) -> int:
    start, finish = details.start_time, auction_end(details)
    if t <= start:
        return details.initial_rate_bump
    if t >= finish:
        return 0
    # Each point's delay is relative to the previous point (the first to the start).
    point_time, bump = start, details.initial_rate_bump
    for point in details.points:
        next_time = point_time + point.delay
        if t <= next_time:
            # A zero-delay point at exactly `t` cannot occur: t > point_time here.
            return ((t - point_time) * point.coefficient + (next_time - t) * bump) // (
                next_time - point_time
            )
        point_time, bump = next_time, point.coefficient
    # Past the last point: fall linearly to zero at the auction end. finish > t > point_time.
    return (finish - t) * bump // (finish - point_time)


def _gas_bump(details: AuctionDetails, base_fee: int) -> int:
    if not details.gas_bump_estimate or not details.gas_price_estimate or not base_fee:
        return 0
    return details.gas_bump_estimate * base_fee // details.gas_price_estimate // _GAS_PRICE_BASE


def rate_bump_at(details: AuctionDetails, t: int, *, base_fee: int = 0) -> int:
    """The auction rate bump (1e7 = 100%) at unix second `t`.

    `initial_rate_bump` at or before the start, 0 at or after the end, linear through the points
    in between. With `base_fee` (wei) the gas component is subtracted as the contract does.
    """
    bump = _auction_bump(details, t)
    gas = _gas_bump(details, base_fee)
    return bump - gas if bump > gas else 0


def taking_amount_at(
    order: _Amounts,
    details: AuctionDetails,
    t: int,
    *,
    making_amount: int | None = None,
    base_fee: int = 0,
    fees: Fees | None = None,
    whitelisted: bool = True,
) -> int:
    """The taker amount the contract requires for a fill at unix second `t`.

    `making_amount` is the fill size (default: the whole order). With `fees` (v1.2) the
    integrator and resolver fees are added first; a `whitelisted` taker's resolver fee is scaled
    by the whitelist discount numerator. Raises ValueError for a non-positive order making amount
    or a negative fill.
    """
    if order.making_amount <= 0:
        raise ValueError("order making amount must be positive")
    if making_amount is None:
        amount = order.taking_amount
    elif making_amount < 0:
        raise ValueError("making_amount must not be negative")
    else:
        amount = _ceil_div(making_amount * order.taking_amount, order.making_amount)
    if fees is not None:
        resolver_fee = fees.resolver_fee
        if whitelisted:
            resolver_fee = resolver_fee * fees.whitelist_discount_numerator // _FEE_BASE_1E2
        amount = _ceil_div(
            amount * (_FEE_BASE_1E5 + fees.integrator_fee + resolver_fee), _FEE_BASE_1E5
        )
    bump = rate_bump_at(details, t, base_fee=base_fee)
    return _ceil_div(amount * (RATE_BUMP_DENOMINATOR + bump), RATE_BUMP_DENOMINATOR)


@attrs.frozen
class MakerTraits:
    """The limit-order `makerTraits` uint256: flags in the top bits, limits in the low bits."""

    value: int

    def _bit(self, n: int) -> bool:
        return bool(self.value >> n & 1)

    @property
    def allow_partial_fills(self) -> bool:
        """False when the NO_PARTIAL_FILLS flag (bit 255) is set."""
        return not self._bit(255)

    @property
    def allow_multiple_fills(self) -> bool:
        """ALLOW_MULTIPLE_FILLS (bit 254): multi-fill orders use a merkle tree of secrets."""
        return self._bit(254)

    @property
    def has_pre_interaction(self) -> bool:
        """PRE_INTERACTION_CALL (bit 252)."""
        return self._bit(252)

    @property
    def has_post_interaction(self) -> bool:
        """POST_INTERACTION_CALL (bit 251): Fusion+ orders set it (escrow creation)."""
        return self._bit(251)

    @property
    def need_check_epoch_manager(self) -> bool:
        """NEED_CHECK_EPOCH_MANAGER (bit 250)."""
        return self._bit(250)

    @property
    def has_extension(self) -> bool:
        """HAS_EXTENSION (bit 249)."""
        return self._bit(249)

    @property
    def use_permit2(self) -> bool:
        """USE_PERMIT2 (bit 248)."""
        return self._bit(248)

    @property
    def unwrap_weth(self) -> bool:
        """UNWRAP_WETH (bit 247)."""
        return self._bit(247)

    @property
    def allowed_sender(self) -> int:
        """Low 80 bits: the last 10 bytes of the only allowed taker, or 0 for anyone."""
        return self.value & ((1 << 80) - 1)

    @property
    def expiration(self) -> int:
        """Bits 80..119: unix-second expiration, 0 for none."""
        return self.value >> 80 & _U40

    @property
    def nonce_or_epoch(self) -> int:
        """Bits 120..159."""
        return self.value >> 120 & _U40

    @property
    def series(self) -> int:
        """Bits 160..199."""
        return self.value >> 160 & _U40


def order_deadline(maker_traits: int) -> int | None:
    """The order's deadline (unix seconds) from its makerTraits, or None if it never expires."""
    return MakerTraits(maker_traits).expiration or None


def is_expired(maker_traits: int, t: int) -> bool:
    """Whether the order can no longer be filled at unix second `t` (strictly past deadline)."""
    deadline = order_deadline(maker_traits)
    return deadline is not None and t > deadline


def fill_secret_index(
    making_amount: int, remaining: int, fill_amount: int, parts_count: int
) -> int:
    """The secret index a multi-fill order's fill must use.

    `floor((making - remaining + fill - 1) * parts_count / making)`, plus 1 when the fill
    completes the order (so the last secret is reserved for the final fill). Raises ValueError
    for a fill that is empty or larger than what remains.
    """
    if making_amount <= 0 or not 0 < fill_amount <= remaining <= making_amount:
        raise ValueError("need 0 < fill_amount <= remaining <= making_amount")
    idx = (making_amount - remaining + fill_amount - 1) * parts_count // making_amount
    return idx + 1 if fill_amount == remaining else idx
