"""Instruction builders and decoders for Express Relay bids.

Byte layouts follow the Express Relay Anchor IDL: an 8-byte discriminator (sha256 of
`global:<snake_case name>`) followed by the Borsh-encoded arguments, little-endian. Account
order and flags are the IDL's. Decoders are the inverse, used by the bid rules (and so by the
simulator) to read what a transaction really says.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final, Literal

import attrs
from solders.instruction import AccountMeta, Instruction

from searcherd.svm.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    MEMO_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    SYSVAR_INSTRUCTIONS_ID,
    anchor_discriminator,
    associated_token_address,
    config_router_pda,
    metadata_pda,
)

if TYPE_CHECKING:
    from solders.pubkey import Pubkey

__all__ = [
    "SUBMIT_BID_DISCRIMINATOR",
    "SWAP_V2_DISCRIMINATOR",
    "SWAP_V2_POSITIONS",
    "FeeToken",
    "InstructionDecodeError",
    "SubmitBidArgs",
    "SwapV2Accounts",
    "SwapV2Args",
    "close_account_instruction",
    "create_ata_idempotent_instruction",
    "decode_compute_unit_price",
    "decode_submit_bid_args",
    "decode_swap_v2_args",
    "memo_instruction",
    "set_compute_unit_limit_instruction",
    "set_compute_unit_price_instruction",
    "submit_bid_instruction",
    "swap_v2_instruction",
    "sync_native_instruction",
    "system_transfer_instruction",
]

SUBMIT_BID_DISCRIMINATOR: Final = anchor_discriminator("global", "submit_bid")
SWAP_V2_DISCRIMINATOR: Final = anchor_discriminator("global", "swap_v2")

_U64_MAX: Final = 2**64 - 1
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

# Compute budget program instruction tags (a one-byte enum index, not Anchor).
_CB_SET_LIMIT: Final = 2
_CB_SET_PRICE: Final = 3
# SPL token instruction tags.
_TOKEN_CLOSE_ACCOUNT: Final = 9
_TOKEN_SYNC_NATIVE: Final = 17
# Associated token account program: 1 = CreateIdempotent.
_ATA_CREATE_IDEMPOTENT: Final = 1
# System program: 2 = Transfer (u32 tag, then u64 lamports).
_SYSTEM_TRANSFER: Final = 2

#: Which side of a swap pays the fees, as the opportunity's `fee_token` names it.
FeeToken = Literal["searcher_token", "user_token"]
_FEE_TOKEN_INDEX: Final[dict[str, int]] = {"searcher_token": 0, "user_token": 1}
_FEE_TOKEN_NAME: Final[dict[int, FeeToken]] = {0: "searcher_token", 1: "user_token"}


class InstructionDecodeError(ValueError):
    """Instruction data is not what its discriminator or length promises."""


def _u64(name: str, value: int) -> bytes:
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must fit in u64, got {value}")
    return value.to_bytes(8, "little")


def _i64(name: str, value: int) -> bytes:
    if not _I64_MIN <= value <= _I64_MAX:
        raise ValueError(f"{name} must fit in i64, got {value}")
    return value.to_bytes(8, "little", signed=True)


@attrs.frozen
class SubmitBidArgs:
    """Arguments of `submit_bid`: the deadline (Unix seconds) and the bid in lamports."""

    deadline: int
    bid_amount: int

    def encode(self) -> bytes:
        """Borsh bytes of the arguments (without the discriminator)."""
        return _i64("deadline", self.deadline) + _u64("bid_amount", self.bid_amount)


def submit_bid_instruction(
    *,
    program_id: Pubkey,
    searcher: Pubkey,
    relayer_signer: Pubkey,
    permission: Pubkey,
    router: Pubkey,
    fee_receiver_relayer: Pubkey,
    deadline: int,
    bid_amount: int,
) -> Instruction:
    """The Express Relay `submit_bid` instruction of an on-chain (limo) bid.

    Accounts in IDL order: searcher (signer, writable), relayer signer (signer), permission
    (the order address), router (writable), config router PDA, metadata PDA (writable), relayer
    fee receiver (writable), system program, sysvar instructions. The PDAs are derived from
    `program_id`, so staging bids point at staging accounts.
    """
    accounts = [
        AccountMeta(searcher, is_signer=True, is_writable=True),
        AccountMeta(relayer_signer, is_signer=True, is_writable=False),
        AccountMeta(permission, is_signer=False, is_writable=False),
        AccountMeta(router, is_signer=False, is_writable=True),
        AccountMeta(config_router_pda(program_id, router), is_signer=False, is_writable=False),
        AccountMeta(metadata_pda(program_id), is_signer=False, is_writable=True),
        AccountMeta(fee_receiver_relayer, is_signer=False, is_writable=True),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
        AccountMeta(SYSVAR_INSTRUCTIONS_ID, is_signer=False, is_writable=False),
    ]
    data = SUBMIT_BID_DISCRIMINATOR + SubmitBidArgs(deadline, bid_amount).encode()
    return Instruction(program_id, data, accounts)


def decode_submit_bid_args(data: bytes) -> SubmitBidArgs:
    """Read `submit_bid` arguments from instruction data (discriminator included)."""
    if not data.startswith(SUBMIT_BID_DISCRIMINATOR) or len(data) < 24:
        raise InstructionDecodeError("Invalid submit_bid instruction data")
    deadline, amount = struct.unpack_from("<qQ", data, 8)
    return SubmitBidArgs(deadline, amount)


@attrs.frozen
class SwapV2Args:
    """Arguments of `swap_v2` (amounts in token units, fees in parts per million)."""

    deadline: int
    amount_searcher: int
    amount_user: int
    referral_fee_ppm: int
    fee_token: FeeToken
    swap_platform_fee_ppm: int

    def encode(self) -> bytes:
        """Borsh bytes of the arguments (the fee token is a one-byte enum index)."""
        return (
            _i64("deadline", self.deadline)
            + _u64("amount_searcher", self.amount_searcher)
            + _u64("amount_user", self.amount_user)
            + _u64("referral_fee_ppm", self.referral_fee_ppm)
            + bytes([_FEE_TOKEN_INDEX[self.fee_token]])
            + _u64("swap_platform_fee_ppm", self.swap_platform_fee_ppm)
        )


def decode_swap_v2_args(data: bytes) -> SwapV2Args:
    """Read `swap_v2` arguments from instruction data (discriminator included)."""
    if not data.startswith(SWAP_V2_DISCRIMINATOR) or len(data) < 8 + 41:
        raise InstructionDecodeError("Invalid swap instruction data")
    deadline, amount_searcher, amount_user, referral = struct.unpack_from("<qQQQ", data, 8)
    fee_index = data[40]
    if fee_index not in _FEE_TOKEN_NAME:
        raise InstructionDecodeError(f"Invalid swap instruction data: fee token {fee_index}")
    (platform,) = struct.unpack_from("<Q", data, 41)
    return SwapV2Args(
        deadline, amount_searcher, amount_user, referral, _FEE_TOKEN_NAME[fee_index], platform
    )


@attrs.frozen
class SwapV2Accounts:
    """The 17 accounts of `swap_v2`, in IDL order (see `swap_v2_instruction`)."""

    searcher: Pubkey
    user: Pubkey
    searcher_ta_mint_searcher: Pubkey
    searcher_ta_mint_user: Pubkey
    user_ata_mint_searcher: Pubkey
    user_ata_mint_user: Pubkey
    router_fee_receiver_ta: Pubkey
    relayer_fee_receiver_ata: Pubkey
    express_relay_fee_receiver_ata: Pubkey
    mint_searcher: Pubkey
    mint_user: Pubkey
    mint_fee: Pubkey
    token_program_searcher: Pubkey
    token_program_user: Pubkey
    token_program_fee: Pubkey
    express_relay_metadata: Pubkey
    relayer_signer: Pubkey


# Position of each swap_v2 account, used by the rules to read accounts back.
SWAP_V2_POSITIONS: Final = {f.name: i for i, f in enumerate(attrs.fields(SwapV2Accounts))}
# (is_signer, is_writable) per position, straight from the IDL.
_SWAP_V2_FLAGS: Final = (
    (True, False),  # searcher
    (True, False),  # user
    *((False, True),) * 7,  # the seven token accounts
    *((False, False),) * 7,  # three mints, three token programs, metadata
    (True, False),  # relayer signer
)
# (field name, is_signer, is_writable) per position, computed once for the builder.
_SWAP_V2_LAYOUT: Final = tuple(
    (name, signer, writable)
    for name, (signer, writable) in zip(SWAP_V2_POSITIONS, _SWAP_V2_FLAGS, strict=True)
)


def swap_v2_instruction(
    *, program_id: Pubkey, accounts: SwapV2Accounts, args: SwapV2Args
) -> Instruction:
    """The Express Relay `swap_v2` instruction with accounts in IDL order."""
    keys = [
        AccountMeta(getattr(accounts, name), is_signer=signer, is_writable=writable)
        for name, signer, writable in _SWAP_V2_LAYOUT
    ]
    return Instruction(program_id, SWAP_V2_DISCRIMINATOR + args.encode(), keys)


def set_compute_unit_price_instruction(micro_lamports: int) -> Instruction:
    """`SetComputeUnitPrice`: the priority fee in micro-lamports per compute unit."""
    return Instruction(
        COMPUTE_BUDGET_PROGRAM_ID,
        bytes([_CB_SET_PRICE]) + _u64("compute unit price", micro_lamports),
        [],
    )


def set_compute_unit_limit_instruction(units: int) -> Instruction:
    """`SetComputeUnitLimit`: the compute unit budget of the transaction."""
    if not 0 <= units < 2**32:
        raise ValueError(f"compute unit limit must fit in u32, got {units}")
    return Instruction(
        COMPUTE_BUDGET_PROGRAM_ID, bytes([_CB_SET_LIMIT]) + units.to_bytes(4, "little"), []
    )


def decode_compute_unit_price(data: bytes) -> int | None:
    """The price of a `SetComputeUnitPrice` instruction, or None for other budget instructions."""
    if len(data) == 9 and data[0] == _CB_SET_PRICE:
        return int.from_bytes(data[1:], "little")
    return None


def memo_instruction(memo: str) -> Instruction:
    """A Memo program instruction carrying `memo` as UTF-8, with no accounts."""
    return Instruction(MEMO_PROGRAM_ID, memo.encode(), [])


def create_ata_idempotent_instruction(
    *, payer: Pubkey, owner: Pubkey, mint: Pubkey, token_program: Pubkey
) -> Instruction:
    """Create `owner`'s associated token account for `mint` unless it exists; `payer` pays rent."""
    accounts = [
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(
            associated_token_address(owner, mint, token_program),
            is_signer=False,
            is_writable=True,
        ),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM_ID, is_signer=False, is_writable=False),
        AccountMeta(token_program, is_signer=False, is_writable=False),
    ]
    return Instruction(ASSOCIATED_TOKEN_PROGRAM_ID, bytes([_ATA_CREATE_IDEMPOTENT]), accounts)


def system_transfer_instruction(
    *, source: Pubkey, destination: Pubkey, lamports: int
) -> Instruction:
    """System program `Transfer` of `lamports` from `source` (a signer) to `destination`."""
    data = _SYSTEM_TRANSFER.to_bytes(4, "little") + _u64("lamports", lamports)
    return Instruction(
        SYSTEM_PROGRAM_ID,
        data,
        [
            AccountMeta(source, is_signer=True, is_writable=True),
            AccountMeta(destination, is_signer=False, is_writable=True),
        ],
    )


def sync_native_instruction(account: Pubkey, token_program: Pubkey) -> Instruction:
    """SPL token `SyncNative`: credit lamports sent to a wrapped-SOL account as tokens."""
    return Instruction(
        token_program,
        bytes([_TOKEN_SYNC_NATIVE]),
        [AccountMeta(account, is_signer=False, is_writable=True)],
    )


def close_account_instruction(
    *, account: Pubkey, destination: Pubkey, owner: Pubkey, token_program: Pubkey
) -> Instruction:
    """SPL token `CloseAccount`: close `account`, sending its lamports to `destination`."""
    return Instruction(
        token_program,
        bytes([_TOKEN_CLOSE_ACCOUNT]),
        [
            AccountMeta(account, is_signer=False, is_writable=True),
            AccountMeta(destination, is_signer=False, is_writable=True),
            AccountMeta(owner, is_signer=True, is_writable=False),
        ],
    )
