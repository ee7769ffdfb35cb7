"""Express Relay swap (RFQ) quoting at reference prices minus a fixed margin.

Every `program: "swap"` opportunity is a user asking for a quote: they fixed one side of the
trade and the searchers bid on the other. This strategy prices both tokens from a table of
reference prices (`[strategies.fixed_margin.tokens]`) and quotes the fair amount with
`margin_bps` kept for itself:

- side "user" (the user fixed what they pay in): we receive `user_amount` and bid what we give,
  highest wins, so the bid is the fair value *minus* the margin, rounded down;
- side "searcher" (the user fixed what they get): we give `searcher_amount` and bid what we
  ask of the user, lowest wins, so the bid is the fair value *plus* the margin, rounded up. When
  the fees are paid in the user token the submitter scales this up so that we still net it.

A searcher uses it as a market maker with an external price source: keep the token table fresh
(reload with SIGHUP) or replace `_rate` with a feed. Pairs with a token missing from the table
are skipped (or quoted at par, base unit for base unit, with `at_par = true`: only for the
simulator or pegged pairs with equal decimals). Quotes the user cannot pay, or whose amounts do
not fit the u64 fields of the swap instruction, are skipped too.

All math is exact (integers and `Fraction`), never floats.
"""

from __future__ import annotations

import decimal
from fractions import Fraction
from typing import Final

import attrs

from searcherd.bids import SwapBid
from searcherd.express_relay.messages import (
    SwapOpportunity,
    TokensSearcherSpecified,
    TokensUserSpecified,
)
from searcherd.strategy import Strategy

_BPS: Final = 10_000
_U64_MAX: Final = 2**64 - 1


def _check_price(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    try:
        price = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise ValueError(
            f"{attribute.name} must be a decimal number as text, got {value!r}"
        ) from None
    if not price.is_finite() or price <= 0:
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


@attrs.frozen
class Token:
    """A reference price of one token (one `tokens."MINT"` entry).

    `price` is the value of one whole token in any unit shared by the table (USD, say), as
    decimal text (`"150.25"`: text keeps it exact); `decimals` is the mint's decimals, so that
    base units convert to whole tokens.
    """

    price: str = attrs.field(validator=_check_price)
    decimals: int = attrs.field(validator=[attrs.validators.ge(0), attrs.validators.le(30)])

    def base_unit_value(self) -> Fraction:
        """The value of one base unit (one lamport, one micro-USDC, ...)."""
        return Fraction(decimal.Decimal(self.price)) / Fraction(10**self.decimals)


@attrs.frozen
class Params:
    """`[strategies.fixed_margin]`: the margin, the reference prices and what to do without."""

    margin_bps: int = attrs.field(
        default=30, validator=[attrs.validators.ge(0), attrs.validators.lt(_BPS)]
    )
    """The share of the fair value kept on every quote, in basis points (30 = 0.3 %)."""
    tokens: dict[str, Token] = attrs.field(factory=dict)
    """Reference price and decimals by mint address."""
    at_par: bool = False
    """Quote a pair with an unpriced token at one base unit for one base unit (simulator use)."""


class FixedMargin(Strategy[Params]):
    """Quote every swap opportunity at the reference rate less `margin_bps`."""

    name = "fixed_margin"
    venues = ("express_relay",)
    Params = Params

    def _rate(self, user_mint: str, searcher_mint: str) -> Fraction | None:
        """Searcher-token base units worth one user-token base unit (None when unpriced)."""
        user = self.params.tokens.get(user_mint)
        searcher = self.params.tokens.get(searcher_mint)
        if user is None or searcher is None:
            return Fraction(1) if self.params.at_par else None
        return user.base_unit_value() / searcher.base_unit_value()

    def quote(self, opp: SwapOpportunity) -> int | None:
        """The bid amount for `opp` (see the module docstring), or None to stay out."""
        tokens = opp.tokens
        rate = self._rate(tokens.user_token, tokens.searcher_token)
        if rate is None:
            return None
        margin = self.params.margin_bps
        if isinstance(tokens, TokensUserSpecified):
            if opp.user_mint_user_balance < tokens.user_amount_including_fees:
                return None  # the user cannot pay in what they asked to swap
            fair = tokens.user_amount * rate  # what we receive, in searcher-token units
            amount = int(fair * (_BPS - margin) / _BPS)  # round down: we give at most this
        else:
            assert isinstance(tokens, TokensSearcherSpecified)
            fair = tokens.searcher_amount / rate  # what we give, in user-token units
            ask = fair * (_BPS + margin) / _BPS
            amount = -(-ask.numerator // ask.denominator)  # round up: we ask at least this
            if amount > opp.user_mint_user_balance:
                return None  # the user could never pay this
        if not 0 < amount <= _U64_MAX:
            return None
        return amount

    def on_opportunity(self, opportunity: object) -> SwapBid | None:
        """Bid on swap opportunities we can price; ignore everything else."""
        if not isinstance(opportunity, SwapOpportunity):
            return None
        view = self.context.express_relay
        if view is not None and view.chain(opportunity.chain_id) is None:
            return None  # no blockhash yet: the submitter could not build the transaction
        amount = self.quote(opportunity)
        if amount is None:
            self.log.debug(
                "swap_skipped",
                opportunity_id=opportunity.opportunity_id,
                user_token=opportunity.tokens.user_token,
                searcher_token=opportunity.tokens.searcher_token,
            )
            return None
        return SwapBid(opportunity=opportunity, amount=amount)
