"""Limo `Order` account decoding/encoding and the `take_order` instruction."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from searcherd.svm import limo
from searcherd.svm.programs import (
    LIMO_PROGRAM_ID,
    MAINNET_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    WRAPPED_SOL_MINT,
    associated_token_address,
    config_router_pda,
)

LAYOUT = json.loads((Path(__file__).parent / "data" / "limo_order_layout.json").read_text())
USDC = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")


def _key(n: int) -> Pubkey:
    return Pubkey.from_bytes(bytes([n]) * 32)


KNOWN = limo.LimoOrder(
    global_config=_key(1),
    maker=_key(2),
    input_mint=USDC,
    input_mint_program_id=TOKEN_PROGRAM_ID,
    output_mint=WRAPPED_SOL_MINT,
    output_mint_program_id=TOKEN_PROGRAM_ID,
    initial_input_amount=2_000_000_000,
    expected_output_amount=290_000_000,
    remaining_input_amount=1_500_000_000,
    filled_output_amount=72_500_000,
    tip_amount=1_000,
    number_of_fills=1,
    order_type=0,
    status=limo.OrderStatus.ACTIVE,
    in_vault_bump=254,
    flash_ix_lock=0,
    last_updated_timestamp=1_745_499_000,
    flash_start_taker_output_balance=0,
)


def _layout_bytes(order: limo.LimoOrder) -> bytes:
    """Encode independently, field by field, from the vendored SDK layout description."""
    out = hashlib.sha256(b"account:Order").digest()[:8]
    for name, kind in LAYOUT["fields"]:
        if kind == "publicKey":
            out += bytes(getattr(order, name))
        elif kind == "u64":
            out += struct.pack("<Q", getattr(order, name))
        elif kind == "u8":
            out += bytes([getattr(order, name)])
        else:  # padding arrays
            elem, count = kind
            out += bytes(count * (8 if elem == "u64" else 1))
    return out


def test_order_discriminator_and_size() -> None:
    """The Order discriminator is sha256("account:Order")[:8]; the account is 424 bytes."""
    assert limo.ORDER_DISCRIMINATOR == b"\x86\xad\xdf\xb9MV\x1c3"
    assert limo.ORDER_SIZE == 424
    assert len(_layout_bytes(KNOWN)) == 424


def test_encode_known_order_matches_the_sdk_layout() -> None:
    """encode_order writes exactly the bytes the SDK's Borsh layout describes."""
    assert limo.encode_order(KNOWN) == _layout_bytes(KNOWN)


def test_decode_known_order() -> None:
    """A known account decodes into its named fields (as a strategy would price it)."""
    data = base64.b64decode(base64.b64encode(_layout_bytes(KNOWN)))  # as it travels on the wire
    order = limo.decode_order(data)
    assert order == KNOWN
    assert order.maker == _key(2)
    assert order.input_mint == USDC
    assert order.remaining_input_amount == 1_500_000_000
    assert order.status == limo.OrderStatus.ACTIVE
    assert order.is_active
    assert order.output_for_input(1_500_000_000) == 217_500_000


def test_output_for_input_rounds_up() -> None:
    """The pro-rata output is rounded up so the maker never gets less than asked."""
    order = limo.LimoOrder(
        _key(1), _key(2), _key(3), TOKEN_PROGRAM_ID, _key(4), TOKEN_PROGRAM_ID, 3, 10, 3
    )
    assert order.output_for_input(1) == 4


def test_decode_rejects_wrong_size_and_discriminator() -> None:
    """The 416-byte illustrative sample size and foreign accounts are refused clearly."""
    data = limo.encode_order(KNOWN)
    with pytest.raises(limo.OrderDecodeError, match="416 bytes, expected 424"):
        limo.decode_order(data[:416])
    with pytest.raises(limo.OrderDecodeError, match="discriminator"):
        limo.decode_order(bytes(8) + data[8:])


def test_encode_rejects_out_of_range_fields() -> None:
    """A field that does not fit its on-chain width is an error, not a wrapped value."""
    with pytest.raises(ValueError, match="remaining_input_amount"):
        limo.encode_order(attrs.evolve(KNOWN, remaining_input_amount=2**64))
    with pytest.raises(ValueError, match="are u8"):
        limo.encode_order(attrs.evolve(KNOWN, status=256))


@given(
    amounts=st.lists(st.integers(0, 2**64 - 1), min_size=8, max_size=8),
    small=st.lists(st.integers(0, 255), min_size=4, max_size=4),
    seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=6, max_size=6),
)
def test_order_round_trip(amounts: list[int], small: list[int], seeds: list[bytes]) -> None:
    """decode_order(encode_order(o)) == o for any field values that fit."""
    keys = [Pubkey.from_bytes(s) for s in seeds]
    order = limo.LimoOrder(
        global_config=keys[0],
        maker=keys[1],
        input_mint=keys[2],
        input_mint_program_id=keys[3],
        output_mint=keys[4],
        output_mint_program_id=keys[5],
        initial_input_amount=amounts[0],
        expected_output_amount=amounts[1],
        remaining_input_amount=amounts[2],
        filled_output_amount=amounts[3],
        tip_amount=amounts[4],
        number_of_fills=amounts[5],
        order_type=small[0],
        status=small[1],
        in_vault_bump=small[2],
        flash_ix_lock=small[3],
        last_updated_timestamp=amounts[6],
        flash_start_taker_output_balance=amounts[7],
    )
    assert limo.decode_order(limo.encode_order(order)) == order


def test_take_order_instruction_accounts() -> None:
    """take_order uses the SDK's 23 accounts; WSOL output swaps in the intermediary PDA."""
    order_address = _key(9)
    taker = _key(7)
    ix = limo.take_order_instruction(
        taker=taker,
        order=KNOWN,
        order_address=order_address,
        input_amount=100,
        min_output_amount=15,
        express_relay_program_id=MAINNET_PROGRAM_ID,
    )
    assert ix.program_id == LIMO_PROGRAM_ID
    assert bytes(ix.data) == hashlib.sha256(b"global:take_order").digest()[:8] + struct.pack(
        "<QQQ", 100, 15, 0
    )
    keys = [m.pubkey for m in ix.accounts]
    assert len(keys) == 23
    authority = limo.limo_router(KNOWN.global_config)
    assert keys[:5] == [taker, KNOWN.maker, KNOWN.global_config, authority, order_address]
    assert keys[10] == limo.intermediary_output_pda(order_address)  # output is WSOL
    assert keys[11] == LIMO_PROGRAM_ID  # no maker output ATA: Anchor "None"
    assert keys[15] == order_address  # permission
    assert keys[16] == config_router_pda(MAINNET_PROGRAM_ID, authority)
    assert ix.accounts[0].is_signer
    assert sum(m.is_signer for m in ix.accounts) == 1


def test_take_order_instructions_create_atas_and_wrap_sol() -> None:
    """The full set creates the taker's ATAs, wraps the SOL output and closes WSOL at the end."""
    taker = _key(7)
    ixs = limo.take_order_instructions(
        taker=taker,
        order=KNOWN,
        order_address=_key(9),
        input_amount=1_500_000_000,
        output_amount=217_500_000,
        express_relay_program_id=MAINNET_PROGRAM_ID,
    )
    programs = [str(i.program_id) for i in ixs]
    assert programs[-2] == str(LIMO_PROGRAM_ID)
    assert bytes(ixs[-1].data) == b"\x09"  # close the taker's WSOL account
    wsol = associated_token_address(taker, WRAPPED_SOL_MINT, TOKEN_PROGRAM_ID)
    transfer = next(i for i in ixs if bytes(i.data)[:4] == b"\x02\x00\x00\x00")
    assert transfer.accounts[1].pubkey == wsol
    assert int.from_bytes(bytes(transfer.data)[4:], "little") == 217_500_000
    with pytest.raises(ValueError, match="input amount"):
        limo.take_order_instructions(
            taker=taker,
            order=KNOWN,
            order_address=_key(9),
            input_amount=KNOWN.remaining_input_amount + 1,
            output_amount=1,
            express_relay_program_id=MAINNET_PROGRAM_ID,
        )
