"""Validation helpers for EVM raw bids (legacy Express Relay deployments, server <= 0.23).

A raw bid is `amount` (wei, a decimal string on the wire), `target_contract` (address),
`target_calldata` and `permission_key` (0x-hex bytes) and `chain_id`. The wire classes live in
the Express Relay messages module; these helpers only make a bad bid fail locally with a clear
message instead of as a server-side parse error with `id: null`.
"""

from __future__ import annotations

import re
from typing import Final

from Crypto.Hash import keccak

__all__ = [
    "EvmBidError",
    "check_address",
    "check_amount",
    "check_hex_bytes",
    "raw_bid_payload",
    "to_checksum_address",
]

_ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_U256_MAX: Final = 2**256 - 1


class EvmBidError(ValueError):
    """An EVM bid field is malformed; the message names the field."""


def to_checksum_address(address: str) -> str:
    """The EIP-55 mixed-case form of a 0x address."""
    if not _ADDRESS.fullmatch(address):
        raise EvmBidError(f"{address!r} is not a 0x-prefixed 20-byte hex address")
    lower = address[2:].lower()
    digest = keccak.new(digest_bits=256, data=lower.encode("ascii")).hexdigest()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower)
    )


def check_address(field: str, value: object) -> str:
    """Validate an address; a mixed-case one must carry a correct EIP-55 checksum."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise EvmBidError(f"{field} must be a 0x-prefixed 20-byte hex address, got {value!r}")
    body = value[2:]
    if body != body.lower() and body != body.upper() and to_checksum_address(value) != value:
        raise EvmBidError(f"{field} {value} has a wrong EIP-55 checksum")
    return value


def check_hex_bytes(field: str, value: object, *, allow_empty: bool = True) -> str:
    """Validate 0x-prefixed hex bytes (an even number of hex digits)."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise EvmBidError(f"{field} must be 0x-prefixed hex bytes, got {value!r:.80}")
    if not allow_empty and value == "0x":
        raise EvmBidError(f"{field} must not be empty")
    return value


def check_amount(field: str, value: object) -> int:
    """Validate a U256 amount given as int or decimal string; returns the int."""
    if isinstance(value, bool):
        raise EvmBidError(f"{field} must be an integer, got a bool")
    if isinstance(value, str):
        if not value.isdigit() or not value.isascii():
            raise EvmBidError(f"{field} must be a decimal integer string, got {value!r:.80}")
        value = int(value)
    if not isinstance(value, int):
        raise EvmBidError(f"{field} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= _U256_MAX:
        raise EvmBidError(f"{field} must be within 0..2**256-1, got {value}")
    return value


def raw_bid_payload(
    *,
    amount: int | str,
    target_contract: str,
    target_calldata: str,
    permission_key: str,
    chain_id: str,
) -> dict[str, str]:
    """Validate an EVM raw bid and return its `params.bid` object (amount as decimal string)."""
    if not isinstance(chain_id, str) or not chain_id:
        raise EvmBidError("chain_id must be a non-empty string")
    return {
        "amount": str(check_amount("amount", amount)),
        "chain_id": chain_id,
        "permission_key": check_hex_bytes("permission_key", permission_key, allow_empty=False),
        "target_contract": check_address("target_contract", target_contract),
        "target_calldata": check_hex_bytes("target_calldata", target_calldata),
    }
