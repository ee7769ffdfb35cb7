"""Validation of EVM raw bids for legacy Express Relay deployments."""

from __future__ import annotations

from typing import Any

import pytest

from searcherd.svm.evm import (
    EvmBidError,
    check_address,
    check_amount,
    check_hex_bytes,
    raw_bid_payload,
    to_checksum_address,
)

PERMISSION_KEY = (
    "0x0000000000000000000000006b8df01dc9d0f2f3b6a1e2b8c7d4f5a6b7c8d9e0"
    "0000000000000000000000000000000000000000000000000000000000000017"
)
FACTORY = "0xfA119693864b2F185742A409c66f04865c787754"


def test_raw_bid_payload_matches_the_wire_shape() -> None:
    """A valid bid becomes the wire object with the amount as a decimal string."""
    payload = raw_bid_payload(
        amount=10_000_000_000_000_000,
        target_contract=FACTORY,
        target_calldata="0x2608ba81",
        permission_key=PERMISSION_KEY,
        chain_id="op_sepolia",
    )
    assert payload == {
        "amount": "10000000000000000",
        "chain_id": "op_sepolia",
        "permission_key": PERMISSION_KEY,
        "target_contract": FACTORY,
        "target_calldata": "0x2608ba81",
    }


def test_eip55_checksum() -> None:
    """Checksums follow EIP-55 (vectors from the EIP); a wrong mixed-case address is refused."""
    for address in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    ):
        assert to_checksum_address(address.lower()) == address
        assert check_address("target_contract", address) == address
    assert check_address("a", FACTORY.lower()) == FACTORY.lower()  # all-lowercase: no checksum
    with pytest.raises(EvmBidError, match="wrong EIP-55 checksum"):
        check_address("target_contract", "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")


@pytest.mark.parametrize(
    ("field", "kwargs", "message"),
    [
        ("amount", {"amount": -1}, "amount must be within 0..2\\*\\*256-1"),
        ("amount", {"amount": 2**256}, "amount must be within"),
        ("amount", {"amount": "1.5"}, "decimal integer string"),
        ("amount", {"amount": 1.0}, "must be an integer, got float"),
        (
            "target_contract",
            {"target_contract": "0x1234"},
            "target_contract must be a 0x-prefixed 20-byte",
        ),
        (
            "target_calldata",
            {"target_calldata": "2608ba81"},
            "target_calldata must be 0x-prefixed hex",
        ),
        (
            "target_calldata",
            {"target_calldata": "0x123"},
            "target_calldata must be 0x-prefixed hex",
        ),
        ("permission_key", {"permission_key": "0x"}, "permission_key must not be empty"),
        ("chain_id", {"chain_id": ""}, "chain_id must be a non-empty string"),
    ],
)
def test_bad_fields_get_clear_errors(field: str, kwargs: dict[str, Any], message: str) -> None:
    """Each malformed field is an EvmBidError naming it."""
    good: dict[str, Any] = {
        "amount": "1",
        "target_contract": FACTORY,
        "target_calldata": "0x",
        "permission_key": PERMISSION_KEY,
        "chain_id": "op_sepolia",
    }
    with pytest.raises(EvmBidError, match=message) as info:
        raw_bid_payload(**(good | kwargs))
    assert field in str(info.value)


def test_helpers_individually() -> None:
    """check_amount accepts ints and decimal strings; check_hex_bytes accepts empty calldata."""
    assert (
        check_amount(
            "amount",
            "115792089237316195423570985008687907853269984665640564039457584007913129639935",
        )
        == 2**256 - 1
    )
    assert check_hex_bytes("target_calldata", "0x") == "0x"
    with pytest.raises(EvmBidError, match="got a bool"):
        check_amount("amount", True)
