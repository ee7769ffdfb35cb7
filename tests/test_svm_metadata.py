"""The ExpressRelayMetadata account: decoding, fetching over JSON-RPC, caching."""

from __future__ import annotations

import base64
import functools
import hashlib
from typing import Any

import httpx
import orjson
import pytest
import trio
from solders.pubkey import Pubkey

from searcherd.svm.metadata import (
    ExpressRelayConstantsProvider,
    ExpressRelayMetadata,
    MetadataError,
    decode_metadata,
    encode_metadata,
)
from searcherd.svm.programs import MAINNET_PROGRAM_ID, STAGING_PROGRAM_ID, metadata_pda

META = ExpressRelayMetadata(
    admin=Pubkey.from_bytes(bytes([1]) * 32),
    relayer_signer=Pubkey.from_bytes(bytes([2]) * 32),
    fee_receiver_relayer=Pubkey.from_bytes(bytes([3]) * 32),
    split_router_default=4000,
    split_relayer=2000,
    swap_platform_fee_bps=10,
    secondary_relayer_signer=Pubkey.from_bytes(bytes([4]) * 32),
)


class FakeRpc:
    """A tiny JSON-RPC server on 127.0.0.1 answering getAccountInfo from a dict."""

    def __init__(self, accounts: dict[str, tuple[str, bytes]], status: int = 200) -> None:
        self.accounts = accounts
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.port = 0

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
        request = orjson.loads(body)
        self.requests.append(request)
        address = request["params"][0]
        if address in self.accounts:
            owner, raw = self.accounts[address]
            value: Any = {
                "owner": owner,
                "data": [base64.b64encode(raw).decode(), "base64"],
                "lamports": 1,
                "executable": False,
            }
        else:
            value = None
        reply = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": request["id"],
                "result": {"context": {"slot": 1}, "value": value},
            }
        )
        await stream.send_all(
            f"HTTP/1.1 {self.status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(reply)}\r\nconnection: close\r\n\r\n".encode()
            + reply
        )
        await stream.aclose()

    async def start(self, nursery: trio.Nursery) -> str:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return f"http://127.0.0.1:{self.port}/rpc/secret-api-key"


def test_metadata_discriminator_and_round_trip() -> None:
    """The account discriminator is sha256("account:ExpressRelayMetadata")[:8]; encode/decode agree."""
    raw = encode_metadata(META)
    assert raw[:8] == hashlib.sha256(b"account:ExpressRelayMetadata").digest()[:8]
    assert raw[:8] == b"\xccK\x85\x07\xaf\xf1\x82\x0b"  # as the SDK hard-codes it
    assert len(raw) == 160
    assert decode_metadata(raw) == META
    assert decode_metadata(raw + bytes(64)) == META  # trailing space is ignored


def test_metadata_decode_errors() -> None:
    """Short data or another account type give a MetadataError."""
    raw = encode_metadata(META)
    with pytest.raises(MetadataError, match="expected at least 160"):
        decode_metadata(raw[:100])
    with pytest.raises(MetadataError, match="discriminator"):
        decode_metadata(bytes(8) + raw[8:])


async def test_provider_fetches_once_and_caches(nursery: trio.Nursery) -> None:
    """Concurrent get() calls trigger one getAccountInfo; later calls use the cache."""
    address = str(metadata_pda(MAINNET_PROGRAM_ID))
    rpc = FakeRpc({address: (str(MAINNET_PROGRAM_ID), encode_metadata(META))})
    url = await rpc.start(nursery)
    async with httpx.AsyncClient() as client:
        provider = ExpressRelayConstantsProvider(
            program_id=MAINNET_PROGRAM_ID, rpc_url=url, http_client=client
        )
        assert provider.cached is None
        results = []

        async def get() -> None:
            results.append(await provider.get())

        async with trio.open_nursery() as inner:
            for _ in range(5):
                inner.start_soon(get)
        assert await provider.get() == results[0]
    constants = results[0]
    assert constants.relayer_signer == META.relayer_signer
    assert constants.fee_receiver_relayer == META.fee_receiver_relayer
    assert constants.metadata_address == metadata_pda(MAINNET_PROGRAM_ID)
    assert len(rpc.requests) == 1
    assert rpc.requests[0]["method"] == "getAccountInfo"
    assert rpc.requests[0]["params"][1]["encoding"] == "base64"


async def test_provider_without_client_opens_its_own(nursery: trio.Nursery) -> None:
    """With no shared client the provider still fetches (one short-lived client)."""
    address = str(metadata_pda(STAGING_PROGRAM_ID))
    url = await FakeRpc({address: (str(STAGING_PROGRAM_ID), encode_metadata(META))}).start(nursery)
    provider = ExpressRelayConstantsProvider(program_id=STAGING_PROGRAM_ID, rpc_url=url)
    assert (await provider.get()).relayer_signer == META.relayer_signer


async def test_configured_constants_need_no_rpc() -> None:
    """With relayer signer and fee receiver configured, no RPC URL is needed."""
    provider = ExpressRelayConstantsProvider.from_mapping(
        {
            "relayer_signer": str(META.relayer_signer),
            "fee_receiver_relayer": str(META.fee_receiver_relayer),
        },
        program_id=MAINNET_PROGRAM_ID,
    )
    assert provider.cached is not None
    assert (await provider.get()).fee_receiver_relayer == META.fee_receiver_relayer


def test_provider_config_errors() -> None:
    """Neither RPC nor both keys, or a malformed key, is a clear config error."""
    with pytest.raises(MetadataError, match="or a Solana RPC URL"):
        ExpressRelayConstantsProvider(
            program_id=MAINNET_PROGRAM_ID, relayer_signer=META.relayer_signer
        )
    with pytest.raises(MetadataError, match="relayer_signer: 'nope' is not a base58 public key"):
        ExpressRelayConstantsProvider.from_mapping(
            {"relayer_signer": "nope"}, program_id=MAINNET_PROGRAM_ID
        )


@pytest.mark.parametrize(
    ("accounts", "status", "message"),
    [
        ({}, 200, "not found via 127.0.0.1"),
        ({"owner": (str(STAGING_PROGRAM_ID), encode_metadata(META))}, 200, "is owned by"),
        ({"owner": (str(MAINNET_PROGRAM_ID), b"short")}, 200, "expected at least 160"),
        ({}, 503, "HTTP 503"),
    ],
)
async def test_fetch_errors_are_clear_and_hide_the_url(
    nursery: trio.Nursery, accounts: dict[str, Any], status: int, message: str
) -> None:
    """A missing/foreign/short account or HTTP error is a MetadataError without the URL's path."""
    # The parametrized key is a placeholder: serve its value at the real metadata address.
    served = {str(metadata_pda(MAINNET_PROGRAM_ID)): v for v in accounts.values()}
    fake = FakeRpc(served, status=status)
    url = await fake.start(nursery)
    async with httpx.AsyncClient() as client:
        provider = ExpressRelayConstantsProvider(
            program_id=MAINNET_PROGRAM_ID, rpc_url=url, http_client=client
        )
        with pytest.raises(MetadataError, match=message) as info:
            await provider.get()
        assert "secret-api-key" not in str(info.value)
        assert provider.cached is None  # a failure is not cached: the next call retries


async def test_unreachable_rpc() -> None:
    """A refused connection is a MetadataError naming only the host."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = ExpressRelayConstantsProvider(
        program_id=MAINNET_PROGRAM_ID, rpc_url=f"http://127.0.0.1:{port}/k"
    )
    with pytest.raises(MetadataError, match=r"^RPC 127.0.0.1: ConnectError$"):
        await provider.get()
