"""Assemble, partially sign, serialize and parse bid transactions (legacy and v0).

Express Relay bids are Solana transactions signed by the searcher only: the relayer signer
(and, for swaps, the user) are listed as signers but their signature slots stay all-zero until
the server or the user signs. `partial_sign` does exactly that.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Literal

from solders.message import Message, MessageV0, to_bytes_versioned
from solders.signature import Signature
from solders.transaction import VersionedTransaction

if TYPE_CHECKING:
    from collections.abc import Sequence

    from solders.address_lookup_table_account import AddressLookupTableAccount
    from solders.hash import Hash
    from solders.instruction import Instruction

    from searcherd.svm.keys import Signer

__all__ = [
    "MessageVersion",
    "TransactionDecodeError",
    "compile_message",
    "decode_transaction",
    "encode_transaction",
    "message_bytes",
    "partial_sign",
]

#: `"legacy"` or `0` (v0, needed for address lookup tables).
MessageVersion = Literal["legacy", 0]


class TransactionDecodeError(ValueError):
    """Bytes or base64 text that are not a Solana transaction."""


def compile_message(
    instructions: Sequence[Instruction],
    *,
    payer: Signer,
    blockhash: Hash,
    version: MessageVersion = "legacy",
    lookup_tables: Sequence[AddressLookupTableAccount] = (),
) -> Message | MessageV0:
    """Compile `instructions` into a message with `payer` as fee payer (first signer)."""
    if version == "legacy":
        if lookup_tables:
            raise ValueError("address lookup tables need a v0 message")
        return Message.new_with_blockhash(list(instructions), payer.pubkey(), blockhash)
    return MessageV0.try_compile(payer.pubkey(), list(instructions), list(lookup_tables), blockhash)


def message_bytes(message: Message | MessageV0) -> bytes:
    """The bytes signatures are made over (v0 messages carry their 0x80 version prefix)."""
    return bytes(to_bytes_versioned(message))


def partial_sign(message: Message | MessageV0, signers: Sequence[Signer]) -> VersionedTransaction:
    """Sign `message` with `signers`; every other required signature stays all-zero.

    Raises `ValueError` if a signer is not a required signer of the message (a signature it
    could not use would be a silent bug).
    """
    required = message.account_keys[: message.header.num_required_signatures]
    data = message_bytes(message)
    by_key = {signer.pubkey(): signer for signer in signers}
    unknown = set(by_key) - set(required)
    if unknown:
        raise ValueError(f"not a signer of this message: {', '.join(map(str, unknown))}")
    signatures = [
        by_key[key].sign_message(data) if key in by_key else Signature.default() for key in required
    ]
    return VersionedTransaction.populate(message, signatures)


def encode_transaction(tx: VersionedTransaction) -> str:
    """Standard base64 of the wire bytes, as bids carry it in `transaction`."""
    return base64.b64encode(bytes(tx)).decode("ascii")


def decode_transaction(data: str | bytes) -> VersionedTransaction:
    """Parse a transaction from base64 text or raw wire bytes."""
    if isinstance(data, str):
        try:
            data = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise TransactionDecodeError("transaction is not valid base64") from None
    try:
        return VersionedTransaction.from_bytes(data)
    except ValueError:
        raise TransactionDecodeError("bytes are not a Solana transaction") from None
