"""The Fusion+ order book: what the daemon knows about every order, as immutable snapshots.

The feed is a firehose of eight event types for every order on every chain. The book folds them
into one :class:`FusionOrder` per order hash, the snapshot strategies receive (on creation, on
reseed and on every update). A snapshot never changes: each event builds a new one, so a
strategy holding an old snapshot sees a consistent order, not one changing under its feet.

Lifecycle (statuses): ``active`` -> ``partially_filled`` (0..n) -> one final status:
``filled``, ``cancelled``, ``invalid``, ``expired`` (the deadline passed: there is no expiry
event), or ``refunded`` (a REST-only outcome). A final status is never replaced by a later event;
``secret_shared`` may still arrive after ``order_filled`` (withdrawals follow fills) and is kept.

Orders filled by our own resolver are flagged ``ours``: a shared secret whose escrow immutables
name our resolver address as the taker. For those, :func:`closing_windows` says which private
escrow windows (withdrawal, cancellation) are about to close, from the decoded timelocks and the
escrow's ``deployed_at``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Final

import attrs

from searcherd.fusion_plus.auction import (
    DEFAULT_EXPIRATION_DELAY,
    order_deadline,
    rate_bump_at,
    taking_amount_at,
)
from searcherd.fusion_plus.extension import (
    ExtensionDecodeError,
    OrderExtension,
    TimelockStage,
    decode_extension,
)
from searcherd.fusion_plus.messages import (
    ActiveOrder,
    LimitOrder,
    OrderAllowanceChange,
    OrderBalanceChange,
    OrderCancelled,
    OrderCreated,
    OrderFilled,
    OrderFilledPartially,
    OrderInvalid,
    PublicSecret,
    SecretShared,
    parse_date,
)

if TYPE_CHECKING:
    from searcherd.fusion_plus.messages import FusionEvent

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "BookChange",
    "ClosingWindow",
    "FusionOrder",
    "OrderBook",
    "closing_windows",
    "same_address",
]

ACTIVE_STATUSES: Final = frozenset({"active", "partially_filled"})
FINAL_STATUSES: Final = frozenset({"filled", "cancelled", "invalid", "expired", "refunded"})
_FINAL_BY_EVENT: Final = {
    OrderFilled: "filled",
    OrderCancelled: "cancelled",
    OrderInvalid: "invalid",
}
_MAX_FINAL: Final = 5000  # final orders kept for late secrets and lookups; oldest forgotten


def _norm_address(address: str) -> str:
    digits = address.lower().removeprefix("0x")
    # A 32-byte word holding an EVM address (how non-EVM immutables pad it).
    if len(digits) == 64 and digits.startswith("0" * 24):
        digits = digits[24:]
    return digits


def same_address(a: str, b: str) -> bool:
    """Whether two addresses are equal, ignoring case, `0x` and 32-byte left padding."""
    return bool(a) and bool(b) and _norm_address(a) == _norm_address(b)


@attrs.frozen(kw_only=True)
class FusionOrder:
    """One Fusion+ order as the daemon knows it now (an immutable snapshot).

    `extension` is the decoded extension (None if the order carried none we could read;
    `extension_error` says why). `remaining_maker_amount`, `maker_balance` and
    `maker_allowance` are None until an event or the active-orders list told us. `deadline` is
    unix seconds (from the active-orders item, the makerTraits expiration, or auction end + 12 s).
    `secrets` are the published secrets known so far, by ascending index. `received_at` /
    `updated_at` are `trio.current_time()` values.
    """

    order_hash: str
    src_chain_id: int
    dst_chain_id: int
    status: str
    order: LimitOrder | None = None
    extension: OrderExtension | None = None
    extension_hex: str | None = attrs.field(default=None, repr=False)
    extension_error: str | None = None
    version: str | None = None
    signature: str | None = attrs.field(default=None, repr=False)
    quote_id: str | None = None
    is_maker_contract: bool = False
    secret_hashes: tuple[str, ...] = attrs.field(default=(), repr=False)
    merkle_leaves: tuple[str, ...] = attrs.field(default=(), repr=False)
    remaining_maker_amount: int | None = None
    maker_balance: int | None = None
    maker_allowance: int | None = None
    deadline: int | None = None
    secrets: tuple[PublicSecret, ...] = attrs.field(default=(), repr=False)
    ours: bool = False
    last_event: str = ""
    received_at: float = 0.0
    updated_at: float = 0.0

    @property
    def is_active(self) -> bool:
        """True while the order may still be filled (as far as the feed has said)."""
        return self.status in ACTIVE_STATUSES

    @property
    def is_final(self) -> bool:
        """True once the order reached a final status."""
        return self.status in FINAL_STATUSES

    @property
    def making_amount(self) -> int | None:
        """The order's full maker amount (None for orders without an EVM order struct)."""
        return None if self.order is None else self.order.making_amount

    def secret(self, idx: int) -> PublicSecret | None:
        """The published secret of fill `idx`, if known."""
        return next((s for s in self.secrets if s.idx == idx), None)

    def is_expired_at(self, t: float) -> bool:
        """Whether the order can no longer be filled at unix second `t` (strictly past deadline)."""
        return self.deadline is not None and t > self.deadline

    def _priced(self) -> tuple[LimitOrder, OrderExtension]:
        if self.order is None or self.extension is None:
            raise ValueError(
                f"order {self.order_hash} has no decodable order/extension: "
                f"{self.extension_error or 'not an EVM order'}"
            )
        return self.order, self.extension

    def rate_bump_at(self, t: int, *, base_fee: int = 0) -> int:
        """The auction rate bump (1e7 = 100%) at unix second `t`; ValueError without extension."""
        _, ext = self._priced()
        return rate_bump_at(ext.auction, t, base_fee=base_fee)

    def taking_amount_at(
        self,
        t: int,
        *,
        making_amount: int | None = None,
        base_fee: int = 0,
        whitelisted: bool = True,
    ) -> int:
        """The taker amount required at unix second `t` for a fill of `making_amount`.

        Defaults to the whole order; v1.2 fees are included. ValueError without an extension.
        """
        order, ext = self._priced()
        fees = ext.fees if ext.version == "1.2" else None
        return taking_amount_at(
            order,
            ext.auction,
            t,
            making_amount=making_amount,
            base_fee=base_fee,
            fees=fees,
            whitelisted=whitelisted,
        )


@attrs.frozen
class BookChange:
    """What one event did to the book.

    `order` is the new snapshot, or None when the event names an order the book does not hold
    (a secret for an unknown order is still reported through `secret`). `became_final` /
    `became_ours` flag transitions; `anomaly` says why an event was not applied (e.g. a second
    final status), None when it was.
    """

    event: str
    order_hash: str
    order: FusionOrder | None
    secret: PublicSecret | None = None
    new_secret: bool = False
    became_final: bool = False
    became_ours: bool = False
    anomaly: str | None = None


def _decode_ext(
    hex_str: str | None, version: str | None
) -> tuple[OrderExtension | None, str | None]:
    if hex_str is None:
        return None, "no extension"
    try:
        return decode_extension(
            hex_str, version=version if version in ("1.1", "1.2") else None
        ), None
    except ExtensionDecodeError as exc:
        return None, str(exc)[:300]


def _deadline(order: LimitOrder | None, ext: OrderExtension | None) -> int | None:
    if order is not None:
        deadline = order_deadline(order.maker_traits)
        if deadline is not None:
            return deadline
    if ext is not None:
        return ext.auction.end_time + DEFAULT_EXPIRATION_DELAY
    return None


class OrderBook:
    """Every order by hash; applies events and produces new snapshots.

    Not thread-safe and never awaits: it is driven from the socket reader. Final orders are kept
    (late secrets still join them) up to a cap, oldest forgotten first.
    """

    def __init__(self, resolver_address: str = "", *, max_final: int = _MAX_FINAL) -> None:
        self.resolver_address = resolver_address
        self._orders: dict[str, FusionOrder] = {}
        self._final: OrderedDict[str, None] = OrderedDict()
        self._max_final = max_final
        self._counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_hash: str) -> FusionOrder | None:
        """The snapshot of one order, or None."""
        return self._orders.get(order_hash)

    def active(self) -> list[FusionOrder]:
        """Every order whose status is active (not final), in insertion order."""
        return [o for o in self._orders.values() if o.is_active]

    def counts(self) -> dict[str, int]:
        """How many orders the book holds, by status."""
        return {k: v for k, v in self._counts.items() if v}

    def is_ours(self, secret: PublicSecret) -> bool:
        """Whether either escrow of this fill names our resolver as the taker."""
        ours = self.resolver_address
        return bool(ours) and (
            same_address(secret.src_immutables.taker, ours)
            or same_address(secret.dst_immutables.taker, ours)
        )

    def _put(self, new: FusionOrder) -> None:
        old = self._orders.get(new.order_hash)
        if old is not None:
            self._counts[old.status] -= 1
        self._counts[new.status] += 1
        self._orders[new.order_hash] = new
        if new.is_final and (old is None or not old.is_final):
            self._final[new.order_hash] = None
            while len(self._final) > self._max_final:
                gone, _ = self._final.popitem(last=False)
                dropped = self._orders.pop(gone, None)
                if dropped is not None:
                    self._counts[dropped.status] -= 1

    # ------------------------------------------------------------------ inputs

    def apply(self, event: FusionEvent, at: float) -> BookChange:
        """Fold one push event into the book; `at` is the frame's `trio.current_time()`."""
        if isinstance(event, OrderCreated):
            return self._created(event, at)
        if isinstance(event, SecretShared):
            return self._secret(event.secret, at, event.EVENT)
        old = self._orders.get(event.order_hash)
        name = event.EVENT
        if old is None:
            return BookChange(name, event.order_hash, None, anomaly="unknown_order")
        changes: dict[str, object] = {"last_event": name, "updated_at": at}
        if isinstance(event, OrderBalanceChange):
            changes["remaining_maker_amount"] = event.remaining_maker_amount
            changes["maker_balance"] = event.balance
        elif isinstance(event, OrderAllowanceChange):
            changes["remaining_maker_amount"] = event.remaining_maker_amount
            changes["maker_allowance"] = event.allowance
        elif isinstance(event, OrderFilledPartially):
            changes["remaining_maker_amount"] = event.remaining_maker_amount
            if not old.is_final:
                changes["status"] = "partially_filled"
        else:
            final = _FINAL_BY_EVENT[type(event)]
            if isinstance(event, OrderFilled):
                changes["remaining_maker_amount"] = 0
            elif isinstance(event, OrderCancelled) and event.remaining_maker_amount is not None:
                changes["remaining_maker_amount"] = event.remaining_maker_amount
            if old.is_final:
                if old.status != final:
                    return BookChange(name, old.order_hash, old, anomaly=f"already_{old.status}")
            else:
                changes["status"] = final
        new = attrs.evolve(old, **changes)  # type: ignore[arg-type]
        self._put(new)
        return BookChange(name, new.order_hash, new, became_final=new.is_final and not old.is_final)

    def _created(self, event: OrderCreated, at: float) -> BookChange:
        old = self._orders.get(event.order_hash)
        ext, error = _decode_ext(event.extension, None)
        if event.is_solana_source:
            error = "solana-source order: schema not modelled"
        base = old or FusionOrder(
            order_hash=event.order_hash,
            src_chain_id=event.src_chain_id,
            dst_chain_id=event.dst_chain_id,
            status="active",
            received_at=at,
        )
        new = attrs.evolve(
            base,
            order=event.order,
            extension=ext,
            extension_hex=event.extension,
            extension_error=error,
            version=ext.version if ext is not None else None,
            signature=event.signature,
            quote_id=event.quote_id,
            is_maker_contract=event.is_maker_contract,
            secret_hashes=event.secret_hashes,
            merkle_leaves=event.merkle_leaves,
            remaining_maker_amount=(
                base.remaining_maker_amount
                if base.remaining_maker_amount is not None
                else (event.order.making_amount if event.order else None)
            ),
            deadline=base.deadline or _deadline(event.order, ext),
            last_event=event.EVENT,
            updated_at=at,
        )
        self._put(new)
        return BookChange(event.EVENT, new.order_hash, new)

    def _secret(self, secret: PublicSecret, at: float, name: str) -> BookChange:
        order_hash = secret.order_hash
        old = self._orders.get(order_hash)
        ours = self.is_ours(secret)
        if old is None:
            return BookChange(name, order_hash, None, secret=secret, new_secret=True)
        known = old.secret(secret.idx) is not None
        secrets = (
            old.secrets if known else tuple(sorted((*old.secrets, secret), key=lambda s: s.idx))
        )
        new = attrs.evolve(
            old, secrets=secrets, ours=old.ours or ours, last_event=name, updated_at=at
        )
        self._put(new)
        return BookChange(
            name,
            order_hash,
            new,
            secret=secret,
            new_secret=not known,
            became_ours=new.ours and not old.ours,
        )

    def add_secret(self, secret: PublicSecret, at: float, source: str) -> BookChange:
        """Join a secret learnt elsewhere (REST, `getSecrets`) exactly like `secret_shared`."""
        return self._secret(secret, at, source)

    def seed(self, item: ActiveOrder, at: float) -> FusionOrder:
        """Insert or refresh an order from the active-orders list (reseed after a connect).

        The list is the server's truth for a live order: amounts, balance and allowance are
        taken from it; secrets and the `ours` flag we learnt are kept.
        """
        old = self._orders.get(item.order_hash)
        ext, error = _decode_ext(item.extension, item.version)
        if item.is_solana_source:
            error = "solana-source order: schema not modelled"
        try:
            deadline: int | None = parse_date(item.deadline)
        except (TypeError, ValueError):
            deadline = _deadline(item.order, ext)
        base = old or FusionOrder(
            order_hash=item.order_hash,
            src_chain_id=item.src_chain_id,
            dst_chain_id=item.dst_chain_id,
            status="active",
            received_at=at,
        )
        making = item.order.making_amount if item.order is not None else None
        partially = making is not None and item.remaining_maker_amount < making
        new = attrs.evolve(
            base,
            status="partially_filled" if partially else "active",
            order=item.order,
            extension=ext,
            extension_hex=item.extension,
            extension_error=error,
            version=item.version or (ext.version if ext is not None else None),
            signature=item.signature,
            quote_id=item.quote_id,
            is_maker_contract=item.is_maker_contract,
            secret_hashes=item.secret_hashes or base.secret_hashes,
            remaining_maker_amount=item.remaining_maker_amount,
            maker_balance=item.maker_balance,
            maker_allowance=item.maker_allowance,
            deadline=deadline,
            last_event="reseed",
            updated_at=at,
        )
        if old is not None and old.is_final:
            # The server lists it as active again; its word for live orders wins.
            self._final.pop(item.order_hash, None)
        self._put(new)
        return new

    def resolve(self, order_hash: str, status: str, at: float, source: str) -> BookChange:
        """Set an order's status from an outside source (REST resolution, the expiry sweep)."""
        old = self._orders.get(order_hash)
        if old is None:
            return BookChange(source, order_hash, None, anomaly="unknown_order")
        if old.is_final:
            return BookChange(source, order_hash, old, anomaly=f"already_{old.status}")
        changes: dict[str, object] = {"status": status, "last_event": source, "updated_at": at}
        if status == "filled":
            changes["remaining_maker_amount"] = 0
        new = attrs.evolve(old, **changes)  # type: ignore[arg-type]
        self._put(new)
        return BookChange(source, order_hash, new, became_final=new.is_final)

    def expire_due(self, now: float, at: float) -> list[BookChange]:
        """Mark every active order past its deadline (unix `now`) as `expired`."""
        due = [o.order_hash for o in self.active() if o.is_expired_at(now)]
        return [self.resolve(h, "expired", at, "expired") for h in due]


# ---------------------------------------------------------------- escrow windows


@attrs.frozen
class ClosingWindow:
    """A private escrow window of one of our fills, and when it closes (unix seconds)."""

    order_hash: str
    idx: int
    window: str  # src_withdrawal | dst_withdrawal | src_cancellation
    closes_at: int


# (window name, which immutables, the stage that ends the private window)
_WINDOWS: Final = (
    ("dst_withdrawal", "dst", TimelockStage.DST_PUBLIC_WITHDRAWAL),
    ("src_withdrawal", "src", TimelockStage.SRC_PUBLIC_WITHDRAWAL),
    ("src_cancellation", "src", TimelockStage.SRC_PUBLIC_CANCELLATION),
)


def closing_windows(
    order: FusionOrder, now: float, horizon: float, resolver_address: str
) -> list[ClosingWindow]:
    """Private windows of our fills of `order` that close within `horizon` s after unix `now`.

    A fill is ours when its escrow names `resolver_address` as the taker. A window that already
    closed is not reported (too late to act on). Only escrows with a known `deployed_at` (as
    carried by the immutables of a shared secret) count.
    """
    found: list[ClosingWindow] = []
    for secret in order.secrets:
        if not (
            same_address(secret.src_immutables.taker, resolver_address)
            or same_address(secret.dst_immutables.taker, resolver_address)
        ):
            continue
        for name, side, stage in _WINDOWS:
            imm = secret.src_immutables if side == "src" else secret.dst_immutables
            try:
                locks = imm.decoded_timelocks
            except ValueError:
                continue
            if not locks.deployed_at:
                continue
            closes = locks.at(stage)
            if closes - horizon <= now < closes:
                found.append(ClosingWindow(order.order_hash, secret.idx, name, closes))
    return found
