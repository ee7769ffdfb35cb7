"""The benchmark's strategy: bid on every Express Relay swap opportunity, at once.

It does the least a real strategy does (pick an amount from the quote) so that the benchmark
measures the daemon around it, not the strategy. The floor client uses the same amount rule.
"""

from __future__ import annotations

from typing import Any

from searcherd.bids import SwapBid
from searcherd.express_relay.messages import SwapOpportunity, TokensUserSpecified
from searcherd.strategy import Strategy


def bench_amount(opp: SwapOpportunity) -> int:
    """99% of the quote's specified amount: a valid u64 for either side of the swap."""
    tokens = opp.tokens
    specified = (
        tokens.user_amount if isinstance(tokens, TokensUserSpecified) else tokens.searcher_amount
    )
    return max(1, specified * 99 // 100)


class BenchSwap(Strategy[Any]):
    """Bid on every swap opportunity (the benchmark's only strategy)."""

    name = "bench_swap"
    venues = ("express_relay",)

    def on_opportunity(self, opportunity: Any) -> SwapBid | None:
        """A `SwapBid` for a swap opportunity; nothing for limo or EVM ones."""
        if isinstance(opportunity, SwapOpportunity):
            return SwapBid(opportunity=opportunity, amount=bench_amount(opportunity))
        return None
