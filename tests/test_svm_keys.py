"""Loading the searcher keypair from secret references, and keeping it out of sight."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from solders.keypair import Keypair

from searcherd._secrets import SecretError
from searcherd.svm.keys import KeyLoadError, SearcherKey, load_searcher_key, throwaway_keypair

if TYPE_CHECKING:
    from pathlib import Path

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _B58[rem] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _write_key(path: Path, raw: bytes, mode: int = 0o600) -> None:
    path.write_text(json.dumps(list(raw)))
    path.chmod(mode)


def test_keypair_file_round_trip(tmp_path: Path) -> None:
    """A solana-keygen style JSON file loads back into the same keypair."""
    keypair = Keypair()
    path = tmp_path / "id.json"
    _write_key(path, bytes(keypair))
    key = load_searcher_key(f"file:{path}")
    assert key.pubkey() == keypair.pubkey()
    message = b"bid"
    assert key.sign_message(message) == keypair.sign_message(message)
    assert key.source == f"file:{path}"


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    """A key file readable by other users is refused, with the fix in the message."""
    keypair = Keypair()
    path = tmp_path / "id.json"
    _write_key(path, bytes(keypair), mode=0o644)
    with pytest.raises(
        KeyLoadError, match=r"readable or writable by other users \(mode 644\); run `chmod 600"
    ):
        load_searcher_key(f"file:{path}")


def test_group_readable_key_file_is_accepted(tmp_path: Path) -> None:
    """Only "other" access is refused: a 0640 file (service group) loads."""
    keypair = Keypair()
    path = tmp_path / "id.json"
    _write_key(path, bytes(keypair), mode=0o640)
    assert load_searcher_key(f"file:{path}").pubkey() == keypair.pubkey()


def test_env_base58_key() -> None:
    """`env:` holds the base58 of the 64-byte keypair, as wallets export it."""
    keypair = Keypair()
    key = load_searcher_key("env:SEARCHER_KEY", {"SEARCHER_KEY": str(keypair)})
    assert key.pubkey() == keypair.pubkey()


def test_credential_key(tmp_path: Path) -> None:
    """`credential:NAME` reads $CREDENTIALS_DIRECTORY/NAME (base58 or JSON both work)."""
    keypair = Keypair()
    (tmp_path / "searcher").write_text(_b58encode(bytes(keypair)) + "\n")
    (tmp_path / "searcher").chmod(0o400)
    key = load_searcher_key("credential:searcher", {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert key.pubkey() == keypair.pubkey()


def test_mismatched_halves_are_refused(tmp_path: Path) -> None:
    """A secret half with someone else's public half is refused in both encodings."""
    raw = bytes(Keypair())[:32] + bytes(Keypair().pubkey())
    path = tmp_path / "id.json"
    _write_key(path, raw)
    with pytest.raises(KeyLoadError, match="public half does not match"):
        load_searcher_key(f"file:{path}")
    with pytest.raises(KeyLoadError, match="public half does not match"):
        load_searcher_key("env:K", {"K": _b58encode(raw)})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2, 3]", "JSON array of 64 integers"),
        ("[" + ",".join(["300"] * 64) + "]", "JSON array of 64 integers"),
        ("[not json", "not a JSON array"),
        ("0OIl-not-base58", "not a base58 64-byte keypair"),
    ],
)
def test_malformed_key_content(tmp_path: Path, content: str, message: str) -> None:
    """Bad content gets a clear error naming the reference, never echoing the content."""
    path = tmp_path / "id.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyLoadError, match=message) as info:
        load_searcher_key(f"file:{path}")
    assert content not in str(info.value)
    assert f"file:{path}" in str(info.value)


def test_missing_file_and_unset_env() -> None:
    """A missing file or unset variable is a SecretError subclass naming the reference."""
    with pytest.raises(KeyLoadError, match="does not exist"):
        load_searcher_key("file:/nonexistent/searcherd-key.json")
    with pytest.raises(SecretError, match="env:NOPE: environment variable NOPE is not set"):
        load_searcher_key("env:NOPE", {})


def test_errors_and_repr_never_show_key_material(tmp_path: Path) -> None:
    """Neither repr/str of the loaded key nor any error contains the secret."""
    keypair = Keypair()
    secret_b58 = str(keypair)
    key = load_searcher_key("env:K", {"K": secret_b58})
    shown = repr(key) + str(key)
    assert str(keypair.pubkey()) in shown
    assert secret_b58 not in shown
    assert str(list(bytes(keypair)[:32]))[1:-1] not in shown
    with pytest.raises(TypeError, match="cannot be pickled"):
        key.__reduce__()
    # A truncated secret in an env var: the error names the reference only.
    with pytest.raises(KeyLoadError) as info:
        load_searcher_key("env:K", {"K": secret_b58[:-5]})
    assert secret_b58[:-5] not in str(info.value)


def test_throwaway_keypair_is_fresh_and_says_so() -> None:
    """throwaway_keypair() makes a new key each time, marked as throwaway."""
    first, second = throwaway_keypair(), throwaway_keypair()
    assert isinstance(first, SearcherKey)
    assert first.pubkey() != second.pubkey()
    assert first.source == "throwaway"
    assert "throwaway" in repr(first)
