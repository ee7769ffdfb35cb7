"""The searcher's Solana keypair, loaded from a secret reference and never shown.

Accepted forms (whatever the reference kind):

* a JSON array of 64 integers, as `solana-keygen new -o key.json` writes it;
* base58 of the 64-byte secret (secret key ‖ public key), as wallets export it.

Key files (`file:` and `credential:`) must not be readable or writable by "other": a world-
readable key is refused with a message saying how to fix it. solders' own `Keypair` repr
prints key material, so the daemon holds a `SearcherKey`, whose repr shows the public key only.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Protocol

import orjson
import structlog
from solders.keypair import Keypair

from searcherd._secrets import Secret, SecretError, parse_secret_ref, resolve_secret

if TYPE_CHECKING:
    from collections.abc import Mapping

    from solders.pubkey import Pubkey
    from solders.signature import Signature

__all__ = ["KeyLoadError", "SearcherKey", "Signer", "load_searcher_key", "throwaway_keypair"]

_log = structlog.get_logger(__name__)


class KeyLoadError(SecretError):
    """The searcher key cannot be loaded. The message names the reference, never the key."""


class Signer(Protocol):
    """What transaction building needs from a key: its public key and a signing function."""

    def pubkey(self) -> Pubkey:
        """The public key (the searcher's address)."""
        ...

    def sign_message(self, message: bytes) -> Signature:
        """An ed25519 signature of `message`."""
        ...


class SearcherKey:
    """A loaded searcher keypair whose repr and str show only the public key and its source."""

    __slots__ = ("_keypair", "_pubkey", "_source")

    def __init__(self, keypair: Keypair, source: str) -> None:
        self._keypair = keypair
        # Derived once: solders' `Keypair.pubkey()` costs ~20 us and every bid asks for it.
        self._pubkey = keypair.pubkey()
        self._source = source

    def pubkey(self) -> Pubkey:
        """The searcher's public key (fee payer and first signer of every bid)."""
        return self._pubkey

    def sign_message(self, message: bytes) -> Signature:
        """Sign `message` (the serialized transaction message)."""
        return self._keypair.sign_message(message)

    @property
    def source(self) -> str:
        """Where the key came from: the secret reference, or `throwaway`."""
        return self._source

    def __repr__(self) -> str:
        return f"<SearcherKey {self._pubkey} from {self._source}>"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would write the secret somewhere; nothing in the daemon needs it.
        raise TypeError("SearcherKey cannot be pickled")


def throwaway_keypair() -> SearcherKey:
    """A fresh random key for simulator and demo runs, logged as such (public key only)."""
    key = SearcherKey(Keypair(), "throwaway")
    _log.warning("searcher_key_throwaway", pubkey=str(key.pubkey()))
    return key


def _check_file_mode(ref_text: str, environ: Mapping[str, str] | None) -> None:
    ref = parse_secret_ref(ref_text)
    path = ref.path(environ)
    if path is None:
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KeyLoadError(f"{ref}: file {path} does not exist") from None
    except OSError as exc:
        raise KeyLoadError(f"{ref}: cannot stat {path}: {exc.strerror}") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise KeyLoadError(
            f"{ref}: key file {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):03o}); run `chmod 600 {path}`"
        )


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def _b58decode(text: str) -> bytes | None:
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            return None
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return bytes(len(text) - len(text.lstrip("1"))) + body


def _key_bytes(text: str, where: str) -> bytes:
    if text.startswith("["):
        try:
            values = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise KeyLoadError(f"{where}: not a JSON array of 64 integers") from None
        if (
            not isinstance(values, list)
            or len(values) != 64
            or not all(isinstance(v, int) and 0 <= v <= 255 for v in values)
        ):
            raise KeyLoadError(f"{where}: expected a JSON array of 64 integers 0..255")
        return bytes(values)
    raw = _b58decode(text)
    if raw is None or len(raw) != 64:
        raise KeyLoadError(f"{where}: not a base58 64-byte keypair nor a JSON array of 64 integers")
    return raw


def _parse_key(secret: Secret) -> Keypair:
    where = str(secret.ref)
    raw = _key_bytes(secret.reveal(), where)
    # Re-derive the public half from the secret half: a pair of mismatched halves would sign as
    # one address while claiming another.
    keypair = Keypair.from_seed(raw[:32])
    if bytes(keypair.pubkey()) != raw[32:]:
        raise KeyLoadError(f"{where}: the public half does not match the secret half")
    return keypair


def load_searcher_key(ref_text: str, environ: Mapping[str, str] | None = None) -> SearcherKey:
    """Load the searcher keypair from `env:NAME`, `file:PATH` or `credential:NAME`.

    Raises `KeyLoadError` (a `SecretError`) for a malformed reference, a missing or world-
    accessible file, or content that is not a valid keypair. No message includes key bytes.
    """
    _check_file_mode(ref_text, environ)
    try:
        secret = resolve_secret(ref_text, environ)
    except KeyLoadError:
        raise
    except SecretError as exc:
        raise KeyLoadError(str(exc)) from None
    key = SearcherKey(_parse_key(secret), str(secret.ref))
    _log.info("searcher_key_loaded", pubkey=str(key.pubkey()), source=key.source)
    return key
