"""The plugin API: what a strategy file subclasses and what it is handed.

A strategy is a class in a plain `.py` file in `strategies/`:

```python
from searcherd import Strategy, SwapOpportunity, SwapBid
import attrs

@attrs.frozen
class Params:
    margin_bps: int = 30

class FixedMargin(Strategy[Params]):
    name = "fixed_margin"                 # configured by [strategies.fixed_margin]
    venues = ("express_relay",)
    Params = Params

    def on_opportunity(self, opp):        # sync or async
        if isinstance(opp, SwapOpportunity):
            return SwapBid(opportunity=opp, amount=...)
        return None
```

Strategies never hold signing keys: they return bid *intents* (`searcherd.bids`), and only the
venue's submitter, behind the risk gate, turns an intent into a signed bid. The strategy classes
are reloaded from source on SIGHUP, so the interface they implement lives here, in the package,
and strategies exchange only the package's types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import attrs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from structlog.typing import FilteringBoundLogger

    from searcherd.bids import BidIntent, BidUpdate

__all__ = [
    "ChainState",
    "ExpressRelayView",
    "FusionPlusView",
    "NoParams",
    "Strategy",
    "StrategyContext",
]


@attrs.frozen
class NoParams:
    """The parameters of a strategy that declares none: its table may only say `enabled`."""


@attrs.frozen
class ChainState:
    """The latest state of one SVM chain, from `svm_chain_update`."""

    chain_id: str
    blockhash: str
    latest_prioritization_fee: int
    updated_at: float  # trio.current_time() of the update


class ExpressRelayView(Protocol):
    """Read-only Express Relay state a strategy may consult."""

    def chain(self, chain_id: str) -> ChainState | None:
        """The latest blockhash and priority fee of an SVM chain, if one has arrived."""
        ...

    def live_opportunities(self, chain_id: str | None = None) -> Sequence[Any]:
        """The opportunities currently live (not removed, not expired), newest last."""
        ...

    def searcher_pubkey(self) -> str | None:
        """The public key bids are signed with (base58), e.g. the taker of a Limo fill."""
        ...

    async def cancel_bid(self, local_id: str) -> str:
        """Ask the server to cancel one of our bids (only `awaiting_signature` swap bids, with an
        API key); returns what happened, in words."""
        ...


class FusionPlusView(Protocol):
    """Read-only Fusion+ order book a strategy may consult."""

    def order(self, order_hash: str) -> Any | None:
        """One order of the book by hash, or None."""
        ...

    def active_orders(self) -> Sequence[Any]:
        """Every order still fillable as far as the daemon knows."""
        ...


@attrs.frozen
class StrategyContext:
    """Everything a strategy is handed besides its parameters.

    `log` is bound to the strategy's name; `express_relay` / `fusion_plus` are None when that
    venue is disabled.
    """

    name: str
    log: FilteringBoundLogger
    express_relay: ExpressRelayView | None = None
    fusion_plus: FusionPlusView | None = None


P = TypeVar("P")


class Strategy(Generic[P]):
    """Base class of every strategy plugin.

    Subclasses set `name` (the `[strategies.NAME]` table), `venues` (which venues' opportunities
    they receive: "express_relay", "fusion_plus") and optionally `Params`, an attrs class whose
    fields are the strategy's own keys in its table. Every hook may be a plain method or a
    coroutine; each call runs under the evaluator's deadline (`[evaluator] call_timeout`) and an
    exception is logged and counted, never fatal to the daemon.
    """

    name: ClassVar[str] = ""
    venues: ClassVar[tuple[str, ...]] = ("express_relay",)
    Params: ClassVar[type[Any]] = NoParams

    def __init__(self, params: P, context: StrategyContext) -> None:
        self.params = params
        self.context = context
        self.log = context.log

    def on_start(self) -> Awaitable[None] | None:
        """Called once before the first opportunity (open connections, warm caches)."""
        return None

    def on_opportunity(
        self, opportunity: Any
    ) -> BidIntent | Sequence[BidIntent] | Awaitable[BidIntent | Sequence[BidIntent] | None] | None:
        """Decide on one opportunity; return a bid intent, a sequence of them, or None.

        Express Relay strategies get `SwapOpportunity`, `LimoOpportunity` or `EvmOpportunity`;
        Fusion+ strategies get a `FusionOrder` (on creation, reseed and every update).
        """
        return None

    def on_bid_status(self, update: BidUpdate) -> Awaitable[None] | None:
        """Called on every status change of a bid this strategy made (optional)."""
        return None

    def on_stop(self) -> Awaitable[None] | None:
        """Called once when the strategy is stopped or replaced by a reload."""
        return None
