"""Fusion+ payload structures shared by events and RPC results (re-exported by `messages`).

The order struct, escrow immutables, a published secret, an active-orders item and page, and
the `getSecrets` result. Each has `from_json` (raises `ShapeError` with the path of the bad
field) and `to_json` (the wire form the server sends, used by the simulator).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import attrs

from searcherd.fusion_plus._timelocks import Timelocks
from searcherd.fusion_plus._wire import (
    ShapeError,
    as_obj,
    get_bool,
    get_int,
    get_obj,
    get_str,
    get_str_list,
    get_u256,
    get_uint_any,
    opt_str,
    opt_u256,
)

__all__ = [
    "SOLANA_CHAIN_ID",
    "ActiveOrder",
    "ActiveOrdersPage",
    "Immutables",
    "LimitOrder",
    "PageMeta",
    "PublicSecret",
    "SecretsError",
    "SecretsResult",
    "parse_date",
]

SOLANA_CHAIN_ID: Final = 501
_MS_THRESHOLD: Final = 10**11  # numeric dates above this are milliseconds (year 5138 in s)


def parse_date(value: str | int) -> int:
    """Unix seconds from an active-order date: an ISO-8601 string, or a number (s or ms).

    The SDK fixtures use ISO strings, the OpenAPI types numbers; numbers above 1e11 are taken
    as milliseconds. Raises ValueError (TypeError for a bool) for anything else.
    """
    if isinstance(value, bool):
        raise TypeError("a date cannot be a boolean")
    if isinstance(value, int):
        return value // 1000 if value >= _MS_THRESHOLD else value
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp())


@attrs.frozen(kw_only=True)
class LimitOrder:
    """The limit-order v4 struct (all eight fields; amounts, salt and traits as ints)."""

    salt: int
    maker: str
    receiver: str
    maker_asset: str
    taker_asset: str
    maker_traits: int
    making_amount: int
    taking_amount: int

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> LimitOrder:
        """Decode the JSON struct (all fields are strings); raises ShapeError."""
        return cls(
            salt=get_u256(d, "salt", p),
            maker=get_str(d, "maker", p),
            receiver=get_str(d, "receiver", p),
            maker_asset=get_str(d, "makerAsset", p),
            taker_asset=get_str(d, "takerAsset", p),
            maker_traits=get_u256(d, "makerTraits", p),
            making_amount=get_u256(d, "makingAmount", p),
            taking_amount=get_u256(d, "takingAmount", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON struct."""
        return {
            "salt": str(self.salt),
            "maker": self.maker,
            "receiver": self.receiver,
            "makerAsset": self.maker_asset,
            "takerAsset": self.taker_asset,
            "makerTraits": str(self.maker_traits),
            "makingAmount": str(self.making_amount),
            "takingAmount": str(self.taking_amount),
        }


@attrs.frozen(kw_only=True)
class Immutables:
    """Escrow immutables. `timelocks` is the packed uint256; `parameters` None when absent."""

    order_hash: str
    hashlock: str
    maker: str
    taker: str
    token: str
    amount: int
    safety_deposit: int
    timelocks: int
    parameters: str | None = None

    @property
    def decoded_timelocks(self) -> Timelocks:
        """`timelocks` unpacked into stages (with `deployed_at` set on-chain)."""
        return Timelocks.from_int(self.timelocks)

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> Immutables:
        """Decode; `timelocks` may be decimal or `0x` hex; raises ShapeError."""
        return cls(
            order_hash=get_str(d, "orderHash", p),
            hashlock=get_str(d, "hashlock", p),
            maker=get_str(d, "maker", p),
            taker=get_str(d, "taker", p),
            token=get_str(d, "token", p),
            amount=get_u256(d, "amount", p),
            safety_deposit=get_u256(d, "safetyDeposit", p),
            timelocks=get_uint_any(d, "timelocks", p),
            parameters=opt_str(d, "parameters", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object; `timelocks` as a decimal string (the SDK serializer's form)."""
        out: dict[str, Any] = {
            "orderHash": self.order_hash,
            "hashlock": self.hashlock,
            "maker": self.maker,
            "taker": self.taker,
            "token": self.token,
            "amount": str(self.amount),
            "safetyDeposit": str(self.safety_deposit),
            "timelocks": str(self.timelocks),
        }
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out


@attrs.frozen(kw_only=True)
class PublicSecret:
    """A published secret for fill `idx` with both escrows' immutables."""

    idx: int
    secret: str
    src_immutables: Immutables
    dst_immutables: Immutables

    @property
    def order_hash(self) -> str:
        """The order this secret belongs to (`srcImmutables.orderHash`)."""
        return self.src_immutables.order_hash

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> PublicSecret:
        """Decode; raises ShapeError."""
        return cls(
            idx=get_int(d, "idx", p),
            secret=get_str(d, "secret", p),
            src_immutables=Immutables.from_json(
                get_obj(d, "srcImmutables", p), f"{p}.srcImmutables"
            ),
            dst_immutables=Immutables.from_json(
                get_obj(d, "dstImmutables", p), f"{p}.dstImmutables"
            ),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "idx": self.idx,
            "secret": self.secret,
            "srcImmutables": self.src_immutables.to_json(),
            "dstImmutables": self.dst_immutables.to_json(),
        }


def _date(d: dict[str, Any], key: str, p: str) -> str | int:
    value = d.get(key)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise ShapeError(f"{p}.{key} must be a date string or number")


def _fills(d: dict[str, Any], p: str) -> tuple[str, ...]:
    value = d.get("fills")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ShapeError(f"{p}.fills must be a list")
    out = []
    for i, fill in enumerate(value):
        out.append(
            fill
            if isinstance(fill, str)
            else get_str(as_obj(fill, f"{p}.fills[{i}]"), "txHash", f"{p}.fills[{i}]")
        )
    return tuple(out)


@attrs.frozen(kw_only=True)
class ActiveOrder:
    """An `getActiveOrders` / REST active-orders item.

    Dates are kept as sent (ISO string or number; see `parse_date`); `fills` are tx hashes.
    EVM-only fields are None for Solana-source orders, whose payload is kept in `raw`.
    """

    quote_id: str | None
    order_hash: str
    src_chain_id: int
    dst_chain_id: int
    deadline: str | int
    auction_start_date: str | int
    auction_end_date: str | int
    remaining_maker_amount: int
    version: str | None = None
    secret_hashes: tuple[str, ...] = ()
    fills: tuple[str, ...] = ()
    order: LimitOrder | None = None
    extension: str | None = None
    signature: str | None = None
    is_maker_contract: bool = False
    maker_balance: int | None = None
    maker_allowance: int | None = None
    raw: dict[str, Any] | None = attrs.field(default=None, hash=False, repr=False)

    @property
    def is_solana_source(self) -> bool:
        """The source chain is Solana: a different order schema, kept raw."""
        return self.src_chain_id == SOLANA_CHAIN_ID

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> ActiveOrder:
        """Decode; raises ShapeError."""
        src = get_int(d, "srcChainId", p)
        common: dict[str, Any] = {
            "quote_id": opt_str(d, "quoteId", p),
            "order_hash": get_str(d, "orderHash", p),
            "src_chain_id": src,
            "dst_chain_id": get_int(d, "dstChainId", p),
            "deadline": _date(d, "deadline", p),
            "auction_start_date": _date(d, "auctionStartDate", p),
            "auction_end_date": _date(d, "auctionEndDate", p),
            "remaining_maker_amount": get_u256(d, "remainingMakerAmount", p),
            "version": opt_str(d, "version", p),
            "secret_hashes": get_str_list(d, "secretHashes", p),
            "fills": _fills(d, p),
        }
        if src == SOLANA_CHAIN_ID:
            return cls(**common, raw=d)
        return cls(
            **common,
            order=LimitOrder.from_json(get_obj(d, "order", p), f"{p}.order"),
            extension=get_str(d, "extension", p),
            signature=get_str(d, "signature", p),
            is_maker_contract=get_bool(d, "isMakerContract", p, default=False),
            maker_balance=opt_u256(d, "makerBalance", p),
            maker_allowance=opt_u256(d, "makerAllowance", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON item (fills as `{txHash}` objects)."""
        if self.raw is not None:
            return self.raw
        out: dict[str, Any] = {
            "orderHash": self.order_hash,
            "srcChainId": self.src_chain_id,
            "dstChainId": self.dst_chain_id,
            "deadline": self.deadline,
            "auctionStartDate": self.auction_start_date,
            "auctionEndDate": self.auction_end_date,
            "remainingMakerAmount": str(self.remaining_maker_amount),
            "secretHashes": list(self.secret_hashes),
            "fills": [{"txHash": h} for h in self.fills],
            "order": self.order.to_json() if self.order else None,
            "extension": self.extension,
            "signature": self.signature,
            "isMakerContract": self.is_maker_contract,
        }
        optional = {
            "quoteId": self.quote_id,
            "version": self.version,
            "makerBalance": None if self.maker_balance is None else str(self.maker_balance),
            "makerAllowance": None if self.maker_allowance is None else str(self.maker_allowance),
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


@attrs.frozen(kw_only=True)
class PageMeta:
    """Paging info of a list result; keep fetching until `current_page >= total_pages`."""

    total_items: int
    items_per_page: int
    total_pages: int
    current_page: int

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> PageMeta:
        """Decode; raises ShapeError."""
        return cls(
            total_items=get_int(d, "totalItems", p),
            items_per_page=get_int(d, "itemsPerPage", p),
            total_pages=get_int(d, "totalPages", p),
            current_page=get_int(d, "currentPage", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "totalItems": self.total_items,
            "itemsPerPage": self.items_per_page,
            "totalPages": self.total_pages,
            "currentPage": self.current_page,
        }


@attrs.frozen
class ActiveOrdersPage:
    """One page of active orders (`getActiveOrders` result)."""

    items: tuple[ActiveOrder, ...]
    meta: PageMeta

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> ActiveOrdersPage:
        """Decode; raises ShapeError."""
        items = d.get("items")
        if not isinstance(items, list):
            raise ShapeError(f"{p}.items must be a list")
        return cls(
            tuple(
                ActiveOrder.from_json(as_obj(it, f"{p}.items[{i}]"), f"{p}.items[{i}]")
                for i, it in enumerate(items)
            ),
            PageMeta.from_json(get_obj(d, "meta", p), f"{p}.meta"),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"items": [it.to_json() for it in self.items], "meta": self.meta.to_json()}


@attrs.frozen(kw_only=True)
class SecretsResult:
    """The `getSecrets` success shape: order type ("SingleFill" / "MultipleFills") and secrets."""

    order_type: str
    secrets: tuple[PublicSecret, ...] = ()
    merkle_leaves: tuple[str, ...] = ()
    secret_hashes: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any], p: str) -> SecretsResult:
        """Decode; raises ShapeError."""
        raw = d.get("secrets")
        if raw is not None and not isinstance(raw, list):
            raise ShapeError(f"{p}.secrets must be a list")
        return cls(
            order_type=get_str(d, "orderType", p),
            secrets=tuple(
                PublicSecret.from_json(as_obj(s, f"{p}.secrets[{i}]"), f"{p}.secrets[{i}]")
                for i, s in enumerate(raw or [])
            ),
            merkle_leaves=get_str_list(d, "merkleLeaves", p),
            secret_hashes=get_str_list(d, "secretHashes", p),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "orderType": self.order_type,
            "secrets": [s.to_json() for s in self.secrets],
            "merkleLeaves": list(self.merkle_leaves),
            "secretHashes": list(self.secret_hashes),
        }


@attrs.frozen
class SecretsError:
    """The `getSecrets` error shape `{"error": str}` (e.g. "not allowed" for this key)."""

    error: str

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        return {"error": self.error}
