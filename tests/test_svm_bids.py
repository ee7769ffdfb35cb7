"""Building limo and swap bid transactions: instructions, signatures, payloads."""

from __future__ import annotations

import base64
from typing import Any

import attrs
import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature

from searcherd.svm import bids, limo
from searcherd.svm.instructions import (
    SUBMIT_BID_DISCRIMINATOR,
    decode_compute_unit_price,
    decode_submit_bid_args,
    decode_swap_v2_args,
)
from searcherd.svm.keys import SearcherKey
from searcherd.svm.metadata import ExpressRelayConstants
from searcherd.svm.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    LIMO_PROGRAM_ID,
    MAINNET_PROGRAM_ID,
    MEMO_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    WRAPPED_SOL_MINT,
)
from searcherd.svm.rules import BidRuleError, check_bid_transaction
from searcherd.svm.swap import SwapQuote, scale_bid_for_fees
from searcherd.svm.transaction import decode_transaction, message_bytes

NOW = 1_745_500_000
USDC = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
SEARCHER = SearcherKey(Keypair.from_seed(bytes([1]) * 32), "test")
RELAYER = Keypair.from_seed(bytes([2]) * 32)
CONSTANTS = ExpressRelayConstants(
    program_id=MAINNET_PROGRAM_ID,
    relayer_signer=RELAYER.pubkey(),
    fee_receiver_relayer=Pubkey.from_bytes(bytes([3]) * 32),
)
BLOCKHASH = Hash.from_string("SLxp9LxX1eE9Z5v99Y92DaYEwyukFgMUF6zRerCF12j")
ORDER_ADDRESS = Pubkey.from_string("5gHrZ4mX1gmUzJB2azRYZiefd1CaasyUFw2kqbXK4quq")
ORDER = limo.LimoOrder(
    global_config=Pubkey.from_bytes(bytes([4]) * 32),
    maker=Pubkey.from_bytes(bytes([5]) * 32),
    input_mint=USDC,
    input_mint_program_id=TOKEN_PROGRAM_ID,
    output_mint=WRAPPED_SOL_MINT,
    output_mint_program_id=TOKEN_PROGRAM_ID,
    initial_input_amount=2_000_000_000,
    expected_output_amount=290_000_000,
    remaining_input_amount=2_000_000_000,
)

SWAP_OPPORTUNITY: dict[str, Any] = {
    "opportunity_id": "d3c4a1f0-7b2e-4c8a-9f61-2a5b0e9c7d13",
    "creation_time": 1745500000123456,
    "version": "v1",
    "program": "swap",
    "user_wallet_address": "3Z3wCgpzP1fccTQvJM9mNBcDVc5kLxLz32UvLcnQz126",
    "user_mint_user_balance": 5000000000,
    "permission_account": "5DU1gUGwJo7Nw5Bs2kJz3NWkqEo1bEexLjJbPCDM5w3G",
    "router_account": "EqkiZo13ikh11HxtXCsbVbGASWQqCbd85yYUET9Kouvg",
    "referral_fee_bps": 0,
    "referral_fee_ppm": 0,
    "platform_fee_bps": 10,
    "platform_fee_ppm": 1000,
    "fee_token": "user_token",
    "tokens": {
        "side_specified": "user",
        "searcher_token": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "user_token": "So11111111111111111111111111111111111111112",
        "user_amount": 999000000,
        "user_amount_including_fees": 1000000000,
        "token_program_searcher": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        "token_program_user": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
    },
    "token_account_initialization_configs": {
        "user_ata_mint_searcher": "searcher_payer",
        "user_ata_mint_user": "user_payer",
        "router_fee_receiver_ta": "unneeded",
        "relayer_fee_receiver_ata": "unneeded",
        "express_relay_fee_receiver_ata": "unneeded",
    },
    "memo": None,
    "cancellable": True,
    "minimum_deadline": NOW + 10,
    "profile_id": None,
    "chain_id": "solana",
}


def _limo_params(deadline: int = NOW + 15) -> bids.LimoBidParams:
    take = limo.take_order_instructions(
        taker=SEARCHER.pubkey(),
        order=ORDER,
        order_address=ORDER_ADDRESS,
        input_amount=ORDER.remaining_input_amount,
        output_amount=ORDER.output_for_input(ORDER.remaining_input_amount),
        express_relay_program_id=MAINNET_PROGRAM_ID,
    )
    return bids.LimoBidParams.for_order(
        order_address=ORDER_ADDRESS,
        order=ORDER,
        amount=10_000_000,
        deadline=deadline,
        instructions=take,
        slot=334410293,
    )


@pytest.mark.parametrize("version", ["legacy", 0])
def test_limo_bid_transaction(version: Any) -> None:
    """A limo bid: budget, submit_bid, take_order; searcher pays and signs; relayer slot empty."""
    tx = bids.build_limo_bid_transaction(
        _limo_params(),
        searcher=SEARCHER,
        constants=CONSTANTS,
        blockhash=BLOCKHASH,
        priority_fee=25_000,
        now=NOW,
        version=version,
    )
    message = tx.message
    assert isinstance(message, Message if version == "legacy" else MessageV0)
    keys = list(message.account_keys)
    assert keys[0] == SEARCHER.pubkey()
    signers = keys[: message.header.num_required_signatures]
    assert signers == [SEARCHER.pubkey(), RELAYER.pubkey()]
    assert tx.signatures[0].verify(SEARCHER.pubkey(), message_bytes(message))
    assert tx.signatures[1] == Signature.default()
    assert len(bytes(tx)) <= 1232
    instructions = list(message.instructions)
    assert decode_compute_unit_price(bytes(instructions[1].data)) == 25_000
    submit = instructions[2]
    assert keys[submit.program_id_index] == MAINNET_PROGRAM_ID
    assert bytes(submit.data).startswith(SUBMIT_BID_DISCRIMINATOR)
    args = decode_submit_bid_args(bytes(submit.data))
    assert (args.deadline, args.bid_amount) == (NOW + 15, 10_000_000)
    assert keys[bytes(submit.accounts)[2]] == ORDER_ADDRESS
    assert keys[bytes(submit.accounts)[3]] == limo.limo_router(ORDER.global_config)
    assert keys[instructions[-2].program_id_index] == LIMO_PROGRAM_ID
    # The simulator-side check agrees and reads the same amount back.
    checked = check_bid_transaction(
        tx,
        kind="limo",
        program_id=MAINNET_PROGRAM_ID,
        relayer_signer=RELAYER.pubkey(),
        min_priority_fee=25_000,
        now=NOW,
    )
    assert (checked.amount, checked.permission) == (10_000_000, ORDER_ADDRESS)


def test_limo_bid_payload_round_trips() -> None:
    """The on-chain bid payload carries base64 wire bytes and the opportunity slot."""
    params = _limo_params()
    tx = bids.build_limo_bid_transaction(
        params, searcher=SEARCHER, constants=CONSTANTS, blockhash=BLOCKHASH, priority_fee=1, now=NOW
    )
    payload = bids.onchain_bid_payload(tx, chain_id="solana", slot=params.slot)
    assert set(payload) == {"chain_id", "transaction", "slot"}
    assert payload["slot"] == 334410293
    assert decode_transaction(payload["transaction"]) == tx
    assert base64.b64decode(payload["transaction"]) == bytes(tx)
    assert "slot" not in bids.onchain_bid_payload(tx, chain_id="solana", slot=None)


def test_limo_builder_rejects_bad_deadline_with_server_text() -> None:
    """The builder runs the server rules: a deadline only 3 s ahead is too early."""
    with pytest.raises(
        BidRuleError, match=r"^Bid deadline 2025-04-24 13:06:43.0 \+00:00:00 is too early"
    ):
        bids.build_limo_bid_transaction(
            _limo_params(deadline=NOW + 3),
            searcher=SEARCHER,
            constants=CONSTANTS,
            blockhash=BLOCKHASH,
            priority_fee=1,
            now=NOW,
        )


def test_limo_v0_with_lookup_table_is_smaller_and_checks() -> None:
    """A v0 bid can move accounts into a lookup table; the rules resolve them when given."""
    params = _limo_params()
    table_keys = [ix.program_id for ix in params.instructions] + [
        TOKEN_PROGRAM_ID,
        SYSTEM_PROGRAM_ID,
        ORDER.global_config,
        ORDER.maker,
        USDC,
    ]
    table = AddressLookupTableAccount(key=Pubkey.from_bytes(bytes([9]) * 32), addresses=table_keys)
    legacy = bids.build_limo_bid_transaction(
        params, searcher=SEARCHER, constants=CONSTANTS, blockhash=BLOCKHASH, priority_fee=1, now=NOW
    )
    v0 = bids.build_limo_bid_transaction(
        params,
        searcher=SEARCHER,
        constants=CONSTANTS,
        blockhash=BLOCKHASH,
        priority_fee=1,
        now=NOW,
        version=0,
        lookup_tables=[table],
    )
    assert isinstance(v0.message, MessageV0)
    assert v0.message.address_table_lookups
    assert len(bytes(v0)) < len(bytes(legacy))


def test_swap_quote_from_opportunity() -> None:
    """SwapQuote reads the wire opportunity fields into plain values."""
    quote = SwapQuote.from_opportunity(SWAP_OPPORTUNITY)
    assert quote.side_specified == "user"
    assert quote.specified_amount == 1_000_000_000
    assert quote.user_token == WRAPPED_SOL_MINT
    assert quote.fee_mint == WRAPPED_SOL_MINT
    assert quote.token_accounts.user_ata_mint_user == "user_payer"
    assert quote.minimum_deadline == NOW + 10


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("fee_token",), "both", "unknown fee_token"),
        (("tokens", "side_specified"), "maybe", "unknown side_specified"),
        (("user_wallet_address",), "not-a-key", "is not a public key"),
        (("referral_fee_ppm",), -1, "non-negative integer"),
        (("token_account_initialization_configs", "router_fee_receiver_ta"), "x", "unknown value"),
    ],
)
def test_swap_quote_rejects_malformed_fields(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    """Each malformed field is a QuoteError naming it."""
    opp = {**SWAP_OPPORTUNITY, "tokens": dict(SWAP_OPPORTUNITY["tokens"])}
    opp["token_account_initialization_configs"] = dict(opp["token_account_initialization_configs"])
    target = opp
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        SwapQuote.from_opportunity(opp)


def test_swap_bid_transaction() -> None:
    """A swap bid: ATAs per config, SOL wrap from the user, swap_v2, unwrap; user+relayer unsigned."""
    quote = SwapQuote.from_opportunity(SWAP_OPPORTUNITY)
    tx = bids.build_swap_bid_transaction(
        bids.SwapBidParams(quote, amount=150_000_000, deadline=quote.minimum_deadline),
        searcher=SEARCHER,
        constants=CONSTANTS,
        blockhash=BLOCKHASH,
        priority_fee=25_000,
        now=NOW,
    )
    message = tx.message
    assert isinstance(message, Message)
    keys = list(message.account_keys)
    signers = keys[: message.header.num_required_signatures]
    assert signers[0] == SEARCHER.pubkey()
    assert set(signers) == {SEARCHER.pubkey(), quote.user, RELAYER.pubkey()}
    for key, signature in zip(signers, tx.signatures, strict=True):
        if key == SEARCHER.pubkey():
            assert signature.verify(key, message_bytes(message))
        else:
            assert signature == Signature.default()
    programs = [keys[ix.program_id_index] for ix in message.instructions]
    assert programs[2:4] == [ASSOCIATED_TOKEN_PROGRAM_ID, ASSOCIATED_TOKEN_PROGRAM_ID]
    assert programs[4:6] == [SYSTEM_PROGRAM_ID, TOKEN_PROGRAM_ID]  # wrap the user's SOL
    assert programs[6] == MAINNET_PROGRAM_ID
    assert programs[7] == TOKEN_PROGRAM_ID  # close (unwrap)
    # The ATA for the searcher mint is paid by the searcher, the user one by the user.
    payers = [keys[bytes(message.instructions[i].accounts)[0]] for i in (2, 3)]
    assert payers == [SEARCHER.pubkey(), quote.user]
    args = decode_swap_v2_args(bytes(message.instructions[6].data))
    assert (args.amount_searcher, args.amount_user) == (150_000_000, 1_000_000_000)
    assert (args.fee_token, args.swap_platform_fee_ppm) == ("user_token", 1000)
    transfer = message.instructions[4]
    assert int.from_bytes(bytes(transfer.data)[4:], "little") == 1_000_000_000
    payload = bids.swap_bid_payload(tx, chain_id="solana", opportunity_id=quote.opportunity_id)
    assert payload["type"] == "swap"
    assert payload["opportunity_id"] == SWAP_OPPORTUNITY["opportunity_id"]


def test_swap_bid_scaling_for_user_token_fees() -> None:
    """Side "searcher" + fee in user token: the bid is scaled up by 1e6/(1e6-fees), rounded up."""
    quote = SwapQuote.from_opportunity(
        {
            **SWAP_OPPORTUNITY,
            "referral_fee_ppm": 500,
            "tokens": {
                **SWAP_OPPORTUNITY["tokens"],
                "side_specified": "searcher",
                "searcher_amount": 200_000_000,
                "user_token": str(USDC),
                "searcher_token": str(WRAPPED_SOL_MINT),
            },
            "token_account_initialization_configs": {},
            "memo": "quote-42",
        }
    )
    assert scale_bid_for_fees(quote, 1_000_000) == 1_001_503  # ceil(1e12 / 998_500)
    assert (
        scale_bid_for_fees(attrs.evolve(quote, fee_token="searcher_token"), 1_000_000) == 1_000_000
    )
    tx = bids.build_swap_bid_transaction(
        bids.SwapBidParams(quote, amount=1_000_000, deadline=NOW + 20),
        searcher=SEARCHER,
        constants=CONSTANTS,
        blockhash=BLOCKHASH,
        priority_fee=0,
        now=NOW,
        compute_unit_limit=None,
    )
    message = tx.message
    keys = list(message.account_keys)
    assert keys[message.instructions[1].program_id_index] == MEMO_PROGRAM_ID
    assert bytes(message.instructions[1].data) == b"quote-42"
    swap_ix = next(
        ix for ix in message.instructions if keys[ix.program_id_index] == MAINNET_PROGRAM_ID
    )
    args = decode_swap_v2_args(bytes(swap_ix.data))
    assert (args.amount_searcher, args.amount_user) == (200_000_000, 1_001_503)
