"""The data model of a Fusion+ order extension (re-exported by `extension`).

Auction details, whitelist, fees (v1.2) and legacy fee blocks (v1.1), and `OrderExtension`,
which is both what `decode_extension` returns and what `encode_extension` builds from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from searcherd.fusion_plus._timelocks import Timelocks

__all__ = [
    "ZERO_ADDRESS",
    "AuctionDetails",
    "AuctionPoint",
    "Fees",
    "LegacyFees",
    "OrderExtension",
    "Whitelist",
    "WhitelistEntry",
    "address_half",
]

ZERO_ADDRESS: Final = "0x" + "00" * 20
_U160: Final = (1 << 160) - 1


def address_half(address: str) -> str:
    """The last 10 bytes of an address as 20 lowercase hex chars: how whitelists name resolvers."""
    digits = address.lower().removeprefix("0x")
    if len(digits) < 20 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"not an address: {address!r}")
    return digits[-20:]


@attrs.frozen
class AuctionPoint:
    """One auction curve point: reach `coefficient` (rate bump) `delay` s after the previous."""

    coefficient: int
    delay: int


@attrs.frozen(kw_only=True)
class AuctionDetails:
    """The Dutch auction: unix-second start, duration, initial bump and curve points.

    Rate bumps are in units of 1e7 = 100%. `gas_bump_estimate` / `gas_price_estimate` (1000 =
    1 gwei) let the contract lower the bump when the block base fee is high.
    """

    start_time: int
    duration: int
    initial_rate_bump: int
    points: tuple[AuctionPoint, ...] = ()
    gas_bump_estimate: int = 0
    gas_price_estimate: int = 0

    @property
    def end_time(self) -> int:
        """Unix second at which the bump reaches zero."""
        return self.start_time + self.duration


@attrs.frozen
class WhitelistEntry:
    """A whitelisted resolver (last 10 bytes of its address) and its delay after the previous."""

    address_half: str
    delay: int


@attrs.frozen(kw_only=True)
class Whitelist:
    """Who may fill and from when: entry *k* may fill from `resolving_start_time` + delays 0..k."""

    resolving_start_time: int
    entries: tuple[WhitelistEntry, ...] = ()

    def allow_from(self, address: str) -> int | None:
        """The unix second from which `address` may fill, or None if it is not whitelisted."""
        half = address_half(address)
        allowed = self.resolving_start_time
        for entry in self.entries:
            allowed += entry.delay
            if entry.address_half == half:
                return allowed
        return None

    def is_whitelisted(self, address: str) -> bool:
        """Whether the address's last 10 bytes appear in the whitelist."""
        half = address_half(address)
        return any(e.address_half == half for e in self.entries)

    def can_execute_at(self, address: str, t: int) -> bool:
        """Whether `address` may fill at unix second `t`, walking the list as the contract does."""
        half = address_half(address)
        allowed = self.resolving_start_time
        for entry in self.entries:
            allowed += entry.delay
            if entry.address_half == half:
                return t >= allowed
            if t < allowed:
                return False
        return False


@attrs.frozen(kw_only=True)
class Fees:
    """v1.2 fee bytes (identical in amount data and post-interaction) and recipients.

    `integrator_fee` and `resolver_fee` are in 1e5 units, `integrator_share` and
    `whitelist_discount_numerator` in 1e2 units; a numerator of 100 means no discount (what
    fee-less orders carry).
    """

    integrator_fee: int = 0
    integrator_share: int = 0
    resolver_fee: int = 0
    whitelist_discount_numerator: int = 100
    integrator_fee_recipient: str = ZERO_ADDRESS
    protocol_fee_recipient: str = ZERO_ADDRESS


@attrs.frozen(kw_only=True)
class LegacyFees:
    """v1.1 optional post-interaction fee blocks; None means the block (flag bit) is absent."""

    bank_fee: int | None = None
    integrator_fee_ratio: int | None = None
    integrator_fee_receiver: str | None = None
    custom_receiver: str | None = None


def _default_amount_whitelist(ext: OrderExtension) -> tuple[str, ...]:
    if ext.version == "1.2":
        return tuple(e.address_half for e in ext.whitelist.entries)
    return ()


@attrs.frozen(kw_only=True)
class OrderExtension:
    """A decoded Fusion+ extension; also the parameters `encode_extension` builds one from.

    `dst_token` is the raw uint256 (an EVM address right-aligned, or a 32-byte Solana key);
    `dst_token_address` formats it. `hashlock` is `0x` + 64 hex: the secret hash for single-fill
    orders, or for multi-fill orders a merkle root whose top 16 bits are `parts_count`.
    `amount_whitelist` is the v1.2 amount-getter list of address halves (normally the
    post-interaction whitelist's halves; empty for v1.1). The LOP fields Fusion+ does not use
    are kept as raw bytes so encoding reproduces the input exactly.
    """

    version: str = "1.2"
    factory: str
    auction: AuctionDetails
    whitelist: Whitelist
    amount_whitelist: tuple[str, ...] = attrs.field(
        default=attrs.Factory(_default_amount_whitelist, takes_self=True)
    )
    fees: Fees = Fees()
    legacy_fees: LegacyFees = LegacyFees()
    hashlock: str
    dst_chain_id: int
    dst_token: int
    src_safety_deposit: int
    dst_safety_deposit: int
    timelocks: Timelocks
    maker_asset_suffix: bytes = b""
    taker_asset_suffix: bytes = b""
    predicate: bytes = b""
    maker_permit: bytes = b""
    pre_interaction: bytes = b""
    custom_data: bytes = b""

    @property
    def parts_count(self) -> int:
        """Top 16 bits of the hashlock: number of secrets - 1 for multi-fill orders."""
        return int(self.hashlock, 16) >> 240

    @property
    def dst_token_address(self) -> str:
        """`dst_token` as `0x` + 40 hex when it fits an EVM address, else `0x` + 64 hex."""
        if self.dst_token <= _U160:
            return f"0x{self.dst_token:040x}"
        return f"0x{self.dst_token:064x}"
