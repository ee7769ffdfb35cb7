"""Instruction bytes and account lists, checked against values derived from the IDL.

Discriminators are recomputed here (sha256 of `global:<name>`), and account order and flags are
read from a small excerpt of the Express Relay IDL vendored under `tests/data/`.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from solders.pubkey import Pubkey

from searcherd.svm import instructions as ix
from searcherd.svm.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    MAINNET_PROGRAM_ID,
    MEMO_PROGRAM_ID,
    STAGING_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    SYSVAR_INSTRUCTIONS_ID,
    TOKEN_PROGRAM_ID,
    config_router_pda,
    metadata_pda,
    program_id_for_chain,
)

IDL: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "express_relay_idl_excerpt.json").read_text()
)


def _idl_instruction(name: str) -> dict[str, Any]:
    return next(i for i in IDL["instructions"] if i["name"] == name)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _sighash(name: str) -> bytes:
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


def _key(n: int) -> Pubkey:
    return Pubkey.from_bytes(bytes([n]) * 32)


def test_discriminators_match_sha256_of_global_name() -> None:
    """submit_bid and swap_v2 discriminators are sha256("global:<name>")[:8]."""
    assert _sighash("submit_bid") == ix.SUBMIT_BID_DISCRIMINATOR
    assert _sighash("swap_v2") == ix.SWAP_V2_DISCRIMINATOR
    # The same bytes the official SDK's generated code hard-codes.
    assert ix.SUBMIT_BID_DISCRIMINATOR == b"\x13\xa4\xed\xfe@\x8b\xed]"
    assert ix.SWAP_V2_DISCRIMINATOR == b"+\x04\xed\x0b\x1a\xc9\x1eb"


def test_submit_bid_bytes_and_accounts_follow_the_idl() -> None:
    """submit_bid: discriminator, i64 deadline, u64 amount; accounts in IDL order and flags."""
    searcher, relayer, order, router, fee_receiver = (_key(n) for n in (1, 2, 3, 4, 5))
    got = ix.submit_bid_instruction(
        program_id=MAINNET_PROGRAM_ID,
        searcher=searcher,
        relayer_signer=relayer,
        permission=order,
        router=router,
        fee_receiver_relayer=fee_receiver,
        deadline=1_745_500_015,
        bid_amount=10_000_000,
    )
    assert got.program_id == MAINNET_PROGRAM_ID
    assert bytes(got.data) == _sighash("submit_bid") + struct.pack("<qQ", 1_745_500_015, 10_000_000)
    expected_keys = {
        "searcher": searcher,
        "relayer_signer": relayer,
        "permission": order,
        "router": router,
        "config_router": config_router_pda(MAINNET_PROGRAM_ID, router),
        "express_relay_metadata": metadata_pda(MAINNET_PROGRAM_ID),
        "fee_receiver_relayer": fee_receiver,
        "system_program": SYSTEM_PROGRAM_ID,
        "sysvar_instructions": SYSVAR_INSTRUCTIONS_ID,
    }
    idl_accounts = _idl_instruction("submitBid")["accounts"]
    assert len(got.accounts) == len(idl_accounts)
    for meta, spec in zip(got.accounts, idl_accounts, strict=True):
        assert meta.pubkey == expected_keys[_snake(spec["name"])], spec["name"]
        assert (meta.is_signer, meta.is_writable) == (spec["isSigner"], spec["isMut"]), spec["name"]


def test_submit_bid_pdas_follow_the_program_id() -> None:
    """Staging bids derive the metadata and config-router PDAs from the staging program."""
    got = ix.submit_bid_instruction(
        program_id=STAGING_PROGRAM_ID,
        searcher=_key(1),
        relayer_signer=_key(2),
        permission=_key(3),
        router=_key(4),
        fee_receiver_relayer=_key(5),
        deadline=1,
        bid_amount=1,
    )
    assert got.accounts[4].pubkey == config_router_pda(STAGING_PROGRAM_ID, _key(4))
    assert got.accounts[5].pubkey == metadata_pda(STAGING_PROGRAM_ID)
    assert metadata_pda(STAGING_PROGRAM_ID) != metadata_pda(MAINNET_PROGRAM_ID)


def test_submit_bid_rejects_out_of_range_amounts() -> None:
    """A bid that does not fit u64 is refused instead of being silently truncated."""
    with pytest.raises(ValueError, match="bid_amount must fit in u64"):
        ix.SubmitBidArgs(deadline=1, bid_amount=2**64).encode()
    with pytest.raises(ValueError, match="deadline must fit in i64"):
        ix.SubmitBidArgs(deadline=2**63, bid_amount=1).encode()


def test_submit_bid_args_round_trip() -> None:
    """decode_submit_bid_args reads back what submit_bid_instruction wrote."""
    data = ix.SUBMIT_BID_DISCRIMINATOR + ix.SubmitBidArgs(-5, 2**64 - 1).encode()
    assert ix.decode_submit_bid_args(data) == ix.SubmitBidArgs(-5, 2**64 - 1)
    with pytest.raises(ix.InstructionDecodeError):
        ix.decode_submit_bid_args(ix.SWAP_V2_DISCRIMINATOR + bytes(16))


def test_swap_v2_bytes_and_accounts_follow_the_idl() -> None:
    """swap_v2: Borsh args in IDL field order (fee token = 1-byte enum); 17 accounts as the IDL."""
    names = [_snake(a["name"]) for a in _idl_instruction("swapV2")["accounts"]]
    keys = {name: _key(10 + i) for i, name in enumerate(names)}
    accounts = ix.SwapV2Accounts(**keys)
    args = ix.SwapV2Args(
        deadline=1_745_500_010,
        amount_searcher=999_000_000,
        amount_user=5_000,
        referral_fee_ppm=250,
        fee_token="user_token",
        swap_platform_fee_ppm=1_000,
    )
    got = ix.swap_v2_instruction(program_id=MAINNET_PROGRAM_ID, accounts=accounts, args=args)
    idl_fields = [
        f["name"]
        for f in next(t for t in IDL["types"] if t["name"] == "SwapV2Args")["type"]["fields"]
    ]
    assert idl_fields == [
        "deadline",
        "amountSearcher",
        "amountUser",
        "referralFeePpm",
        "feeToken",
        "swapPlatformFeePpm",
    ]
    fee_variants = [
        v["name"]
        for v in next(t for t in IDL["types"] if t["name"] == "FeeToken")["type"]["variants"]
    ]
    assert fee_variants == ["Searcher", "User"]
    expected = _sighash("swap_v2") + struct.pack("<qQQQ", 1_745_500_010, 999_000_000, 5_000, 250)
    expected += bytes([1]) + struct.pack("<Q", 1_000)
    assert bytes(got.data) == expected
    for meta, spec in zip(got.accounts, _idl_instruction("swapV2")["accounts"], strict=True):
        assert meta.pubkey == keys[_snake(spec["name"])]
        assert (meta.is_signer, meta.is_writable) == (spec["isSigner"], spec["isMut"]), spec["name"]
    assert ix.decode_swap_v2_args(bytes(got.data)) == args


def test_swap_v2_decoder_rejects_bad_fee_token() -> None:
    """An unknown fee-token enum index is a decode error, not a crash."""
    data = ix.SWAP_V2_DISCRIMINATOR + bytes(32) + bytes([7]) + bytes(8)
    with pytest.raises(ix.InstructionDecodeError, match="fee token 7"):
        ix.decode_swap_v2_args(data)


def test_compute_budget_instructions() -> None:
    """SetComputeUnitPrice is tag 3 + u64; SetComputeUnitLimit is tag 2 + u32."""
    price = ix.set_compute_unit_price_instruction(25_000)
    assert price.program_id == COMPUTE_BUDGET_PROGRAM_ID
    assert bytes(price.data) == b"\x03" + (25_000).to_bytes(8, "little")
    assert ix.decode_compute_unit_price(bytes(price.data)) == 25_000
    limit = ix.set_compute_unit_limit_instruction(300_000)
    assert bytes(limit.data) == b"\x02" + (300_000).to_bytes(4, "little")
    assert ix.decode_compute_unit_price(bytes(limit.data)) is None


def test_memo_ata_and_token_instructions() -> None:
    """Memo carries UTF-8 text; ATA create is idempotent (tag 1); token ops use SPL tags."""
    memo = ix.memo_instruction("er-example")
    assert (memo.program_id, bytes(memo.data), list(memo.accounts)) == (
        MEMO_PROGRAM_ID,
        b"er-example",
        [],
    )
    ata = ix.create_ata_idempotent_instruction(
        payer=_key(1), owner=_key(2), mint=_key(3), token_program=TOKEN_PROGRAM_ID
    )
    assert ata.program_id == ASSOCIATED_TOKEN_PROGRAM_ID
    assert bytes(ata.data) == b"\x01"
    assert [m.pubkey for m in ata.accounts][2:] == [
        _key(2),
        _key(3),
        SYSTEM_PROGRAM_ID,
        TOKEN_PROGRAM_ID,
    ]
    assert bytes(ix.sync_native_instruction(_key(4), TOKEN_PROGRAM_ID).data) == b"\x11"
    close = ix.close_account_instruction(
        account=_key(4), destination=_key(2), owner=_key(2), token_program=TOKEN_PROGRAM_ID
    )
    assert bytes(close.data) == b"\x09"
    transfer = ix.system_transfer_instruction(source=_key(2), destination=_key(4), lamports=7)
    assert bytes(transfer.data) == b"\x02\x00\x00\x00" + (7).to_bytes(8, "little")


def test_program_ids_per_chain() -> None:
    """Known chain ids map to the SDK's program ids; an unknown one is a clear error."""
    assert program_id_for_chain("solana") == MAINNET_PROGRAM_ID
    assert program_id_for_chain("development-solana") == STAGING_PROGRAM_ID
    with pytest.raises(ValueError, match="unknown SVM chain id 'solana-devnet'"):
        program_id_for_chain("solana-devnet")
