"""Express Relay limo: take Kamino Limo orders priced below the reference rate.

A `program: "limo"` opportunity carries a Limo `Order` account: the maker sells
`remaining_input_amount` of the input mint and wants, pro rata, `expected_output_amount` of the
output mint. Taking it means delivering the output tokens and receiving the input tokens, inside
one transaction that also pays the Express Relay auction our bid (in lamports) for the right to
fill. This strategy:

1. decodes the order (`decode_order`) and skips it unless it is active;
2. takes `fill_bps` of what remains, and prices both legs from the reference table
   (`[strategies.limo_taker.tokens]`, the same shape as `fixed_margin`'s);
3. goes on only when the input is worth at least `min_edge_bps` more than the output owed;
4. bids `bid_share_bps` of that edge, converted to lamports with the wrapped-SOL price and
   capped at `max_bid_lamports`, with the Limo `take_order` instructions of the fill
   (`take_order_instructions`); the submitter adds the compute budget and `submit_bid`, signs
   and sends.

The `take_order` taker is the searcher's own wallet (the fee payer who signs the bid), so the
strategy must know its public key: set `taker` (a public key, not a secret), or leave it empty
when the daemon's Express Relay view offers `searcher_pubkey()`. A searcher uses
this to arbitrage resting limit orders against an external price; the tokens bought must of
course be held (output leg) and sold elsewhere, which is outside this example.
"""

from __future__ import annotations

import decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Final

import attrs
from solders.pubkey import Pubkey

from searcherd.bids import LimoBid
from searcherd.express_relay.messages import LimoOpportunity
from searcherd.strategy import Strategy
from searcherd.svm.limo import OrderDecodeError, decode_order, take_order_instructions
from searcherd.svm.programs import WRAPPED_SOL_MINT, program_id_for_chain

if TYPE_CHECKING:
    from searcherd.strategy import StrategyContext
    from searcherd.svm.limo import LimoOrder

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


def _check_pubkey(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value:
        try:
            Pubkey.from_string(value)
        except ValueError:
            raise ValueError(f"{attribute.name} is not a public key: {value!r}") from None


@attrs.frozen
class Token:
    """A reference price of one token: `price` of one whole token (decimal text) and `decimals`."""

    price: str = attrs.field(validator=_check_price)
    decimals: int = attrs.field(validator=[attrs.validators.ge(0), attrs.validators.le(30)])

    def base_unit_value(self) -> Fraction:
        """The value of one base unit (one lamport, one micro-USDC, ...)."""
        return Fraction(decimal.Decimal(self.price)) / Fraction(10**self.decimals)


@attrs.frozen
class Params:
    """`[strategies.limo_taker]`: who takes, how much, and how much of the edge to bid."""

    taker: str = attrs.field(default="", validator=_check_pubkey)
    """The searcher's public key (the signing key's); empty = ask the venue's view for it."""
    tokens: dict[str, Token] = attrs.field(factory=dict)
    """Reference price and decimals by mint; wrapped SOL must be listed to price the bid."""
    min_edge_bps: int = attrs.field(default=50, validator=attrs.validators.ge(0))
    """The least the input must be worth above the output owed, in bps of the output's value."""
    bid_share_bps: int = attrs.field(
        default=5_000, validator=[attrs.validators.ge(1), attrs.validators.le(_BPS)]
    )
    """The share of the edge offered to the auction as the bid."""
    fill_bps: int = attrs.field(
        default=10_000, validator=[attrs.validators.ge(1), attrs.validators.le(_BPS)]
    )
    """The share of the order's remaining input to take."""
    max_bid_lamports: int = attrs.field(default=10**8, validator=attrs.validators.ge(1))
    """The largest bid, in lamports (10**8 = 0.1 SOL)."""
    express_relay_program_id: str = attrs.field(default="", validator=_check_pubkey)
    """The Express Relay program of the chain; empty = the known one for the chain id."""


@attrs.frozen
class Priced:
    """One priced fill of `order`: what we take, what we owe, and what we bid (lamports)."""

    order: LimoOrder
    input_amount: int
    output_amount: int
    bid_lamports: int


_Params = Params  # the class body's `Params` is the class attribute, not this class


class LimoTaker(Strategy[Params]):
    """Bid a share of the edge on every limo order worth taking at the reference prices."""

    name = "limo_taker"
    venues = ("express_relay",)
    Params = Params

    def __init__(self, params: _Params, context: StrategyContext) -> None:
        super().__init__(params, context)
        self._taker = Pubkey.from_string(params.taker) if params.taker else None
        self._warned_no_taker = False

    def _taker_key(self) -> Pubkey | None:
        """`taker`, else the searcher key's public key if the venue's view offers one."""
        if self._taker is not None:
            return self._taker
        # The venue's view gives the signing key's public half (never the key itself), which
        # spares the operator from repeating it here.
        view = self.context.express_relay
        value = view.searcher_pubkey() if view is not None else None
        if not value:
            return None
        try:
            return Pubkey.from_string(value)
        except ValueError:
            return None

    def price(self, opp: LimoOpportunity) -> Priced | None:
        """Price the fill of `opp` (see the module docstring); None to stay out."""
        try:
            order = decode_order(opp.order)
        except OrderDecodeError as exc:
            self.log.info("limo_order_undecodable", order=opp.order_address, error=str(exc))
            return None
        if not order.is_active or order.initial_input_amount == 0:
            return None
        tokens = self.params.tokens
        sol = tokens.get(str(WRAPPED_SOL_MINT))
        token_in = tokens.get(str(order.input_mint))
        token_out = tokens.get(str(order.output_mint))
        if sol is None or token_in is None or token_out is None:
            return None
        input_amount = max(1, order.remaining_input_amount * self.params.fill_bps // _BPS)
        output_amount = order.output_for_input(input_amount)
        if output_amount > _U64_MAX:
            return None
        value_in = input_amount * token_in.base_unit_value()
        value_out = output_amount * token_out.base_unit_value()
        edge = value_in - value_out
        if edge <= 0 or edge * _BPS < value_out * self.params.min_edge_bps:
            return None
        bid = int(edge * self.params.bid_share_bps / _BPS / sol.base_unit_value())
        bid = min(bid, self.params.max_bid_lamports)
        if bid < 1:
            return None
        return Priced(order, input_amount, output_amount, bid)

    def on_opportunity(self, opportunity: object) -> LimoBid | None:
        """Bid on limo orders worth taking; ignore everything else."""
        if not isinstance(opportunity, LimoOpportunity):
            return None
        view = self.context.express_relay
        if view is not None and view.chain(opportunity.chain_id) is None:
            return None  # no blockhash yet: the submitter could not build the transaction
        taker = self._taker_key()
        if taker is None:
            if not self._warned_no_taker:  # once: every limo opportunity would say the same
                self._warned_no_taker = True
                self.log.warning(
                    "limo_taker_needs_taker", detail="set [strategies.limo_taker] taker"
                )
            return None
        priced = self.price(opportunity)
        if priced is None:
            return None
        program = self.params.express_relay_program_id
        try:
            program_id = (
                Pubkey.from_string(program)
                if program
                else program_id_for_chain(opportunity.chain_id)
            )
        except ValueError as exc:  # a chain without a known program: say so, do not crash
            self.log.warning("limo_chain_unknown", chain=opportunity.chain_id, error=str(exc))
            return None
        instructions = take_order_instructions(
            taker=taker,
            order=priced.order,
            order_address=Pubkey.from_string(opportunity.order_address),
            input_amount=priced.input_amount,
            output_amount=priced.output_amount,
            express_relay_program_id=program_id,
        )
        return LimoBid(
            opportunity=opportunity, amount=priced.bid_lamports, instructions=instructions
        )
