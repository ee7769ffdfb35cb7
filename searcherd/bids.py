"""Bid intents (what strategies return) and bid updates (what they are told back).

An intent says *what* to bid; it holds no key and no transaction. The venue's submitter checks it
against the risk gate, records it, builds and signs the wire bid, and sends it. Keeping signing
out of strategies is what makes dry-run and the kill switch impossible to get around.

Statuses: the venue's own (`pending`, `submitted`, `won`, `lost`, ...) plus the daemon's local
ones, which say what happened before the venue had a say:

- `submitting`: recorded, being sent;
- `dry_run`: built and recorded, never sent (`--dry-run`);
- `blocked`: refused by the risk gate (the reason says which limit);
- `invalid`: the submitter could not build a valid bid from the intent (reason says why);
- `rejected`: the venue answered the request with an error (reason = the venue's text);
- `unconfirmed`: no answer to the request (timeout or the socket died while it was in flight);
  the venue may or may not have the bid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from solders.instruction import Instruction

    from searcherd.express_relay.messages import EvmOpportunity, LimoOpportunity, SwapOpportunity

__all__ = [
    "FINAL_STATUSES",
    "LOCAL_STATUSES",
    "BidIntent",
    "BidUpdate",
    "EvmBid",
    "FillIntent",
    "LimoBid",
    "SwapBid",
    "is_final",
]

LOCAL_STATUSES: Final = frozenset(
    {"submitting", "dry_run", "blocked", "invalid", "rejected", "unconfirmed"}
)
FINAL_STATUSES: Final = frozenset(
    {
        # venue statuses that end a bid (Express Relay SVM and EVM)
        "won", "lost", "failed", "expired", "cancelled", "submission_failed",
        # local statuses that end a bid
        "dry_run", "blocked", "invalid", "rejected",
    }
)  # fmt: skip


def is_final(status: str) -> bool:
    """True when no later status can follow (a later one is recorded as an anomaly)."""
    return status in FINAL_STATUSES


class _ForOpportunity:
    """The chain and opportunity id of an Express Relay bid, read from its opportunity."""

    opportunity: SwapOpportunity | LimoOpportunity | EvmOpportunity

    @property
    def chain_id(self) -> str:
        """The opportunity's chain."""
        return self.opportunity.chain_id

    @property
    def opportunity_id(self) -> str:
        """The opportunity this bid is for."""
        return self.opportunity.opportunity_id


@attrs.frozen(kw_only=True)
class SwapBid(_ForOpportunity):
    """Bid on an Express Relay swap (RFQ) opportunity.

    `amount` is what the auction compares: with the user fixing the input (`side_specified =
    "user"`) it is what we give, highest wins; with the user fixing the output it is what we ask
    of the user, lowest wins. `deadline` (Unix seconds) defaults to the opportunity's
    `minimum_deadline`.
    """

    venue: ClassVar[str] = "express_relay"
    opportunity: SwapOpportunity
    amount: int
    deadline: int | None = None


@attrs.frozen(kw_only=True)
class LimoBid(_ForOpportunity):
    """On-chain bid on an Express Relay limo (limit order) opportunity.

    `instructions` are the caller's own (for a limo fill, the Limo `take_order`); the submitter
    adds the compute budget and the Express Relay `submit_bid` instruction and signs.
    `deadline` (Unix seconds) defaults to 30 s from now.
    """

    venue: ClassVar[str] = "express_relay"
    opportunity: LimoOpportunity
    amount: int
    instructions: Sequence[Instruction] = ()
    deadline: int | None = None


@attrs.frozen(kw_only=True)
class EvmBid(_ForOpportunity):
    """Raw bid for an older (EVM) Express Relay deployment.

    The target call is the searcher's own contract call that executes the opportunity;
    `permission_key` defaults to the opportunity's.
    """

    venue: ClassVar[str] = "express_relay"
    opportunity: EvmOpportunity
    amount: int
    target_contract: str
    target_calldata: bytes
    permission_key: bytes | None = None


@attrs.frozen(kw_only=True)
class FillIntent:
    """A decision to fill (part of) a Fusion+ order, handed to the resolver executor.

    `making_amount` is how much of the maker's asset to take; `taking_amount` what we will
    deliver (defaults to the auction's required amount at the time the executor acts).
    """

    venue: ClassVar[str] = "fusion_plus"
    order_hash: str
    src_chain_id: int
    making_amount: int
    taking_amount: int | None = None
    note: str = ""

    @property
    def chain_id(self) -> str:
        """The order's source chain, as text like every other chain id."""
        return str(self.src_chain_id)

    @property
    def opportunity_id(self) -> str:
        """Fusion+ orders are identified by their hash."""
        return self.order_hash

    @property
    def amount(self) -> int:
        """The risk gate's amount: the making amount."""
        return self.making_amount


BidIntent = SwapBid | LimoBid | EvmBid | FillIntent
"""Anything a strategy may return from `on_opportunity`."""


@attrs.frozen(kw_only=True)
class BidUpdate:
    """A status change of one bid, as passed to `Strategy.on_bid_status`."""

    local_id: str
    strategy: str
    venue: str
    chain_id: str
    opportunity_id: str | None
    amount: int
    status: str
    server_bid_id: str | None = None
    result: str | None = None
    reason: str | None = None

    @property
    def is_final(self) -> bool:
        """True when this is the bid's last status."""
        return is_final(self.status)
