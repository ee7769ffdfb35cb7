"""Tight byte packing for Fusion+ order extensions: a bounds-checked reader, a writer, keccak.

The limit-order extension is `abi.encodePacked`-style data: fixed-width big-endian integers,
addresses and byte strings laid end to end. `ByteReader` walks such data and raises
`PackedDataError` (never `IndexError`) the moment a field would run past the end, naming the
field, so a decoder can turn it into a clear message. `ByteWriter` is its mirror for encoders and
refuses values that do not fit their width.
"""

from __future__ import annotations

import re
from typing import Final

from Crypto.Hash import keccak

__all__ = [
    "ByteReader",
    "ByteWriter",
    "PackedDataError",
    "hex_to_bytes",
    "keccak256",
]

_HEX_RE: Final = re.compile(r"(?:0[xX])?([0-9a-fA-F]*)")


class PackedDataError(ValueError):
    """Packed data is truncated, has trailing bytes, or a value does not fit its field."""


def hex_to_bytes(value: str, *, what: str = "hex string") -> bytes:
    """Decode a `0x`-prefixed (or bare) hex string; odd length or non-hex characters raise."""
    match = _HEX_RE.fullmatch(value)
    if match is None:
        raise PackedDataError(f"{what} is not hex")
    digits = match.group(1)
    if len(digits) % 2:
        raise PackedDataError(f"{what} has an odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


def keccak256(data: bytes) -> bytes:
    """The Ethereum keccak-256 digest (not NIST SHA3-256) of `data`."""
    return keccak.new(digest_bits=256, data=data).digest()


class ByteReader:
    """Reads big-endian packed fields from `data`, front to back, with bounds checks."""

    def __init__(self, data: bytes, *, what: str = "data") -> None:
        self._data = data
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        """How many unread bytes are left."""
        return len(self._data) - self._pos

    def take(self, n: int, field: str) -> bytes:
        """The next `n` bytes; raises if fewer than `n` are left."""
        if n < 0 or n > self.remaining:
            raise PackedDataError(
                f"{self._what}: {field} needs {n} bytes at offset {self._pos}, "
                f"only {self.remaining} left"
            )
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self, n_bytes: int, field: str) -> int:
        """The next `n_bytes`-wide unsigned big-endian integer."""
        return int.from_bytes(self.take(n_bytes, field), "big")

    def address(self, field: str) -> str:
        """The next 20 bytes as a lowercase `0x` address."""
        return "0x" + self.take(20, field).hex()

    def rest(self) -> bytes:
        """Everything not read yet (possibly empty)."""
        return self.take(self.remaining, "rest")

    def expect_end(self) -> None:
        """Raise if unread bytes are left: a layout that does not consume all data is wrong."""
        if self.remaining:
            raise PackedDataError(
                f"{self._what}: {self.remaining} unexpected trailing bytes at offset {self._pos}"
            )


class ByteWriter:
    """Appends big-endian packed fields; refuses values that do not fit their width."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def uint(self, value: int, n_bytes: int, field: str) -> ByteWriter:
        """Append `value` as an `n_bytes`-wide unsigned big-endian integer."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise PackedDataError(f"{field} must be an int, got {type(value).__name__}")
        if value < 0 or value >= 1 << (8 * n_bytes):
            raise PackedDataError(f"{field}={value} does not fit in uint{8 * n_bytes}")
        self._parts.append(value.to_bytes(n_bytes, "big"))
        return self

    def raw(self, data: bytes, n_bytes: int | None = None, *, field: str = "bytes") -> ByteWriter:
        """Append `data`; with `n_bytes`, its length must be exactly that."""
        if n_bytes is not None and len(data) != n_bytes:
            raise PackedDataError(f"{field} must be {n_bytes} bytes, got {len(data)}")
        self._parts.append(bytes(data))
        return self

    def address(self, value: str, field: str) -> ByteWriter:
        """Append a `0x` + 40 hex address as 20 bytes."""
        return self.raw(hex_to_bytes(value, what=field), 20, field=field)

    def getvalue(self) -> bytes:
        """Everything written so far."""
        return b"".join(self._parts)
