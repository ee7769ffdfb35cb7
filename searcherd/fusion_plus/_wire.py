"""Strict field readers for already-parsed Fusion+ JSON objects.

Each reader takes the parsed object, a key and the path of the object (for the message) and
returns a typed value or raises `ShapeError` naming the offending path. They are deliberately
stricter than cattrs' default structuring (which would turn `3` into `"3"` or a float into an
int): amounts must be decimal strings of a uint256, chain ids real JSON integers, never bools.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = [
    "ShapeError",
    "as_obj",
    "get_bool",
    "get_int",
    "get_obj",
    "get_str",
    "get_str_list",
    "get_u256",
    "get_uint_any",
    "opt_str",
    "opt_u256",
    "parse_u256",
]

_DEC_RE: Final = re.compile(r"[0-9]{1,78}")
_HEX_RE: Final = re.compile(r"0[xX][0-9a-fA-F]{1,64}")
_U256_MAX: Final = (1 << 256) - 1
_MISSING: Final = object()


class ShapeError(ValueError):
    """A parsed JSON value does not have the shape a Fusion+ message needs."""


def as_obj(value: object, path: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else ShapeError."""
    if not isinstance(value, dict):
        raise ShapeError(f"{path} must be an object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _get(d: dict[str, Any], key: str, path: str) -> Any:
    value = d.get(key, _MISSING)
    if value is _MISSING:
        raise ShapeError(f"{path}.{key} is missing")
    return value


def get_obj(d: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """A required nested object."""
    return as_obj(_get(d, key, path), f"{path}.{key}")


def get_str(d: dict[str, Any], key: str, path: str) -> str:
    """A required string."""
    value = _get(d, key, path)
    if not isinstance(value, str):
        raise ShapeError(f"{path}.{key} must be a string, got {_kind(value)}")
    return value


def opt_str(d: dict[str, Any], key: str, path: str) -> str | None:
    """An optional string: absent or null gives None."""
    if d.get(key) is None:
        return None
    return get_str(d, key, path)


def get_int(d: dict[str, Any], key: str, path: str) -> int:
    """A required JSON integer (not a bool, not a float)."""
    value = _get(d, key, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShapeError(f"{path}.{key} must be an integer, got {_kind(value)}")
    return value


def get_bool(d: dict[str, Any], key: str, path: str, default: bool | None = None) -> bool:
    """A JSON boolean; with `default`, absent or null gives the default."""
    value = d.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise ShapeError(f"{path}.{key} must be a boolean, got {_kind(value)}")
    return value


def parse_u256(value: object, path: str) -> int:
    """A uint256 written as a decimal string (the only form Fusion+ uses for amounts)."""
    if not isinstance(value, str) or not _DEC_RE.fullmatch(value):
        raise ShapeError(f"{path} must be a decimal uint256 string, got {_short(value)}")
    number = int(value)
    if number > _U256_MAX:
        raise ShapeError(f"{path} exceeds uint256")
    return number


def get_u256(d: dict[str, Any], key: str, path: str) -> int:
    """A required decimal-string uint256."""
    return parse_u256(_get(d, key, path), f"{path}.{key}")


def opt_u256(d: dict[str, Any], key: str, path: str) -> int | None:
    """An optional decimal-string uint256: absent or null gives None."""
    if d.get(key) is None:
        return None
    return get_u256(d, key, path)


def get_uint_any(d: dict[str, Any], key: str, path: str) -> int:
    """A required uint256 as a decimal or `0x` hex string (how `timelocks` comes)."""
    value = _get(d, key, path)
    if isinstance(value, str) and _HEX_RE.fullmatch(value):
        return int(value, 16)
    return parse_u256(value, f"{path}.{key}")


def get_str_list(d: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    """An optional list of strings: absent or null gives an empty tuple."""
    value = d.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ShapeError(f"{path}.{key} must be a list of strings")
    return tuple(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
