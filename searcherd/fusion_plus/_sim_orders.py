"""Orders of the Fusion+ simulator: generated for real, kept with everything that happens to them.

Each order gets a real extension (built with `encode_extension`, so the daemon's decoder must
read it back), a salt bound to that extension, makerTraits with the deadline (auction end +
12 s), consistent amounts, and secrets with proper keccak hashlocks (single fill: the hashlock is
keccak(secret); multiple fills: merkle leaves keccak(uint64 idx || keccak(secret)) under a root
whose top 16 bits hold the parts count). Fills, their takers and escrow deployment times are
recorded, so a shared secret carries consistent immutables and the REST endpoints answer with
what really happened.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Final

import attrs

from searcherd.fusion_plus._abi import keccak256
from searcherd.fusion_plus.auction import DEFAULT_EXPIRATION_DELAY, fill_secret_index
from searcherd.fusion_plus.extension import (
    AuctionDetails,
    AuctionPoint,
    OrderExtension,
    Timelocks,
    Whitelist,
    WhitelistEntry,
    address_half,
    encode_extension,
)
from searcherd.fusion_plus.messages import (
    ActiveOrder,
    Immutables,
    LimitOrder,
    OrderCreated,
    PublicSecret,
)

if TYPE_CHECKING:
    import random

__all__ = ["SimFill", "SimOrder", "make_order"]

_U160: Final = (1 << 160) - 1
_TRUE_ERC20: Final = "0xda0000d4000015a526378bb6fafc650cea5966f8"
_FACTORY: Final = {"1.2": "0x03a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa",
                   "1.1": "0xa7bcb4eac8964306f9e3764f67db6a7af6ddf99a"}  # fmt: skip
_USDC: Final = 0xAF88D065E77C8CC2239327C5EDB3A432268E5831
_MAKER_ASSET: Final = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
_TIMELOCKS: Final = Timelocks(12, 512, 1012, 1112, 12, 452, 952)
_DST_DEPLOY_LAG: Final = 10  # s between the src and dst escrow deployments
_FLAG_NO_PARTIAL: Final = 1 << 255
_FLAG_MULTIPLE: Final = 1 << 254
_FLAG_POST_INTERACTION: Final = 1 << 251
_FLAG_HAS_EXTENSION: Final = 1 << 249
_FEE_PARAMETERS: Final = "0x" + "00" * 128


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _address(rng: random.Random) -> str:
    return _hex(rng.randbytes(20))


def iso(t: int) -> str:
    """Unix seconds as the ISO-8601 form the active-orders fixtures use."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _merkle_root(leaves: list[bytes]) -> bytes:
    """Sorted-pair keccak merkle root (odd nodes are promoted)."""
    level = leaves
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            if i + 1 == len(level):
                nxt.append(level[i])
            else:
                a, b = sorted((level[i], level[i + 1]))
                nxt.append(keccak256(a + b))
        level = nxt
    return level[0]


@attrs.define
class SimFill:
    """One fill: its secret index, size, taker (resolver) and escrow deployment times."""

    idx: int
    making_amount: int
    taking_amount: int
    taker: str
    tx_hash: str
    src_deployed_at: int
    dst_deployed_at: int


@attrs.define
class SimOrder:
    """One simulated order and its history. `status` is the REST status."""

    order_hash: str
    version: str
    src_chain_id: int
    dst_chain_id: int
    order: LimitOrder
    extension: OrderExtension
    extension_hex: str
    signature: str
    quote_id: str
    secrets: list[str]
    secret_hashes: list[str]
    merkle_leaves: list[str]
    remaining: int
    balance: int
    allowance: int
    created_at: int
    status: str = "pending"
    fills: list[SimFill] = attrs.Factory(list)
    shared: dict[int, PublicSecret] = attrs.Factory(dict)
    cancel_tx: str | None = None

    @property
    def multi(self) -> bool:
        """Whether the order allows multiple fills (one secret per part)."""
        return len(self.secrets) > 1

    @property
    def deadline(self) -> int:
        """Unix second after which the order cannot be filled."""
        return self.extension.auction.end_time + DEFAULT_EXPIRATION_DELAY

    @property
    def is_active(self) -> bool:
        """Still listed by `getActiveOrders`."""
        return self.status == "pending"

    def created_event(self) -> OrderCreated:
        """The `order_created` event for this order."""
        multi = self.multi
        return OrderCreated(
            src_chain_id=self.src_chain_id,
            dst_chain_id=self.dst_chain_id,
            order_hash=self.order_hash,
            order=self.order,
            extension=self.extension_hex,
            signature=self.signature,
            quote_id=self.quote_id,
            merkle_leaves=tuple(self.merkle_leaves) if multi else (),
            secret_hashes=tuple(self.secret_hashes) if multi else (),
        )

    def active_item(self) -> ActiveOrder:
        """The order as an item of the active-orders list."""
        auction = self.extension.auction
        return ActiveOrder(
            quote_id=self.quote_id,
            order_hash=self.order_hash,
            src_chain_id=self.src_chain_id,
            dst_chain_id=self.dst_chain_id,
            deadline=iso(self.deadline),
            auction_start_date=iso(auction.start_time),
            auction_end_date=iso(auction.end_time),
            remaining_maker_amount=self.remaining,
            version=self.version,
            secret_hashes=tuple(self.secret_hashes) if self.multi else (),
            fills=tuple(f.tx_hash for f in self.fills),
            order=self.order,
            extension=self.extension_hex,
            signature=self.signature,
            maker_balance=self.balance,
            maker_allowance=self.allowance,
        )

    def next_fill_index(self, amount: int) -> int:
        """The secret index a fill of `amount` uses (0 for single-fill orders)."""
        if not self.multi:
            return 0
        making = self.order.making_amount
        return fill_secret_index(making, self.remaining, amount, len(self.secrets) - 1)

    def record_fill(self, amount: int, taker: str, now: int, rng: random.Random) -> SimFill:
        """Record a fill of `amount` maker tokens by `taker` at unix `now`; returns it."""
        if not 0 < amount <= self.remaining:
            raise ValueError(f"fill of {amount} does not fit the remaining {self.remaining}")
        idx = self.next_fill_index(amount)
        taking = -(-amount * self.order.taking_amount // self.order.making_amount)
        fill = SimFill(
            idx, amount, taking, taker, _hex(rng.randbytes(32)), now, now + _DST_DEPLOY_LAG
        )
        self.fills.append(fill)
        self.remaining -= amount
        if self.remaining == 0:
            self.status = "executed"
        return fill

    def public_secret(self, fill: SimFill) -> PublicSecret:
        """The published secret of `fill`, with both escrows' immutables."""
        secret = self.secrets[fill.idx]
        hashlock = self.secret_hashes[fill.idx]
        ext = self.extension
        common: dict[str, Any] = {"order_hash": self.order_hash, "hashlock": hashlock}
        src = Immutables(
            **common,
            maker=self.order.maker,
            taker=fill.taker,
            token=self.order.maker_asset,
            amount=fill.making_amount,
            safety_deposit=ext.src_safety_deposit,
            timelocks=ext.timelocks.with_deployed_at(fill.src_deployed_at).to_int(),
            parameters="0x",
        )
        dst = Immutables(
            **common,
            maker=self.order.maker,
            taker=fill.taker,
            token=ext.dst_token_address,
            amount=fill.taking_amount,
            safety_deposit=ext.dst_safety_deposit,
            timelocks=ext.timelocks.with_deployed_at(fill.dst_deployed_at).to_int(),
            parameters=_FEE_PARAMETERS if self.version == "1.2" else None,
        )
        return PublicSecret(idx=fill.idx, secret=secret, src_immutables=src, dst_immutables=dst)

    def status_json(self) -> dict[str, Any]:
        """The REST order-status answer."""
        auction = self.extension.auction
        return {
            "orderHash": self.order_hash,
            "status": self.status,
            "validation": "valid",
            "order": self.order.to_json(),
            "extension": self.extension_hex,
            "points": [{"delay": p.delay, "coefficient": p.coefficient} for p in auction.points],
            "approximateTakingAmount": str(self.order.taking_amount),
            "positiveSurplus": "0",
            "fills": [
                {
                    "status": "executed",
                    "txHash": f.tx_hash,
                    "filledMakerAmount": str(f.making_amount),
                    "filledAuctionTakerAmount": str(f.taking_amount),
                    "escrowEvents": [],
                }
                for f in self.fills
            ],
            "auctionStartDate": auction.start_time,
            "auctionDuration": auction.duration,
            "initialRateBump": auction.initial_rate_bump,
            "createdAt": self.created_at * 1000,
            "srcTokenPriceUsd": None,
            "dstTokenPriceUsd": None,
            "cancelTx": self.cancel_tx,
            "srcChainId": self.src_chain_id,
            "dstChainId": self.dst_chain_id,
            "cancelable": self.status == "pending",
            "takerAsset": self.order.taker_asset,
            "timeLocks": hex(self.extension.timelocks.to_int()),
        }

    def secrets_json(self) -> dict[str, Any]:
        """The REST published-secrets answer."""
        return {
            "orderType": "MultipleFills" if self.multi else "SingleFill",
            "secrets": [self.shared[i].to_json() for i in sorted(self.shared)],
            "secretHashes": list(self.secret_hashes),
        }


def make_order(
    rng: random.Random,
    now: int,
    *,
    version: str = "1.2",
    parts: int = 1,
    making_amount: int = 100_000_000,
    taking_amount: int = 99_000_000,
    src_chain_id: int = 1,
    dst_chain_id: int = 42161,
    resolvers: tuple[str, ...] = (),
    auction_start: int | None = None,
    duration: int = 180,
) -> SimOrder:
    """Build one order with a real extension; `parts` > 1 makes a multi-fill order.

    A multi-fill order has `parts + 1` secrets (the last one is for the fill that completes it).
    `resolvers` are whitelisted (each 10 s after the previous), in that order.
    """
    if version not in _FACTORY:
        raise ValueError(f"unknown order version {version!r}")
    n_secrets = 1 if parts <= 1 else parts + 1
    secrets = [rng.randbytes(32) for _ in range(n_secrets)]
    hashes = [keccak256(s) for s in secrets]
    leaves = [keccak256(i.to_bytes(8, "big") + h) for i, h in enumerate(hashes)]
    if n_secrets == 1:
        hashlock = _hex(hashes[0])
    else:
        root = int.from_bytes(_merkle_root(leaves), "big")
        hashlock = f"0x{((n_secrets - 1) << 240) | (root & ((1 << 240) - 1)):064x}"
    start = now if auction_start is None else auction_start
    entries = tuple(
        WhitelistEntry(address_half(r), 0 if i == 0 else 10) for i, r in enumerate(resolvers)
    )
    ext = OrderExtension(
        version=version,
        factory=_FACTORY[version],
        auction=AuctionDetails(
            start_time=start,
            duration=duration,
            initial_rate_bump=50_000,
            points=(AuctionPoint(30_000, duration // 3), AuctionPoint(10_000, duration // 3)),
        ),
        whitelist=Whitelist(resolving_start_time=start, entries=entries),
        hashlock=hashlock,
        dst_chain_id=dst_chain_id,
        dst_token=_USDC,
        src_safety_deposit=100_000_000_000_000,
        dst_safety_deposit=50_000_000_000_000,
        timelocks=_TIMELOCKS,
    )
    ext_hex = encode_extension(ext)
    ext_hash = int.from_bytes(keccak256(bytes.fromhex(ext_hex[2:])), "big")
    salt = (rng.getrandbits(96) << 160) | (ext_hash & _U160)
    deadline = ext.auction.end_time + DEFAULT_EXPIRATION_DELAY
    traits = _FLAG_HAS_EXTENSION | _FLAG_POST_INTERACTION | (deadline << 80)
    traits |= _FLAG_MULTIPLE if n_secrets > 1 else _FLAG_NO_PARTIAL
    maker = _address(rng)
    order = LimitOrder(
        salt=salt,
        maker=maker,
        receiver="0x" + "00" * 20,
        maker_asset=_MAKER_ASSET,
        taker_asset=_TRUE_ERC20,
        maker_traits=traits,
        making_amount=making_amount,
        taking_amount=taking_amount,
    )
    order_hash = _hex(keccak256(salt.to_bytes(32, "big") + bytes.fromhex(maker[2:])))
    return SimOrder(
        order_hash=order_hash,
        version=version,
        src_chain_id=src_chain_id,
        dst_chain_id=dst_chain_id,
        order=order,
        extension=ext,
        extension_hex=ext_hex,
        signature=_hex(rng.randbytes(65)),
        quote_id=str(_uuid(rng)),
        secrets=[_hex(s) for s in secrets],
        secret_hashes=[_hex(h) for h in hashes],
        merkle_leaves=[_hex(leaf) for leaf in leaves],
        remaining=making_amount,
        balance=making_amount,
        allowance=(1 << 256) - 1,
        created_at=now,
    )


def _uuid(rng: random.Random) -> str:
    h = rng.randbytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
