"""The eight Fusion+ push events (re-exported by `messages`).

Each class has `EVENT` (its wire name), `from_json(payload, path)` raising `ShapeError`, and
`to_json()` giving the payload the server sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from searcherd.fusion_plus._types import SOLANA_CHAIN_ID, LimitOrder, PublicSecret
from searcherd.fusion_plus._wire import (
    get_bool,
    get_int,
    get_obj,
    get_str,
    get_str_list,
    get_u256,
    opt_str,
    opt_u256,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "EVENT_DECODERS",
    "FusionEvent",
    "OrderAllowanceChange",
    "OrderBalanceChange",
    "OrderCancelled",
    "OrderCreated",
    "OrderFilled",
    "OrderFilledPartially",
    "OrderInvalid",
    "SecretShared",
]

# ---------------------------------------------------------------- push events


@attrs.frozen(kw_only=True)
class OrderCreated:
    """`order_created`: a new order is live. EVM orders carry the order struct and extension.

    For Solana-source orders (`is_solana_source`) `order`, `extension` and `signature` are None
    and the whole payload is in `raw`.
    """

    EVENT: ClassVar[str] = "order_created"
    src_chain_id: int
    dst_chain_id: int
    order_hash: str
    order: LimitOrder | None
    extension: str | None
    signature: str | None
    is_maker_contract: bool = False
    quote_id: str | None = None
    merkle_leaves: tuple[str, ...] = ()
    secret_hashes: tuple[str, ...] = ()
    raw: dict[str, Any] | None = attrs.field(default=None, hash=False, repr=False)

    @property
    def is_solana_source(self) -> bool:
        """The source chain is Solana: a different order schema, kept raw."""
        return self.src_chain_id == SOLANA_CHAIN_ID

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderCreated:
        """Decode the event payload; raises ShapeError."""
        src = get_int(d, "srcChainId", p)
        common: dict[str, Any] = {
            "src_chain_id": src,
            "dst_chain_id": get_int(d, "dstChainId", p),
            "order_hash": get_str(d, "orderHash", p),
        }
        if src == SOLANA_CHAIN_ID:
            return cls(**common, order=None, extension=None, signature=None, raw=d)
        return cls(
            **common,
            order=LimitOrder.from_json(get_obj(d, "order", p), f"{p}.order"),
            extension=get_str(d, "extension", p),
            signature=get_str(d, "signature", p),
            is_maker_contract=get_bool(d, "isMakerContract", p, default=False),
            quote_id=opt_str(d, "quoteId", p),
            merkle_leaves=get_str_list(d, "merkleLeaves", p),
            secret_hashes=get_str_list(d, "secretHashes", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        if self.raw is not None:
            return self.raw
        out: dict[str, Any] = {
            "srcChainId": self.src_chain_id,
            "dstChainId": self.dst_chain_id,
            "orderHash": self.order_hash,
            "order": self.order.to_json() if self.order else None,
            "extension": self.extension,
            "signature": self.signature,
            "isMakerContract": self.is_maker_contract,
            "merkleLeaves": list(self.merkle_leaves),
            "secretHashes": list(self.secret_hashes),
        }
        if self.quote_id is not None:
            out["quoteId"] = self.quote_id
        return out


@attrs.frozen
class OrderInvalid:
    """`order_invalid`: the relayer says the order can no longer be filled (terminal)."""

    EVENT: ClassVar[str] = "order_invalid"
    order_hash: str

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderInvalid:
        """Decode the event payload; raises ShapeError."""
        return cls(get_str(d, "orderHash", p))

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        return {"orderHash": self.order_hash}


@attrs.frozen
class OrderFilled:
    """`order_filled`: fully filled; `secret_shared` may still follow for its fills."""

    EVENT: ClassVar[str] = "order_filled"
    order_hash: str

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderFilled:
        """Decode the event payload; raises ShapeError."""
        return cls(get_str(d, "orderHash", p))

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        return {"orderHash": self.order_hash}


@attrs.frozen
class OrderFilledPartially:
    """`order_filled_partially`: one fill happened, `remaining_maker_amount` is left."""

    EVENT: ClassVar[str] = "order_filled_partially"
    order_hash: str
    remaining_maker_amount: int

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderFilledPartially:
        """Decode the event payload; raises ShapeError."""
        return cls(get_str(d, "orderHash", p), get_u256(d, "remainingMakerAmount", p))

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        return {
            "orderHash": self.order_hash,
            "remainingMakerAmount": str(self.remaining_maker_amount),
        }


@attrs.frozen
class OrderCancelled:
    """`order_cancelled`: the maker cancelled (terminal). The amount is None if not sent."""

    EVENT: ClassVar[str] = "order_cancelled"
    order_hash: str
    remaining_maker_amount: int | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderCancelled:
        """Decode the event payload; raises ShapeError."""
        return cls(get_str(d, "orderHash", p), opt_u256(d, "remainingMakerAmount", p))

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        out: dict[str, Any] = {"orderHash": self.order_hash}
        if self.remaining_maker_amount is not None:
            out["remainingMakerAmount"] = str(self.remaining_maker_amount)
        return out


@attrs.frozen
class OrderBalanceChange:
    """`order_balance_change`: the maker's balance of the maker asset changed."""

    EVENT: ClassVar[str] = "order_balance_change"
    order_hash: str
    remaining_maker_amount: int
    balance: int

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderBalanceChange:
        """Decode the event payload; raises ShapeError."""
        return cls(
            get_str(d, "orderHash", p),
            get_u256(d, "remainingMakerAmount", p),
            get_u256(d, "balance", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        return {
            "orderHash": self.order_hash,
            "remainingMakerAmount": str(self.remaining_maker_amount),
            "balance": str(self.balance),
        }


@attrs.frozen
class OrderAllowanceChange:
    """`order_allowance_change`: the maker's allowance to the limit-order contract changed."""

    EVENT: ClassVar[str] = "order_allowance_change"
    order_hash: str
    remaining_maker_amount: int
    allowance: int

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> OrderAllowanceChange:
        """Decode the event payload; raises ShapeError."""
        return cls(
            get_str(d, "orderHash", p),
            get_u256(d, "remainingMakerAmount", p),
            get_u256(d, "allowance", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        return {
            "orderHash": self.order_hash,
            "remainingMakerAmount": str(self.remaining_maker_amount),
            "allowance": str(self.allowance),
        }


@attrs.frozen
class SecretShared:
    """`secret_shared`: the maker's secret for fill `idx` is public; join on `order_hash`."""

    EVENT: ClassVar[str] = "secret_shared"
    secret: PublicSecret

    @property
    def order_hash(self) -> str:
        """`srcImmutables.orderHash`: the event has no top-level order hash."""
        return self.secret.order_hash

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str = "result") -> SecretShared:
        """Decode the event payload; raises ShapeError."""
        return cls(PublicSecret.from_json(d, p))

    def to_json(self) -> dict[str, Any]:
        """The event payload as the server sends it."""
        return self.secret.to_json()


FusionEvent = (
    OrderCreated
    | OrderInvalid
    | OrderBalanceChange
    | OrderAllowanceChange
    | OrderFilled
    | OrderFilledPartially
    | OrderCancelled
    | SecretShared
)

EVENT_DECODERS: Final[dict[str, Callable[[dict[str, Any], str], FusionEvent]]] = {
    cls.EVENT: cls.from_json
    for cls in (
        OrderCreated,
        OrderInvalid,
        OrderBalanceChange,
        OrderAllowanceChange,
        OrderFilled,
        OrderFilledPartially,
        OrderCancelled,
        SecretShared,
    )
}
