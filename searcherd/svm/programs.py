"""Solana program ids, well-known accounts and the PDAs Express Relay bids need.

Everything here is a constant or a pure derivation (`find_program_address`), so strategies,
the submitter and the simulator agree on the same addresses without any I/O. The on-chain
`ExpressRelayMetadata` account (relayer signer, relayer fee receiver) is decoded in
`searcherd.svm.metadata`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Final, TypeVar

from solders.pubkey import Pubkey

__all__ = [
    "ASSOCIATED_TOKEN_PROGRAM_ID",
    "COMPUTE_BUDGET_PROGRAM_ID",
    "EXPRESS_RELAY_PROGRAM_IDS",
    "LIMO_PROGRAM_ID",
    "MAINNET_PROGRAM_ID",
    "MEMO_PROGRAM_ID",
    "STAGING_PROGRAM_ID",
    "SYSTEM_PROGRAM_ID",
    "SYSVAR_INSTRUCTIONS_ID",
    "SYSVAR_RENT_ID",
    "TOKEN_2022_PROGRAM_ID",
    "TOKEN_PROGRAM_ID",
    "WRAPPED_SOL_MINT",
    "anchor_discriminator",
    "associated_token_address",
    "config_router_pda",
    "metadata_pda",
    "program_id_for_chain",
]

#: Express Relay program on mainnet (also used by the `local-solana` chain id).
MAINNET_PROGRAM_ID: Final = Pubkey.from_string("PytERJFhAKuNNuaiXkApLfWzwNwSNDACpigT3LwQfou")
#: Express Relay program on the staging deployment (`development-solana`).
STAGING_PROGRAM_ID: Final = Pubkey.from_string("stag1NN9voD7436oFvKmy1kvRZYLLW8drKocSCt2W79")

#: Express Relay program id per chain id, as the official SDK ships them.
EXPRESS_RELAY_PROGRAM_IDS: Final[dict[str, Pubkey]] = {
    "solana": MAINNET_PROGRAM_ID,
    "development-solana": STAGING_PROGRAM_ID,
    "local-solana": MAINNET_PROGRAM_ID,
}

#: Kamino Limo (limit orders), the protocol behind `program: "limo"` opportunities.
LIMO_PROGRAM_ID: Final = Pubkey.from_string("LiMoM9rMhrdYrfzUCxQppvxCSG1FcrUK9G8uLq4A1GF")

SYSTEM_PROGRAM_ID: Final = Pubkey.from_string("11111111111111111111111111111111")
SYSVAR_INSTRUCTIONS_ID: Final = Pubkey.from_string("Sysvar1nstructions1111111111111111111111111")
SYSVAR_RENT_ID: Final = Pubkey.from_string("SysvarRent111111111111111111111111111111111")
COMPUTE_BUDGET_PROGRAM_ID: Final = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
TOKEN_PROGRAM_ID: Final = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID: Final = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ASSOCIATED_TOKEN_PROGRAM_ID: Final = Pubkey.from_string(
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"
)
MEMO_PROGRAM_ID: Final = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
WRAPPED_SOL_MINT: Final = Pubkey.from_string("So11111111111111111111111111111111111111112")

_K = TypeVar("_K", bound=tuple[object, ...])

_METADATA_SEED: Final = b"metadata"
_CONFIG_ROUTER_SEED: Final = b"config_router"


def anchor_discriminator(namespace: str, name: str) -> bytes:
    """The 8-byte Anchor discriminator: sha256(`<namespace>:<name>`)[:8].

    Instructions use namespace `global` and the snake_case name; accounts use `account` and
    the CamelCase struct name.
    """
    return hashlib.sha256(f"{namespace}:{name}".encode()).digest()[:8]


def program_id_for_chain(chain_id: str) -> Pubkey:
    """The Express Relay program id of a known SVM chain id.

    Raises `ValueError` naming the chain and the known ones, so a typo in the config is caught
    at load time rather than as a confusing simulation failure.
    """
    try:
        return EXPRESS_RELAY_PROGRAM_IDS[chain_id]
    except KeyError:
        known = ", ".join(sorted(EXPRESS_RELAY_PROGRAM_IDS))
        raise ValueError(
            f"unknown SVM chain id {chain_id!r} (known: {known}); set the program id explicitly"
        ) from None


# Derivations are pure and `find_program_address` costs 5-15 us (a sha256 per bump tried); a
# swap bid needs up to 14 of them, mostly the same few (our own accounts, the fee receivers).
# So each one is remembered, in dicts bounded first-in first-out: an owner seen once (a
# user's wallet) costs one derivation per bid and is then pushed out by newer ones. Keys are
# the Pubkeys themselves (hashing one is cheap). No lock: two threads racing on a miss at
# worst derive the same address twice.
_CACHE_SIZE: Final = 4096
_pdas: OrderedDict[tuple[Pubkey, ...], Pubkey] = OrderedDict()
_atas: OrderedDict[tuple[Pubkey, Pubkey, Pubkey], Pubkey] = OrderedDict()


def _remember(cache: OrderedDict[_K, Pubkey], key: _K, value: Pubkey) -> None:
    if len(cache) >= _CACHE_SIZE:
        cache.popitem(last=False)  # the oldest entry
    cache[key] = value


def metadata_pda(program_id: Pubkey) -> Pubkey:
    """The `ExpressRelayMetadata` account of an Express Relay program (seed `metadata`)."""
    key = (program_id,)
    found = _pdas.get(key)
    if found is None:
        found = Pubkey.find_program_address([_METADATA_SEED], program_id)[0]
        _remember(_pdas, key, found)
    return found


def config_router_pda(program_id: Pubkey, router: Pubkey) -> Pubkey:
    """The per-router fee split account (seeds `config_router`, router)."""
    key = (program_id, router)
    found = _pdas.get(key)
    if found is None:
        found = Pubkey.find_program_address([_CONFIG_ROUTER_SEED, bytes(router)], program_id)[0]
        _remember(_pdas, key, found)
    return found


def associated_token_address(owner: Pubkey, mint: Pubkey, token_program: Pubkey) -> Pubkey:
    """The associated token account of `owner` for `mint` under `token_program`."""
    key = (owner, mint, token_program)
    found = _atas.get(key)
    if found is None:
        found = Pubkey.find_program_address(
            [bytes(owner), bytes(token_program), bytes(mint)], ASSOCIATED_TOKEN_PROGRAM_ID
        )[0]
        _remember(_atas, key, found)
    return found
