"""Express Relay on EVM (older deployments): a raw bid of a fixed amount per opportunity.

Before Express Relay moved to Solana, its servers spoke EVM: an opportunity names a
`permission_key` and the `target_contract` / `target_calldata` call that executes it (a
liquidation, say), and a searcher bids `amount` wei for the permission with the call it wants
made. This strategy answers every EVM opportunity of the chains it watches with that raw bid:
the opportunity's own permission key, the call aimed at `target_contract` (your executor
contract; empty = the opportunity's target itself) with the opportunity's calldata, and a fixed
`bid_amount`.

A searcher uses it against a legacy deployment they still run, or as the starting point of an
EVM strategy: replace `bid_amount` with a price of the opportunity's `buy_tokens` against its
`sell_tokens`. Opportunities whose call needs more native value than `max_call_value` are
skipped: the raw bid has no way to send it.
"""

from __future__ import annotations

from typing import Final

import attrs

from searcherd.bids import EvmBid
from searcherd.express_relay.messages import EvmOpportunity
from searcherd.strategy import Strategy
from searcherd.svm.evm import EvmBidError, check_address

_U256_MAX: Final = 2**256 - 1


def _check_contract(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value:
        try:
            check_address(attribute.name, value)
        except EvmBidError as exc:
            raise ValueError(str(exc)) from None


@attrs.frozen
class Params:
    """`[strategies.evm_raw_bid]`: what to bid, with which call, on which chains."""

    bid_amount: int = attrs.field(
        default=10**16, validator=[attrs.validators.ge(1), attrs.validators.le(_U256_MAX)]
    )
    """The bid in wei (the SDK's example bids 0.01 ETH = 10**16)."""
    target_contract: str = attrs.field(default="", validator=_check_contract)
    """The contract our bid calls (0x address); empty = the opportunity's target contract."""
    chains: tuple[str, ...] = ()
    """Only these chain ids (e.g. "op_sepolia"); empty = every EVM chain subscribed."""
    max_call_value: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Skip opportunities whose target call must send more than this many wei."""


class EvmRawBid(Strategy[Params]):
    """Bid `bid_amount` on every EVM opportunity of the watched chains."""

    name = "evm_raw_bid"
    venues = ("express_relay",)
    Params = Params

    def on_opportunity(self, opportunity: object) -> EvmBid | None:
        """Bid on EVM opportunities; ignore SVM ones and chains not watched."""
        if not isinstance(opportunity, EvmOpportunity):
            return None
        params = self.params
        if params.chains and opportunity.chain_id not in params.chains:
            return None
        if opportunity.target_call_value > params.max_call_value:
            self.log.debug(
                "evm_call_value_too_high",
                opportunity_id=opportunity.opportunity_id,
                call_value=str(opportunity.target_call_value),
            )
            return None
        return EvmBid(
            opportunity=opportunity,
            amount=params.bid_amount,
            target_contract=params.target_contract or opportunity.target_contract,
            target_calldata=opportunity.target_calldata,
            permission_key=opportunity.permission_key,
        )
