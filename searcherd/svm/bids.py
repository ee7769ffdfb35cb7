"""Key-less bid descriptions for strategies, and the submitter's transaction builders.

A strategy never holds a key: it returns a `LimoBidParams` or `SwapBidParams` (plain values).
The submitter, which holds the `SearcherKey`, turns it into a partially signed transaction
with `build_limo_bid_transaction` / `build_swap_bid_transaction`, which also run the server's
rules (`check_bid_transaction`) so a bad bid fails locally with the server's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import attrs
from solders.keypair import Keypair

from searcherd.svm.instructions import (
    set_compute_unit_limit_instruction,
    set_compute_unit_price_instruction,
    submit_bid_instruction,
)
from searcherd.svm.keys import SearcherKey
from searcherd.svm.limo import limo_router
from searcherd.svm.rules import check_bid_transaction
from searcherd.svm.swap import SwapQuote, swap_instructions
from searcherd.svm.transaction import compile_message, encode_transaction, partial_sign

if TYPE_CHECKING:
    from collections.abc import Sequence

    from solders.address_lookup_table_account import AddressLookupTableAccount
    from solders.hash import Hash
    from solders.instruction import Instruction
    from solders.pubkey import Pubkey
    from solders.transaction import VersionedTransaction

    from searcherd.svm.keys import Signer
    from searcherd.svm.limo import LimoOrder
    from searcherd.svm.metadata import ExpressRelayConstants
    from searcherd.svm.transaction import MessageVersion

__all__ = [
    "DEFAULT_COMPUTE_UNIT_LIMIT",
    "LimoBidParams",
    "SwapBidParams",
    "build_limo_bid_transaction",
    "build_swap_bid_transaction",
    "onchain_bid_payload",
    "swap_bid_payload",
]

#: The SDK example's compute unit limit; enough for submit_bid + take_order or swap_v2.
DEFAULT_COMPUTE_UNIT_LIMIT = 300_000


def _tuple_of_instructions(value: Sequence[Instruction]) -> tuple[Instruction, ...]:
    return tuple(value)


@attrs.frozen
class LimoBidParams:
    """An on-chain bid on a limo order: pay `amount` lamports for the permission to fill.

    `instructions` are the caller's (typically `take_order_instructions(...)`), placed after
    `submit_bid`. `slot` is the opportunity's slot, sent with the bid so the server simulates
    at a state at least that recent.
    """

    order_address: Pubkey
    router: Pubkey
    amount: int
    deadline: int
    instructions: tuple[Instruction, ...] = attrs.field(converter=_tuple_of_instructions)
    slot: int | None = None

    @classmethod
    def for_order(
        cls,
        *,
        order_address: Pubkey,
        order: LimoOrder,
        amount: int,
        deadline: int,
        instructions: Sequence[Instruction],
        slot: int | None,
    ) -> LimoBidParams:
        """Params whose router is derived from the order's global config, as the SDK does."""
        return cls(
            order_address, limo_router(order.global_config), amount, deadline, instructions, slot
        )


@attrs.frozen
class SwapBidParams:
    """A swap bid: `amount` of the unspecified side (see `SwapQuote`), valid until `deadline`."""

    quote: SwapQuote
    amount: int
    deadline: int


def _own_signature(searcher: Signer, pubkey: Pubkey) -> Pubkey | None:
    """`pubkey` when `searcher` signs with a keypair held in this process (its signature over
    the message it just signed is right by construction, so the rule check skips verifying
    it); None for any other `Signer`, whose signature is verified like any other."""
    return pubkey if isinstance(searcher, SearcherKey | Keypair) else None


def _budget(priority_fee: int, compute_unit_limit: int | None) -> list[Instruction]:
    ixs = (
        []
        if compute_unit_limit is None
        else [set_compute_unit_limit_instruction(compute_unit_limit)]
    )
    return [*ixs, set_compute_unit_price_instruction(priority_fee)]


def build_limo_bid_transaction(
    params: LimoBidParams,
    *,
    searcher: Signer,
    constants: ExpressRelayConstants,
    blockhash: Hash,
    priority_fee: int,
    now: float,
    compute_unit_limit: int | None = DEFAULT_COMPUTE_UNIT_LIMIT,
    version: MessageVersion = "legacy",
    lookup_tables: Sequence[AddressLookupTableAccount] = (),
) -> VersionedTransaction:
    """Compute budget + `submit_bid` + the caller's instructions, signed by the searcher only.

    Raises `BidRuleError` (server message) if the result would be rejected, e.g. a deadline
    outside [now + 5 s, now + 45 s] or a transaction over 1232 bytes.
    """
    searcher_key = searcher.pubkey()
    submit = submit_bid_instruction(
        program_id=constants.program_id,
        searcher=searcher_key,
        relayer_signer=constants.relayer_signer,
        permission=params.order_address,
        router=params.router,
        fee_receiver_relayer=constants.fee_receiver_relayer,
        deadline=params.deadline,
        bid_amount=params.amount,
    )
    instructions = [*_budget(priority_fee, compute_unit_limit), submit, *params.instructions]
    return _sign_and_check(
        instructions, "limo", None, searcher=searcher, searcher_key=searcher_key,
        constants=constants, blockhash=blockhash, priority_fee=priority_fee, now=now,
        version=version, lookup_tables=lookup_tables,
    )  # fmt: skip


def build_swap_bid_transaction(
    params: SwapBidParams,
    *,
    searcher: Signer,
    constants: ExpressRelayConstants,
    blockhash: Hash,
    priority_fee: int,
    now: float,
    compute_unit_limit: int | None = DEFAULT_COMPUTE_UNIT_LIMIT,
    version: MessageVersion = "legacy",
    lookup_tables: Sequence[AddressLookupTableAccount] = (),
) -> VersionedTransaction:
    """Compute budget + the swap instructions, signed by the searcher; user and relayer
    signature slots stay empty. Raises `BidRuleError` if the server would reject it.
    """
    searcher_key = searcher.pubkey()
    instructions = [
        *_budget(priority_fee, compute_unit_limit),
        *swap_instructions(
            params.quote,
            searcher=searcher_key,
            amount=params.amount,
            deadline=params.deadline,
            constants=constants,
        ),
    ]
    return _sign_and_check(
        instructions, "swap", params.quote, searcher=searcher, searcher_key=searcher_key,
        constants=constants, blockhash=blockhash, priority_fee=priority_fee, now=now,
        version=version, lookup_tables=lookup_tables,
    )  # fmt: skip


def _sign_and_check(
    instructions: list[Instruction],
    kind: Literal["limo", "swap"],
    quote: SwapQuote | None,
    *,
    searcher: Signer,
    searcher_key: Pubkey,
    constants: ExpressRelayConstants,
    blockhash: Hash,
    priority_fee: int,
    now: float,
    version: MessageVersion,
    lookup_tables: Sequence[AddressLookupTableAccount],
) -> VersionedTransaction:
    """Compile, sign as the searcher only, and hold the result to the server's rules."""
    message = compile_message(
        instructions, payer=searcher, blockhash=blockhash, version=version,
        lookup_tables=lookup_tables,
    )  # fmt: skip
    tx = partial_sign(message, [searcher])
    check_bid_transaction(
        tx,
        kind=kind,
        program_id=constants.program_id,
        relayer_signer=constants.relayer_signer,
        min_priority_fee=priority_fee,
        now=now,
        swap=quote,
        searcher=searcher_key,
        lookup_tables={t.key: list(t.addresses) for t in lookup_tables},
        signed_by=_own_signature(searcher, searcher_key),
    )
    return tx


def onchain_bid_payload(
    tx: VersionedTransaction, *, chain_id: str, slot: int | None
) -> dict[str, Any]:
    """The `params.bid` object of an on-chain (limo) `post_bid`."""
    bid: dict[str, Any] = {"chain_id": chain_id, "transaction": encode_transaction(tx)}
    if slot is not None:
        bid["slot"] = slot
    return bid


def swap_bid_payload(
    tx: VersionedTransaction, *, chain_id: str, opportunity_id: str
) -> dict[str, Any]:
    """The `params.bid` object of a swap `post_bid` (with the required `type: "swap"`)."""
    return {
        "chain_id": chain_id,
        "transaction": encode_transaction(tx),
        "opportunity_id": opportunity_id,
        "type": "swap",
    }
