"""Kamino Limo: the `Order` account layout (decode and encode), PDAs and `take_order`.

A `limo` opportunity carries the order account's bytes (424 bytes, 8-byte Anchor discriminator
first). Strategies price it from `decode_order`; the simulator makes realistic orders with
`encode_order`. The bid's router is the Limo PDA authority of the order's global config.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import attrs
from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey

from searcherd.svm.instructions import (
    close_account_instruction,
    create_ata_idempotent_instruction,
    sync_native_instruction,
    system_transfer_instruction,
)
from searcherd.svm.programs import (
    LIMO_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    SYSVAR_INSTRUCTIONS_ID,
    SYSVAR_RENT_ID,
    TOKEN_PROGRAM_ID,
    WRAPPED_SOL_MINT,
    anchor_discriminator,
    associated_token_address,
    config_router_pda,
    metadata_pda,
)

__all__ = [
    "ORDER_DISCRIMINATOR",
    "ORDER_SIZE",
    "TAKE_ORDER_DISCRIMINATOR",
    "LimoOrder",
    "OrderDecodeError",
    "OrderStatus",
    "decode_order",
    "encode_order",
    "event_authority_pda",
    "intermediary_output_pda",
    "limo_router",
    "take_order_instruction",
    "take_order_instructions",
    "vault_pda",
]

ORDER_DISCRIMINATOR: Final = anchor_discriminator("account", "Order")
TAKE_ORDER_DISCRIMINATOR: Final = anchor_discriminator("global", "take_order")

# Layout after the discriminator: 6 pubkeys, 6 u64, 4 u8, 4 padding bytes, 2 u64, 19 u64 padding.
_ORDER_BODY: Final = struct.Struct("<32s32s32s32s32s32sQQQQQQBBBB4sQQ152s")
ORDER_SIZE: Final = 8 + _ORDER_BODY.size  # 424
_U64_MAX: Final = 2**64 - 1


class OrderDecodeError(ValueError):
    """The bytes are not a Limo `Order` account."""


class OrderStatus(enum.IntEnum):
    """`Order.status` as the Limo program stores it."""

    ACTIVE = 0
    FILLED = 1
    CANCELLED = 2


@attrs.frozen
class LimoOrder:
    """A decoded Limo `Order`. Amounts are token base units; timestamps are Unix seconds.

    The maker sells `remaining_input_amount` of `input_mint` and wants, pro rata,
    `expected_output_amount` of `output_mint` for the `initial_input_amount`.
    """

    global_config: Pubkey
    maker: Pubkey
    input_mint: Pubkey
    input_mint_program_id: Pubkey
    output_mint: Pubkey
    output_mint_program_id: Pubkey
    initial_input_amount: int
    expected_output_amount: int
    remaining_input_amount: int
    filled_output_amount: int = 0
    tip_amount: int = 0
    number_of_fills: int = 0
    order_type: int = 0
    #: An `OrderStatus` value; kept as int so an unknown future status still decodes.
    status: int = OrderStatus.ACTIVE
    in_vault_bump: int = 0
    flash_ix_lock: int = 0
    last_updated_timestamp: int = 0
    flash_start_taker_output_balance: int = 0

    @property
    def is_active(self) -> bool:
        """True while the order can still be taken."""
        return self.status == OrderStatus.ACTIVE and self.remaining_input_amount > 0

    def output_for_input(self, input_amount: int) -> int:
        """The output the maker expects for `input_amount`, rounded up like the SDK example."""
        if self.initial_input_amount == 0:
            raise ValueError("order has a zero initial input amount")
        return -(-self.expected_output_amount * input_amount // self.initial_input_amount)


def decode_order(data: bytes) -> LimoOrder:
    """Decode the `order` bytes of a limo opportunity (discriminator included).

    Raises `OrderDecodeError` for a wrong length or discriminator.
    """
    if len(data) != ORDER_SIZE:
        raise OrderDecodeError(f"Limo order account is {len(data)} bytes, expected {ORDER_SIZE}")
    if data[:8] != ORDER_DISCRIMINATOR:
        raise OrderDecodeError("not a Limo Order account (discriminator mismatch)")
    f = _ORDER_BODY.unpack_from(data, 8)
    return LimoOrder(
        global_config=Pubkey.from_bytes(f[0]),
        maker=Pubkey.from_bytes(f[1]),
        input_mint=Pubkey.from_bytes(f[2]),
        input_mint_program_id=Pubkey.from_bytes(f[3]),
        output_mint=Pubkey.from_bytes(f[4]),
        output_mint_program_id=Pubkey.from_bytes(f[5]),
        initial_input_amount=f[6],
        expected_output_amount=f[7],
        remaining_input_amount=f[8],
        filled_output_amount=f[9],
        tip_amount=f[10],
        number_of_fills=f[11],
        order_type=f[12],
        status=f[13],
        in_vault_bump=f[14],
        flash_ix_lock=f[15],
        # f[16] is 4 bytes of padding
        last_updated_timestamp=f[17],
        flash_start_taker_output_balance=f[18],
    )


def encode_order(order: LimoOrder) -> bytes:
    """The exact account bytes of `order` (zero padding); `decode_order` is its inverse."""
    for field in attrs.fields(LimoOrder):
        value = getattr(order, field.name)
        if isinstance(value, int) and not 0 <= value <= _U64_MAX:
            raise ValueError(f"{field.name} does not fit its field: {value}")
    small = (order.order_type, order.status, order.in_vault_bump, order.flash_ix_lock)
    if any(not 0 <= v <= 255 for v in small):
        raise ValueError("order_type, status, in_vault_bump and flash_ix_lock are u8")
    return ORDER_DISCRIMINATOR + _ORDER_BODY.pack(
        bytes(order.global_config),
        bytes(order.maker),
        bytes(order.input_mint),
        bytes(order.input_mint_program_id),
        bytes(order.output_mint),
        bytes(order.output_mint_program_id),
        order.initial_input_amount,
        order.expected_output_amount,
        order.remaining_input_amount,
        order.filled_output_amount,
        order.tip_amount,
        order.number_of_fills,
        *small,
        bytes(4),
        order.last_updated_timestamp,
        order.flash_start_taker_output_balance,
        bytes(152),
    )


def limo_router(global_config: Pubkey, limo_program_id: Pubkey = LIMO_PROGRAM_ID) -> Pubkey:
    """The router of a limo bid: Limo's PDA authority (seeds `authority`, global config)."""
    return Pubkey.find_program_address([b"authority", bytes(global_config)], limo_program_id)[0]


def vault_pda(
    global_config: Pubkey, input_mint: Pubkey, limo_program_id: Pubkey = LIMO_PROGRAM_ID
) -> Pubkey:
    """Limo's escrow vault of `input_mint` under `global_config`."""
    seeds = [b"escrow_vault", bytes(global_config), bytes(input_mint)]
    return Pubkey.find_program_address(seeds, limo_program_id)[0]


def event_authority_pda(limo_program_id: Pubkey = LIMO_PROGRAM_ID) -> Pubkey:
    """Limo's Anchor event authority (seed `__event_authority`)."""
    return Pubkey.find_program_address([b"__event_authority"], limo_program_id)[0]


def intermediary_output_pda(
    order_address: Pubkey, limo_program_id: Pubkey = LIMO_PROGRAM_ID
) -> Pubkey:
    """Limo's intermediary account for orders whose output is wrapped SOL."""
    return Pubkey.find_program_address([b"intermediary", bytes(order_address)], limo_program_id)[0]


def take_order_instruction(
    *,
    taker: Pubkey,
    order: LimoOrder,
    order_address: Pubkey,
    input_amount: int,
    min_output_amount: int,
    express_relay_program_id: Pubkey,
    limo_program_id: Pubkey = LIMO_PROGRAM_ID,
    tip_amount_permissionless_taking: int = 0,
) -> Instruction:
    """The Limo `take_order` instruction alone, accounts as in the SDK's generated builder.

    For a wrapped-SOL output the intermediary PDA replaces the maker's output ATA; absent
    optional accounts are the Limo program id (Anchor's "None").
    """
    pda_authority = limo_router(order.global_config, limo_program_id)
    wsol_out = order.output_mint == WRAPPED_SOL_MINT
    taker_input_ata = associated_token_address(taker, order.input_mint, order.input_mint_program_id)
    taker_output_ata = associated_token_address(
        taker, order.output_mint, order.output_mint_program_id
    )
    if wsol_out:
        intermediary = AccountMeta(
            intermediary_output_pda(order_address, limo_program_id), False, True
        )
        maker_output = AccountMeta(limo_program_id, False, False)
    else:
        intermediary = AccountMeta(limo_program_id, False, False)
        maker_output = AccountMeta(
            associated_token_address(order.maker, order.output_mint, order.output_mint_program_id),
            False,
            True,
        )
    accounts = [
        AccountMeta(taker, True, True),
        AccountMeta(order.maker, False, True),
        AccountMeta(order.global_config, False, True),
        AccountMeta(pda_authority, False, True),
        AccountMeta(order_address, False, True),
        AccountMeta(order.input_mint, False, False),
        AccountMeta(order.output_mint, False, False),
        AccountMeta(vault_pda(order.global_config, order.input_mint, limo_program_id), False, True),
        AccountMeta(taker_input_ata, False, True),
        AccountMeta(taker_output_ata, False, True),
        intermediary,
        maker_output,
        AccountMeta(express_relay_program_id, False, False),
        AccountMeta(metadata_pda(express_relay_program_id), False, False),
        AccountMeta(SYSVAR_INSTRUCTIONS_ID, False, False),
        AccountMeta(order_address, False, False),  # permission = the order itself
        AccountMeta(config_router_pda(express_relay_program_id, pda_authority), False, False),
        AccountMeta(order.input_mint_program_id, False, False),
        AccountMeta(order.output_mint_program_id, False, False),
        AccountMeta(SYSVAR_RENT_ID, False, False),
        AccountMeta(SYSTEM_PROGRAM_ID, False, False),
        AccountMeta(event_authority_pda(limo_program_id), False, False),
        AccountMeta(limo_program_id, False, False),
    ]
    data = TAKE_ORDER_DISCRIMINATOR + struct.pack(
        "<QQQ", input_amount, min_output_amount, tip_amount_permissionless_taking
    )
    return Instruction(limo_program_id, data, accounts)


def take_order_instructions(
    *,
    taker: Pubkey,
    order: LimoOrder,
    order_address: Pubkey,
    input_amount: int,
    output_amount: int,
    express_relay_program_id: Pubkey,
    limo_program_id: Pubkey = LIMO_PROGRAM_ID,
) -> list[Instruction]:
    """Everything a taker needs to fill `order`, as the SDK's `LimoClient.take_order_ix`.

    Creates the taker's input and output token accounts (and the maker's output ATA) when
    missing, wraps `output_amount` lamports when the output is wrapped SOL, and closes the
    taker's wrapped-SOL account at the end. The `submit_bid` instruction is not included.
    """
    if not 0 < input_amount <= order.remaining_input_amount:
        raise ValueError(
            f"input amount {input_amount} must be in 1..{order.remaining_input_amount}"
        )
    ixs: list[Instruction] = []
    close: list[Instruction] = []
    wsol_ata = associated_token_address(taker, WRAPPED_SOL_MINT, TOKEN_PROGRAM_ID)
    ixs.append(
        create_ata_idempotent_instruction(
            payer=taker,
            owner=taker,
            mint=order.input_mint,
            token_program=order.input_mint_program_id,
        )
    )
    if order.input_mint == WRAPPED_SOL_MINT:
        close.append(
            close_account_instruction(
                account=wsol_ata, destination=taker, owner=taker, token_program=TOKEN_PROGRAM_ID
            )
        )
    ixs.append(
        create_ata_idempotent_instruction(
            payer=taker,
            owner=taker,
            mint=order.output_mint,
            token_program=order.output_mint_program_id,
        )
    )
    if order.output_mint == WRAPPED_SOL_MINT:
        if output_amount > 0:
            ixs.append(
                system_transfer_instruction(
                    source=taker, destination=wsol_ata, lamports=output_amount
                )
            )
            ixs.append(sync_native_instruction(wsol_ata, TOKEN_PROGRAM_ID))
        close.append(
            close_account_instruction(
                account=wsol_ata, destination=taker, owner=taker, token_program=TOKEN_PROGRAM_ID
            )
        )
    else:
        ixs.append(
            create_ata_idempotent_instruction(
                payer=taker,
                owner=order.maker,
                mint=order.output_mint,
                token_program=order.output_mint_program_id,
            )
        )
    ixs.append(
        take_order_instruction(
            taker=taker,
            order=order,
            order_address=order_address,
            input_amount=input_amount,
            min_output_amount=output_amount,
            express_relay_program_id=express_relay_program_id,
            limo_program_id=limo_program_id,
        )
    )
    return ixs + close
