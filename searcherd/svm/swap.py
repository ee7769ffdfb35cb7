"""Swap (RFQ) bids: the quote's fields and the instructions of a `swap_v2` bid.

`SwapQuote` holds what a `program: "swap"` opportunity says, as plain values (pubkeys, ints),
and is all a strategy needs to describe a swap bid; it is also what the bid rules check a swap
transaction against. `swap_instructions` mirrors the official SDK's
`get_svm_swap_instructions`: memo, token account creation per
`token_account_initialization_configs`, wrapped-SOL wrap/unwrap, then `swap_v2`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
from solders.pubkey import Pubkey

from searcherd.svm.instructions import (
    FeeToken,
    SwapV2Accounts,
    SwapV2Args,
    close_account_instruction,
    create_ata_idempotent_instruction,
    memo_instruction,
    swap_v2_instruction,
    sync_native_instruction,
    system_transfer_instruction,
)
from searcherd.svm.programs import TOKEN_PROGRAM_ID, WRAPPED_SOL_MINT, associated_token_address

if TYPE_CHECKING:
    from collections.abc import Mapping

    from solders.instruction import Instruction

    from searcherd.svm.metadata import ExpressRelayConstants

__all__ = [
    "FEE_PRECISION_PPM",
    "RENT_TOKEN_ACCOUNT_LAMPORTS",
    "AccountInit",
    "QuoteError",
    "SwapQuote",
    "TokenAccountConfigs",
    "scale_bid_for_fees",
    "swap_accounts",
    "swap_instructions",
    "swap_v2_args",
]

FEE_PRECISION_PPM: Final = 1_000_000
#: Rent of a token account, what a user pays per ATA the quote makes them create.
RENT_TOKEN_ACCOUNT_LAMPORTS: Final = 2_039_280

#: Who pays for creating a token account: nobody (exists), the searcher, or the user.
AccountInit = Literal["unneeded", "searcher_payer", "user_payer"]
_ACCOUNT_INITS: Final = ("unneeded", "searcher_payer", "user_payer")


class QuoteError(ValueError):
    """A swap opportunity's fields are missing or malformed."""


@attrs.frozen
class TokenAccountConfigs:
    """The opportunity's `token_account_initialization_configs`."""

    user_ata_mint_searcher: AccountInit = "unneeded"
    user_ata_mint_user: AccountInit = "unneeded"
    router_fee_receiver_ta: AccountInit = "unneeded"
    relayer_fee_receiver_ata: AccountInit = "unneeded"
    express_relay_fee_receiver_ata: AccountInit = "unneeded"


@attrs.frozen
class SwapQuote:
    """The fields of a swap opportunity that shape (and constrain) a swap bid.

    `side_specified` is the side whose amount the user fixed: `"searcher"` fixes
    `searcher_amount` (the bid is the user amount asked, lowest wins); `"user"` fixes
    `user_amount_including_fees` (the bid is the searcher amount given, highest wins).
    """

    opportunity_id: str
    user: Pubkey
    router: Pubkey
    searcher_token: Pubkey
    user_token: Pubkey
    token_program_searcher: Pubkey
    token_program_user: Pubkey
    side_specified: Literal["searcher", "user"]
    #: `searcher_amount` (side "searcher") or `user_amount_including_fees` (side "user").
    specified_amount: int
    fee_token: FeeToken
    referral_fee_ppm: int = 0
    platform_fee_ppm: int = 0
    user_mint_user_balance: int = 0
    minimum_deadline: int = 0
    memo: str | None = None
    token_accounts: TokenAccountConfigs = TokenAccountConfigs()

    @property
    def fee_mint(self) -> Pubkey:
        """The mint fees are paid in."""
        return self.searcher_token if self.fee_token == "searcher_token" else self.user_token

    @property
    def fee_token_program(self) -> Pubkey:
        """The token program of `fee_mint`."""
        if self.fee_token == "searcher_token":
            return self.token_program_searcher
        return self.token_program_user

    @classmethod
    def from_opportunity(cls, opp: Mapping[str, Any]) -> SwapQuote:
        """Build from a `program: "swap"` opportunity as JSON-decoded from the wire.

        Raises `QuoteError` naming the first missing or malformed field.
        """
        try:
            return _quote_from_json(opp)
        except QuoteError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise QuoteError(f"malformed swap opportunity: {type(exc).__name__}: {exc}") from None


def _key(obj: Mapping[str, Any], name: str) -> Pubkey:
    value = obj.get(name)
    if not isinstance(value, str):
        raise QuoteError(f"swap opportunity: {name} must be a base58 public key")
    try:
        return Pubkey.from_string(value)
    except ValueError:
        raise QuoteError(f"swap opportunity: {name} {value!r} is not a public key") from None


def _uint(obj: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise QuoteError(f"swap opportunity: {name} must be a non-negative integer")
    return value


def _quote_from_json(opp: Mapping[str, Any]) -> SwapQuote:
    tokens = opp["tokens"]
    side = tokens.get("side_specified")
    if side == "searcher":
        specified = _uint(tokens, "searcher_amount")
    elif side == "user":
        specified = _uint(tokens, "user_amount_including_fees")
    else:
        raise QuoteError(f"swap opportunity: unknown side_specified {side!r}")
    fee_token = opp.get("fee_token")
    if fee_token not in ("searcher_token", "user_token"):
        raise QuoteError(f"swap opportunity: unknown fee_token {fee_token!r}")
    configs = opp.get("token_account_initialization_configs") or {}
    inits = {}
    for field in attrs.fields(TokenAccountConfigs):
        value = configs.get(field.name, "unneeded")
        if value not in _ACCOUNT_INITS:
            raise QuoteError(f"swap opportunity: {field.name} has unknown value {value!r}")
        inits[field.name] = value
    memo = opp.get("memo")
    if memo is not None and not isinstance(memo, str):
        raise QuoteError("swap opportunity: memo must be a string or null")
    return SwapQuote(
        opportunity_id=str(opp["opportunity_id"]),
        user=_key(opp, "user_wallet_address"),
        router=_key(opp, "router_account"),
        searcher_token=_key(tokens, "searcher_token"),
        user_token=_key(tokens, "user_token"),
        token_program_searcher=_key(tokens, "token_program_searcher"),
        token_program_user=_key(tokens, "token_program_user"),
        side_specified=side,
        specified_amount=specified,
        fee_token=fee_token,
        referral_fee_ppm=_uint(opp, "referral_fee_ppm", 0),
        platform_fee_ppm=_uint(opp, "platform_fee_ppm", 0),
        user_mint_user_balance=_uint(opp, "user_mint_user_balance", 0),
        minimum_deadline=_uint(opp, "minimum_deadline", 0),
        memo=memo,
        token_accounts=TokenAccountConfigs(**inits),
    )


def scale_bid_for_fees(quote: SwapQuote, amount: int) -> int:
    """The `amount_user` to put on chain for a bid of `amount`.

    For side "searcher" with fees in the user token, the fees come out of what the user pays,
    so the SDK scales the bid by 1e6 / (1e6 - platform - referral ppm), rounded up, to keep the
    searcher's net. Other combinations are unchanged.
    """
    if quote.side_specified == "searcher" and quote.fee_token == "user_token":
        denominator = FEE_PRECISION_PPM - quote.platform_fee_ppm - quote.referral_fee_ppm
        if denominator <= 0:
            raise QuoteError("swap opportunity fees add up to 100% or more")
        return -(-amount * FEE_PRECISION_PPM // denominator)
    return amount


def swap_v2_args(quote: SwapQuote, *, amount: int, deadline: int) -> SwapV2Args:
    """The `swap_v2` arguments of a bid of `amount` on `quote`."""
    bid = scale_bid_for_fees(quote, amount)
    if quote.side_specified == "searcher":
        amount_searcher, amount_user = quote.specified_amount, bid
    else:
        amount_searcher, amount_user = bid, quote.specified_amount
    return SwapV2Args(
        deadline=deadline,
        amount_searcher=amount_searcher,
        amount_user=amount_user,
        referral_fee_ppm=quote.referral_fee_ppm,
        fee_token=quote.fee_token,
        swap_platform_fee_ppm=quote.platform_fee_ppm,
    )


def swap_accounts(
    quote: SwapQuote, *, searcher: Pubkey, constants: ExpressRelayConstants
) -> SwapV2Accounts:
    """The `swap_v2` accounts: token accounts are the owners' ATAs of each mint."""
    metadata = constants.metadata_address
    fee_mint, fee_program = quote.fee_mint, quote.fee_token_program
    return SwapV2Accounts(
        searcher=searcher,
        user=quote.user,
        searcher_ta_mint_searcher=associated_token_address(
            searcher, quote.searcher_token, quote.token_program_searcher
        ),
        searcher_ta_mint_user=associated_token_address(
            searcher, quote.user_token, quote.token_program_user
        ),
        user_ata_mint_searcher=associated_token_address(
            quote.user, quote.searcher_token, quote.token_program_searcher
        ),
        user_ata_mint_user=associated_token_address(
            quote.user, quote.user_token, quote.token_program_user
        ),
        router_fee_receiver_ta=associated_token_address(quote.router, fee_mint, fee_program),
        relayer_fee_receiver_ata=associated_token_address(
            constants.fee_receiver_relayer, fee_mint, fee_program
        ),
        express_relay_fee_receiver_ata=associated_token_address(metadata, fee_mint, fee_program),
        mint_searcher=quote.searcher_token,
        mint_user=quote.user_token,
        mint_fee=fee_mint,
        token_program_searcher=quote.token_program_searcher,
        token_program_user=quote.token_program_user,
        token_program_fee=fee_program,
        express_relay_metadata=metadata,
        relayer_signer=constants.relayer_signer,
    )


def _ata_creations(
    quote: SwapQuote, searcher: Pubkey, constants: ExpressRelayConstants
) -> list[Instruction]:
    # Same order as the SDK: user ATAs, then the three fee receivers.
    cfg = quote.token_accounts
    fee_mint, fee_program = quote.fee_mint, quote.fee_token_program
    wanted = [
        (
            cfg.user_ata_mint_searcher,
            quote.user,
            quote.searcher_token,
            quote.token_program_searcher,
        ),
        (cfg.user_ata_mint_user, quote.user, quote.user_token, quote.token_program_user),
        (cfg.router_fee_receiver_ta, quote.router, fee_mint, fee_program),
        (cfg.relayer_fee_receiver_ata, constants.fee_receiver_relayer, fee_mint, fee_program),
        (cfg.express_relay_fee_receiver_ata, constants.metadata_address, fee_mint, fee_program),
    ]
    return [
        create_ata_idempotent_instruction(
            payer=searcher if init == "searcher_payer" else quote.user,
            owner=owner,
            mint=mint,
            token_program=program,
        )
        for init, owner, mint, program in wanted
        if init != "unneeded"
    ]


def _user_amount_to_wrap(quote: SwapQuote, amount_user: int) -> int:
    # The user's SOL balance also pays rent for the ATAs the quote makes them create.
    cfg = quote.token_accounts
    user_paid = [cfg.user_ata_mint_user, cfg.user_ata_mint_searcher].count("user_payer")
    spendable = quote.user_mint_user_balance - user_paid * RENT_TOKEN_ACCOUNT_LAMPORTS
    return min(amount_user, max(0, spendable))


def swap_instructions(
    quote: SwapQuote,
    *,
    searcher: Pubkey,
    amount: int,
    deadline: int,
    constants: ExpressRelayConstants,
) -> list[Instruction]:
    """The instructions of a swap bid (compute budget not included), in the SDK's order."""
    args = swap_v2_args(quote, amount=amount, deadline=deadline)
    ixs: list[Instruction] = []
    if quote.memo is not None:
        ixs.append(memo_instruction(quote.memo))
    ixs.extend(_ata_creations(quote, searcher, constants))
    wsol_involved = WRAPPED_SOL_MINT in (quote.searcher_token, quote.user_token)
    # Derived only when a wrapped-SOL instruction needs it.
    user_wsol = (
        associated_token_address(quote.user, WRAPPED_SOL_MINT, TOKEN_PROGRAM_ID)
        if wsol_involved
        else None
    )
    if user_wsol is not None and quote.user_token == WRAPPED_SOL_MINT:
        # The user pays in SOL: move it into their wrapped-SOL account (the user signs later).
        lamports = _user_amount_to_wrap(quote, args.amount_user)
        ixs.append(
            system_transfer_instruction(source=quote.user, destination=user_wsol, lamports=lamports)
        )
        ixs.append(sync_native_instruction(user_wsol, TOKEN_PROGRAM_ID))
    ixs.append(
        swap_v2_instruction(
            program_id=constants.program_id,
            accounts=swap_accounts(quote, searcher=searcher, constants=constants),
            args=args,
        )
    )
    if user_wsol is not None:
        ixs.append(
            close_account_instruction(
                account=user_wsol,
                destination=quote.user,
                owner=quote.user,
                token_program=TOKEN_PROGRAM_ID,
            )
        )
    return ixs
