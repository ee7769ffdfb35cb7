"""The on-chain `ExpressRelayMetadata` account: decoder, RPC fetch and a per-program cache.

Bids must name the relayer signer (whose signature slot stays empty) and the relayer fee
receiver. Both live in the Express Relay program's metadata PDA. They change rarely, so the
daemon reads them once over JSON-RPC (`getAccountInfo`) and keeps them; or the config sets
them and no RPC is needed at all.
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import attrs
import httpx
import orjson
import structlog
import trio
from solders.pubkey import Pubkey

from searcherd.svm.programs import anchor_discriminator, metadata_pda

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "METADATA_DISCRIMINATOR",
    "ExpressRelayConstants",
    "ExpressRelayConstantsProvider",
    "ExpressRelayMetadata",
    "MetadataError",
    "decode_metadata",
    "encode_metadata",
    "fetch_metadata",
]

_log = structlog.get_logger(__name__)

METADATA_DISCRIMINATOR: Final = anchor_discriminator("account", "ExpressRelayMetadata")
# discriminator + admin, relayer_signer, fee_receiver_relayer (3 x 32) + 3 x u64 + 1 pubkey
_METADATA_SIZE: Final = 8 + 3 * 32 + 3 * 8 + 32


class MetadataError(Exception):
    """The metadata account could not be fetched or decoded; the message says why."""


@attrs.frozen
class ExpressRelayMetadata:
    """Decoded `ExpressRelayMetadata` (splits are in parts per 10_000 as the program stores)."""

    admin: Pubkey
    relayer_signer: Pubkey
    fee_receiver_relayer: Pubkey
    split_router_default: int
    split_relayer: int
    swap_platform_fee_bps: int
    secondary_relayer_signer: Pubkey


def decode_metadata(data: bytes) -> ExpressRelayMetadata:
    """Decode the account data (discriminator included). Trailing bytes are ignored."""
    if len(data) < _METADATA_SIZE:
        raise MetadataError(
            f"metadata account is {len(data)} bytes, expected at least {_METADATA_SIZE}"
        )
    if data[:8] != METADATA_DISCRIMINATOR:
        raise MetadataError("account is not an ExpressRelayMetadata account (discriminator)")
    router, relayer, platform = struct.unpack_from("<QQQ", data, 104)
    return ExpressRelayMetadata(
        admin=Pubkey.from_bytes(data[8:40]),
        relayer_signer=Pubkey.from_bytes(data[40:72]),
        fee_receiver_relayer=Pubkey.from_bytes(data[72:104]),
        split_router_default=router,
        split_relayer=relayer,
        swap_platform_fee_bps=platform,
        secondary_relayer_signer=Pubkey.from_bytes(data[128:160]),
    )


def encode_metadata(meta: ExpressRelayMetadata) -> bytes:
    """The account bytes of `meta`; the simulator serves these over its fake RPC."""
    return (
        METADATA_DISCRIMINATOR
        + bytes(meta.admin)
        + bytes(meta.relayer_signer)
        + bytes(meta.fee_receiver_relayer)
        + struct.pack(
            "<QQQ", meta.split_router_default, meta.split_relayer, meta.swap_platform_fee_bps
        )
        + bytes(meta.secondary_relayer_signer)
    )


@attrs.frozen
class ExpressRelayConstants:
    """What a bid transaction needs to know about the Express Relay deployment."""

    program_id: Pubkey
    relayer_signer: Pubkey
    fee_receiver_relayer: Pubkey

    @property
    def metadata_address(self) -> Pubkey:
        """The metadata PDA of `program_id`."""
        return metadata_pda(self.program_id)


def _rpc_host(rpc_url: str) -> str:
    # RPC URLs often carry an API key in the path or query: only ever show the host.
    return urlsplit(rpc_url).hostname or "<rpc>"


async def fetch_metadata(
    client: httpx.AsyncClient, rpc_url: str, program_id: Pubkey, *, request_timeout: float = 10.0
) -> ExpressRelayMetadata:
    """Read and decode the metadata account of `program_id` with JSON-RPC `getAccountInfo`.

    Raises `MetadataError` on transport errors, RPC errors, a missing account, an account not
    owned by the program, or undecodable data. Errors name the RPC host, never the full URL.
    """
    address = metadata_pda(program_id)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "getAccountInfo",
        "params": [str(address), {"encoding": "base64", "commitment": "confirmed"}],
    }
    host = _rpc_host(rpc_url)
    try:
        response = await client.post(
            rpc_url,
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
            timeout=request_timeout,
        )
    except httpx.HTTPError as exc:
        raise MetadataError(f"RPC {host}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise MetadataError(f"RPC {host}: HTTP {response.status_code}")
    try:
        reply: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise MetadataError(f"RPC {host}: response is not JSON") from None
    return _metadata_from_reply(reply, host, address, program_id)


def _metadata_from_reply(
    reply: Any, host: str, address: Pubkey, program_id: Pubkey
) -> ExpressRelayMetadata:
    if not isinstance(reply, dict):
        raise MetadataError(f"RPC {host}: unexpected reply")
    if "error" in reply:
        error = reply["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise MetadataError(f"RPC {host}: {message}")
    result = reply.get("result")
    value = result.get("value") if isinstance(result, dict) else None
    if value is None:
        raise MetadataError(f"metadata account {address} not found via {host}")
    if not isinstance(value, dict):
        raise MetadataError(f"RPC {host}: unexpected account value")
    if value.get("owner") != str(program_id):
        raise MetadataError(
            f"metadata account {address} is owned by {value.get('owner')}, not {program_id}"
        )
    data = value.get("data")
    if not (isinstance(data, list) and len(data) == 2 and data[1] == "base64"):
        raise MetadataError(f"RPC {host}: account data is not base64")
    try:
        raw = base64.b64decode(data[0], validate=True)
    except (binascii.Error, TypeError):
        raise MetadataError(f"RPC {host}: account data is not valid base64") from None
    return decode_metadata(raw)


class ExpressRelayConstantsProvider:
    """Resolve and cache `ExpressRelayConstants` for one program.

    When both `relayer_signer` and `fee_receiver_relayer` are configured, no RPC is made.
    Otherwise the first `get()` fetches the metadata account over `rpc_url`; concurrent callers
    wait for that one fetch (a lock), and later calls return the cached value. A failed fetch is
    not cached, so the next call retries.
    """

    def __init__(
        self,
        *,
        program_id: Pubkey,
        rpc_url: str | None = None,
        relayer_signer: Pubkey | None = None,
        fee_receiver_relayer: Pubkey | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._program_id = program_id
        self._rpc_url = rpc_url
        self._client = http_client
        self._timeout = timeout
        self._lock = trio.Lock()
        self._cached: ExpressRelayConstants | None = None
        if relayer_signer is not None and fee_receiver_relayer is not None:
            self._cached = ExpressRelayConstants(program_id, relayer_signer, fee_receiver_relayer)
        elif rpc_url is None:
            raise MetadataError(
                "set both relayer_signer and fee_receiver_relayer, or a Solana RPC URL to read "
                "them from the Express Relay metadata account"
            )

    @classmethod
    def from_mapping(
        cls,
        values: Mapping[str, str],
        *,
        program_id: Pubkey,
        http_client: httpx.AsyncClient | None = None,
    ) -> ExpressRelayConstantsProvider:
        """Build from config strings `rpc_url`, `relayer_signer`, `fee_receiver_relayer`."""

        def key(name: str) -> Pubkey | None:
            text = values.get(name)
            if text is None:
                return None
            try:
                return Pubkey.from_string(text)
            except ValueError:
                raise MetadataError(f"{name}: {text!r} is not a base58 public key") from None

        return cls(
            program_id=program_id,
            rpc_url=values.get("rpc_url"),
            relayer_signer=key("relayer_signer"),
            fee_receiver_relayer=key("fee_receiver_relayer"),
            http_client=http_client,
        )

    @property
    def cached(self) -> ExpressRelayConstants | None:
        """The constants if already known, without any I/O."""
        return self._cached

    async def get(self) -> ExpressRelayConstants:
        """The constants, fetching the metadata account once if needed."""
        if self._cached is not None:
            return self._cached
        # One fetch at a time: a burst of opportunities at startup must not fan out into many
        # identical RPC calls. Re-check under the lock, another task may have filled the cache.
        async with self._lock:
            # (through the property: mypy would otherwise keep the narrowing from above)
            if (cached := self.cached) is not None:
                return cached
            assert self._rpc_url is not None  # guaranteed by __init__
            if self._client is None:
                async with httpx.AsyncClient() as client:
                    meta = await fetch_metadata(
                        client, self._rpc_url, self._program_id, request_timeout=self._timeout
                    )
            else:
                meta = await fetch_metadata(
                    self._client, self._rpc_url, self._program_id, request_timeout=self._timeout
                )
            self._cached = ExpressRelayConstants(
                self._program_id, meta.relayer_signer, meta.fee_receiver_relayer
            )
            _log.info(
                "express_relay_metadata_loaded",
                program_id=str(self._program_id),
                relayer_signer=str(meta.relayer_signer),
                fee_receiver_relayer=str(meta.fee_receiver_relayer),
                rpc_host=_rpc_host(self._rpc_url),
            )
            return self._cached
