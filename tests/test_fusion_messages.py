"""Tests for `searcherd.fusion_plus.messages`: decoding every Fusion+ frame, encoders, fuzzing.

The fixture frames are realistic, internally consistent messages for one multi-fill order
(USDC on Ethereum -> USDC on Arbitrum, 4 secrets), as the server sends them.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searcherd.fusion_plus.messages import (
    ActiveOrder,
    ActiveOrdersPage,
    FusionDecodeError,
    Immutables,
    LimitOrder,
    OrderAllowanceChange,
    OrderBalanceChange,
    OrderCancelled,
    OrderCreated,
    OrderFilled,
    OrderFilledPartially,
    OrderInvalid,
    PageMeta,
    PublicSecret,
    RpcResponse,
    SecretsError,
    SecretShared,
    SecretsResult,
    decode_frame,
    encode_event,
    encode_request,
    encode_rpc_result,
    parse_date,
)

# Frames as the Fusion+ server sends them (generated with the upstream SDK, see module doc).
ORDER_CREATED = r'{"event":"order_created","result":{"srcChainId":1,"dstChainId":42161,"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","order":{"maker":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","makerAsset":"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48","takerAsset":"0xda0000d4000015a526378bb6fafc650cea5966f8","makerTraits":"33471150795161712739625987854073848363835857078856614580367885933715637927936","salt":"6811370099147435465528388147507277822401048626796964","makingAmount":"100000000","takingAmount":"99000000","receiver":"0x0000000000000000000000000000000000000000"},"extension":"0x000001750000008200000082000000820000008200000041000000000000000003a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa000000000000006955b9000000b400c35002007530003c002710003c000000000064015dd299e03d12fa4293bc03a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa000000000000006955b9000000b400c35002007530003c002710003c000000000064015dd299e03d12fa4293bc03a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000006400000000015dd299e03d12fa4293bc000000036143b53f264e10e8e7a6876abd9b19a2059c474c5d62e58140e832c92a5a000000000000000000000000000000000000000000000000000000000000a4b1000000000000000000000000af88d065e77c8cc2239327c5edb3a432268e5831000000000000000000005af3107a4000000000000000000000002d79883d200000000000000003b8000001c40000000c00000458000003f4000002000000000c","signature":"0xb51ca2b42b8a16bba6dd23204ab0a0796a997042c7bf1d2e9534c731bb2b33a90ae76c095485a85d18a6d1436ea4948aead99fa1bf510328579e372f2d1c66511c","isMakerContract":false,"quoteId":"5c1f0d1e-8a1b-4c55-9c3e-2b7f4c2f9a10","merkleLeaves":["0xa0007178b07c67454652c6c218db198f4c8743bd4dbd6eeab07a4005f916db49","0x120960b212349df085965297827882d51bfc0f81d50ed273a9be5e58768e9990","0xb48bff4a52f73b24ed840863b6c7b63792c514087983aaf69c4779df620d20c0","0xbd3a5e4bc0cc94006099678c1c60adc351cb1fa3e1a04b02e9d6e6620dd39d83"],"secretHashes":["0xb10e2d527612073b26eecdfd717e6a320cf44b4afac2b0732d9fcbe2b7fa0cf6","0x405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace","0xc2575a0e9e593c00f959f8c92f12db2869c3395a3b0502d05e2516446f71f85b","0x8a35acfbc15ff81a39ae7d344fd709f28e8600b4aa8c65c6b64bfe7fe36bd19b"]}}'
ORDER_BALANCE_CHANGE = r'{"event":"order_balance_change","result":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","remainingMakerAmount":"100000000","balance":"60000000"}}'
ORDER_ALLOWANCE_CHANGE = r'{"event":"order_allowance_change","result":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","remainingMakerAmount":"100000000","allowance":"0"}}'
ORDER_FILLED_PARTIALLY = r'{"event":"order_filled_partially","result":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","remainingMakerAmount":"50000000"}}'
SECRET_SHARED = r'{"event":"secret_shared","result":{"idx":1,"secret":"0x0000000000000000000000000000000000000000000000000000000000000002","srcImmutables":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","hashlock":"0x405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace","maker":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","taker":"0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc","token":"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48","amount":"50000000","safetyDeposit":"100000000000000","timelocks":"47644309272820629034847135019436900629301378829185088667583292052254954094604","parameters":"0x"},"dstImmutables":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","hashlock":"0x405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace","maker":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","taker":"0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc","token":"0xaf88d065e77c8cc2239327c5edb3a432268e5831","amount":"49650000","safetyDeposit":"50000000000000","timelocks":"47644309812019562377859930912777202369693992301927977118394741674327159078924","parameters":"0x0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"}}}'
ORDER_FILLED = r'{"event":"order_filled","result":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5"}}'
ORDER_CANCELLED = r'{"event":"order_cancelled","result":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","remainingMakerAmount":"50000000"}}'
ORDER_INVALID = r'{"event":"order_invalid","result":{"orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5"}}'
PING_REQ = r'{"method":"ping"}'
PING_RES = r'{"method":"ping","result":"pong"}'
ALLOWED_REQ = r'{"method":"getAllowedMethods"}'
ALLOWED_RES = r'{"method":"getAllowedMethods","result":["ping","getAllowedMethods","getActiveOrders","getSecrets"]}'
ACTIVE_REQ = r'{"method":"getActiveOrders","param":{"page":1,"limit":100}}'
ACTIVE_RES = r'{"method":"getActiveOrders","result":{"items":[{"quoteId":"5c1f0d1e-8a1b-4c55-9c3e-2b7f4c2f9a10","orderHash":"0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5","signature":"0xb51ca2b42b8a16bba6dd23204ab0a0796a997042c7bf1d2e9534c731bb2b33a90ae76c095485a85d18a6d1436ea4948aead99fa1bf510328579e372f2d1c66511c","deadline":"2026-01-01T00:03:12.000Z","auctionStartDate":"2026-01-01T00:00:00.000Z","auctionEndDate":"2026-01-01T00:03:00.000Z","remainingMakerAmount":"100000000","makerBalance":"100000000","makerAllowance":"115792089237316195423570985008687907853269984665640564039457584007913129639935","order":{"salt":"6811370099147435465528388147507277822401048626796964","maker":"0x70997970c51812dc3a010c7d01b50e0d17dc79c8","receiver":"0x0000000000000000000000000000000000000000","makerAsset":"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48","takerAsset":"0xda0000d4000015a526378bb6fafc650cea5966f8","makerTraits":"33471150795161712739625987854073848363835857078856614580367885933715637927936","makingAmount":"100000000","takingAmount":"99000000"},"srcChainId":1,"dstChainId":42161,"extension":"0x(same as order_created)","isMakerContract":false,"secretHashes":["0xb10e2d527612073b26eecdfd717e6a320cf44b4afac2b0732d9fcbe2b7fa0cf6","0x405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace","0xc2575a0e9e593c00f959f8c92f12db2869c3395a3b0502d05e2516446f71f85b","0x8a35acfbc15ff81a39ae7d344fd709f28e8600b4aa8c65c6b64bfe7fe36bd19b"],"fills":[],"version":"1.2"}],"meta":{"totalItems":1,"itemsPerPage":100,"totalPages":1,"currentPage":1}}}'
SECRETS_REQ = r'{"method":"getSecrets","param":{}}'
SECRETS_RES = r'{"method":"getSecrets","result":{"error":"not allowed"}}'

ORDER_HASH = "0x8ac8e18ec3feaa9d5eac49d0cd5d8edffe03c7400296dc2245958b642d4d59e5"
EVENT_FRAMES = [
    ORDER_CREATED,
    ORDER_BALANCE_CHANGE,
    ORDER_ALLOWANCE_CHANGE,
    ORDER_FILLED_PARTIALLY,
    SECRET_SHARED,
    ORDER_FILLED,
    ORDER_CANCELLED,
    ORDER_INVALID,
]


def _frame(event: str, result: object, key: str = "result") -> bytes:
    return orjson.dumps({"event": event, key: result})


def _created_payload() -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads(ORDER_CREATED)["result"]
    return payload


def _kind(frame: str | bytes) -> str:
    with pytest.raises(FusionDecodeError) as info:
        decode_frame(frame)
    return info.value.kind


class TestEvents:
    def test_order_created_fixture_decodes_exactly(self) -> None:
        """order_created gives chain ids, hash, the 8-field order as ints, leaves and hashes."""
        msg = decode_frame(ORDER_CREATED)
        assert isinstance(msg, OrderCreated)
        assert (msg.src_chain_id, msg.dst_chain_id, msg.order_hash) == (1, 42161, ORDER_HASH)
        assert msg.order == LimitOrder(
            salt=6811370099147435465528388147507277822401048626796964,
            maker="0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            receiver="0x0000000000000000000000000000000000000000",
            maker_asset="0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            taker_asset="0xda0000d4000015a526378bb6fafc650cea5966f8",
            maker_traits=33471150795161712739625987854073848363835857078856614580367885933715637927936,
            making_amount=100000000,
            taking_amount=99000000,
        )
        assert msg.extension is not None
        assert msg.extension.startswith("0x00000175")
        assert msg.signature is not None
        assert msg.signature.endswith("1c")
        assert msg.is_maker_contract is False
        assert msg.quote_id == "5c1f0d1e-8a1b-4c55-9c3e-2b7f4c2f9a10"
        assert len(msg.merkle_leaves) == 4
        assert len(msg.secret_hashes) == 4
        assert msg.secret_hashes[1] == (
            "0x405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace"
        )
        assert not msg.is_solana_source
        assert msg.raw is None

    def test_simple_events_decode_exactly(self) -> None:
        """The six small events decode to their classes with int amounts."""
        assert decode_frame(ORDER_BALANCE_CHANGE) == OrderBalanceChange(
            ORDER_HASH, 100000000, 60000000
        )
        assert decode_frame(ORDER_ALLOWANCE_CHANGE) == OrderAllowanceChange(
            ORDER_HASH, 100000000, 0
        )
        assert decode_frame(ORDER_FILLED_PARTIALLY) == OrderFilledPartially(ORDER_HASH, 50000000)
        assert decode_frame(ORDER_FILLED) == OrderFilled(ORDER_HASH)
        assert decode_frame(ORDER_CANCELLED) == OrderCancelled(ORDER_HASH, 50000000)
        assert decode_frame(ORDER_INVALID) == OrderInvalid(ORDER_HASH)

    def test_secret_shared_joins_on_src_immutables_and_decodes_timelocks(self) -> None:
        """secret_shared exposes order_hash from srcImmutables and both immutables in full."""
        msg = decode_frame(SECRET_SHARED)
        assert isinstance(msg, SecretShared)
        assert msg.order_hash == ORDER_HASH
        s = msg.secret
        assert s.idx == 1
        assert s.secret == "0x" + "00" * 31 + "02"
        src, dst = s.src_immutables, s.dst_immutables
        assert src.hashlock == "0x405787fa12a823e0f2b7631cc41b3ba8828b3321ca811111fa75cd3aa3bb5ace"
        assert src.taker == "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
        assert (src.amount, src.safety_deposit, src.parameters) == (50000000, 10**14, "0x")
        assert (dst.amount, dst.safety_deposit) == (49650000, 5 * 10**13)
        assert dst.token == "0xaf88d065e77c8cc2239327c5edb3a432268e5831"
        assert dst.parameters is not None
        assert len(dst.parameters) == 2 + 2 * 128
        assert hex(src.timelocks) == (
            "0x6955b932000003b8000001c40000000c00000458000003f4000002000000000c"
        )
        tl = src.decoded_timelocks
        assert (tl.deployed_at, tl.src_withdrawal, tl.src_cancellation) == (1767225650, 12, 1012)

    def test_data_key_is_accepted_as_fallback(self) -> None:
        """The stale docs put the payload under `data`; it decodes the same."""
        assert decode_frame(_frame("order_filled", {"orderHash": "0xab"}, key="data")) == (
            OrderFilled("0xab")
        )

    def test_bytes_and_str_frames_decode_alike(self) -> None:
        """A frame given as bytes decodes exactly like the same text."""
        assert decode_frame(ORDER_CREATED.encode()) == decode_frame(ORDER_CREATED)

    def test_single_fill_lists_absent_or_null_are_empty(self) -> None:
        """merkleLeaves / secretHashes absent or null (single-fill orders) give empty tuples."""
        payload = _created_payload()
        del payload["merkleLeaves"]
        payload["secretHashes"] = None
        msg = decode_frame(_frame("order_created", payload))
        assert isinstance(msg, OrderCreated)
        assert (msg.merkle_leaves, msg.secret_hashes) == ((), ())

    def test_solana_source_order_is_flagged_and_kept_raw(self) -> None:
        """srcChainId 501 orders have another schema: flagged, payload kept raw, no crash."""
        payload = {
            "srcChainId": 501,
            "dstChainId": 1,
            "orderHash": "5Hd3Tq2fQ8z",
            "order": {"orderInfo": {"srcToken": "So11111111111111111111111111111111111111112"}},
        }
        msg = decode_frame(_frame("order_created", payload))
        assert isinstance(msg, OrderCreated)
        assert msg.is_solana_source
        assert (msg.order, msg.extension, msg.signature) == (None, None, None)
        assert msg.raw == payload
        assert decode_frame(encode_event(msg)) == msg

    def test_hex_and_decimal_timelocks_both_parse(self) -> None:
        """Immutables.timelocks may be a decimal or 0x-hex string."""
        src: dict[str, Any] = orjson.loads(SECRET_SHARED)["result"]["srcImmutables"]
        as_hex = Immutables.from_json(src | {"timelocks": "0x11111111"}, "src")
        assert as_hex.timelocks == 0x11111111
        assert Immutables.from_json(src | {"timelocks": "286331153"}, "src") == as_hex

    def test_cancelled_without_amount_is_tolerated(self) -> None:
        """order_cancelled with only orderHash (single-chain shape) decodes with amount None."""
        assert decode_frame(_frame("order_cancelled", {"orderHash": "0x1"})) == OrderCancelled(
            "0x1"
        )


class TestErrors:
    def test_non_json_is_not_json(self) -> None:
        """Garbage, invalid UTF-8 and empty frames are kind not_json."""
        assert _kind("not json") == "not_json"
        assert _kind(b"\xff\xfe{") == "not_json"
        assert _kind("") == "not_json"

    def test_unknown_event_names_the_event(self) -> None:
        """The single-chain combined event is not a Fusion+ event: unknown_event."""
        with pytest.raises(FusionDecodeError) as info:
            decode_frame(_frame("order_balance_or_allowance_change", {"orderHash": "0x1"}))
        assert info.value.kind == "unknown_event"
        assert info.value.event == "order_balance_or_allowance_change"

    @pytest.mark.parametrize(
        "frame",
        [
            "[1, 2]",
            '"event"',
            '{"id": 1}',
            '{"event": 5, "result": {}}',
            '{"event": "order_filled"}',
            '{"event": "order_filled", "result": []}',
            '{"event": "order_filled", "result": {"orderHash": 7}}',
            '{"method": 3, "result": 1}',
            '{"method": "ping"}',
        ],
    )
    def test_bad_shapes_are_invalid(self, frame: str) -> None:
        """Non-objects, envelopes without payload and wrongly typed fields are invalid."""
        assert _kind(frame) == "invalid"

    @pytest.mark.parametrize(
        "amount", [100, "1e5", "+5", " 5", "1_000", "-1", "0x10", str(2**256), ""]
    )
    def test_amounts_must_be_decimal_u256_strings(self, amount: object) -> None:
        """Amounts must be plain decimal strings within uint256; the detail names the field."""
        frame = _frame(
            "order_filled_partially", {"orderHash": "0x1", "remainingMakerAmount": amount}
        )
        with pytest.raises(FusionDecodeError) as info:
            decode_frame(frame)
        assert info.value.kind == "invalid"
        assert "remainingMakerAmount" in info.value.detail

    @pytest.mark.parametrize("chain", [1.0, True, "1", None])
    def test_chain_id_must_be_an_integer(self, chain: object) -> None:
        """Chain ids are JSON integers; floats, bools, strings and null are invalid."""
        assert (
            _kind(_frame("order_created", _created_payload() | {"srcChainId": chain})) == "invalid"
        )

    def test_evm_order_created_without_order_is_invalid(self) -> None:
        """An EVM-source order_created must carry the order struct."""
        payload = _created_payload()
        del payload["order"]
        with pytest.raises(FusionDecodeError, match=r"result\.order is missing"):
            decode_frame(_frame("order_created", payload))

    def test_bad_rpc_result_names_the_method(self) -> None:
        """A malformed getActiveOrders result is invalid and carries the method for the waiter."""
        with pytest.raises(FusionDecodeError) as info:
            decode_frame('{"method": "getActiveOrders", "result": {"items": 3}}')
        assert (info.value.kind, info.value.method) == ("invalid", "getActiveOrders")


class TestRpc:
    def test_ping_and_allowed_methods(self) -> None:
        """ping gives "pong"; getAllowedMethods a tuple of names."""
        assert decode_frame(PING_RES) == RpcResponse("ping", "pong")
        assert decode_frame(ALLOWED_RES) == RpcResponse(
            "getAllowedMethods", ("ping", "getAllowedMethods", "getActiveOrders", "getSecrets")
        )

    def test_active_orders_page_decodes_exactly(self) -> None:
        """The getActiveOrders fixture gives a typed page with ISO dates and int balances."""
        msg = decode_frame(ACTIVE_RES)
        assert isinstance(msg, RpcResponse)
        assert isinstance(msg.result, ActiveOrdersPage)
        assert msg.result.meta == PageMeta(
            total_items=1, items_per_page=100, total_pages=1, current_page=1
        )
        (item,) = msg.result.items
        assert item.order_hash == ORDER_HASH
        assert item.version == "1.2"
        assert item.deadline == "2026-01-01T00:03:12.000Z"
        assert parse_date(item.deadline) == 1767225792
        assert parse_date(item.auction_start_date) == 1767225600
        assert item.remaining_maker_amount == item.maker_balance == 100000000
        assert item.maker_allowance == 2**256 - 1
        assert item.order is not None
        assert item.order.taking_amount == 99000000
        assert item.fills == ()
        assert len(item.secret_hashes) == 4

    def test_active_order_numeric_dates_and_string_fills(self) -> None:
        """The OpenAPI shape (numeric dates, fills as plain strings) is accepted too."""
        page = orjson.loads(ACTIVE_RES)["result"]
        item = page["items"][0] | {"deadline": 1767225792000, "fills": ["0xaa", {"txHash": "0xbb"}]}
        msg = decode_frame(encode_rpc_result("getActiveOrders", page | {"items": [item]}))
        assert isinstance(msg, RpcResponse)
        assert isinstance(msg.result, ActiveOrdersPage)
        got = msg.result.items[0]
        assert got.fills == ("0xaa", "0xbb")
        assert parse_date(got.deadline) == 1767225792
        assert parse_date(1767225792) == 1767225792

    def test_solana_active_order_is_kept_raw(self) -> None:
        """A Solana-source active order has no EVM fields: flagged and kept raw."""
        item = {
            "orderHash": "5Hd3",
            "srcChainId": 501,
            "dstChainId": 1,
            "deadline": "2026-01-01T00:00:00Z",
            "auctionStartDate": "2026-01-01T00:00:00Z",
            "auctionEndDate": "2026-01-01T00:00:00Z",
            "remainingMakerAmount": "5",
            "order": {"orderInfo": {}},
        }
        got = ActiveOrder.from_json(item, "item")
        assert got.is_solana_source
        assert got.order is None
        assert got.raw == item

    def test_get_secrets_error_and_success_shapes(self) -> None:
        """getSecrets gives SecretsError for {error} and SecretsResult for the secrets object."""
        assert decode_frame(SECRETS_RES) == RpcResponse("getSecrets", SecretsError("not allowed"))
        immutables = {
            "orderHash": "0x1",
            "hashlock": "0x2",
            "maker": "0x3",
            "taker": "0x4",
            "token": "0x5",
            "amount": "10",
            "safetyDeposit": "1",
            "timelocks": "0x11111111",
        }
        result = {
            "orderType": "SingleFill",
            "secrets": [
                {
                    "idx": 0,
                    "secret": "0x2048b380",
                    "srcImmutables": immutables,
                    "dstImmutables": immutables,
                }
            ],
            "merkleLeaves": ["0xa", "0xb", "0xc"],
            "secretHashes": ["0xd", "0xe", "0xf"],
        }
        msg = decode_frame(orjson.dumps({"method": "getSecrets", "result": result}))
        assert isinstance(msg, RpcResponse)
        assert isinstance(msg.result, SecretsResult)
        (secret,) = msg.result.secrets
        assert secret.src_immutables.parameters is None
        assert secret.src_immutables.timelocks == 0x11111111
        assert msg.result.merkle_leaves == ("0xa", "0xb", "0xc")

    def test_unknown_method_keeps_raw_result(self) -> None:
        """A response to a method we do not model is passed through with its raw result."""
        assert decode_frame('{"method": "newThing", "result": {"a": [1]}}') == RpcResponse(
            "newThing", {"a": [1]}
        )


class TestEncoders:
    def test_requests_match_the_wire_exactly(self) -> None:
        """Requests use singular `param` and no id, byte for byte as the SDK sends them."""
        assert encode_request("ping") == PING_REQ.encode()
        assert encode_request("getAllowedMethods") == ALLOWED_REQ.encode()
        assert encode_request("getActiveOrders", {"page": 1, "limit": 100}) == ACTIVE_REQ.encode()
        assert encode_request("getSecrets", {}) == SECRETS_REQ.encode()

    @pytest.mark.parametrize("param", [{"page": 0}, {"limit": 501}, {"limit": 0}, {"page": True}])
    def test_paging_outside_the_allowed_range_is_refused(self, param: dict[str, object]) -> None:
        """page < 1 or limit outside 1..500 raise before anything is sent."""
        with pytest.raises(ValueError, match=r"page|limit"):
            encode_request("getActiveOrders", param)

    @pytest.mark.parametrize("frame", EVENT_FRAMES)
    def test_every_event_round_trips(self, frame: str) -> None:
        """decode(encode(decode(frame))) equals decode(frame) for every fixture event."""
        msg = decode_frame(frame)
        assert not isinstance(msg, RpcResponse)
        assert decode_frame(encode_event(msg)) == msg

    @pytest.mark.parametrize("frame", [PING_RES, ALLOWED_RES, ACTIVE_RES, SECRETS_RES])
    def test_every_rpc_result_round_trips(self, frame: str) -> None:
        """encode_rpc_result of a decoded typed result decodes back to the same response."""
        msg = decode_frame(frame)
        assert isinstance(msg, RpcResponse)
        assert decode_frame(encode_rpc_result(msg.method, msg.result)) == msg

    def test_event_is_written_under_result(self) -> None:
        """Encoded events use the `result` key (what the SDK reads), not `data`."""
        doc = orjson.loads(encode_event(OrderFilled("0x1")))
        assert doc == {"event": "order_filled", "result": {"orderHash": "0x1"}}


# ---------------------------------------------------------------- property tests

_u256 = st.integers(min_value=0, max_value=2**256 - 1)
_hexs = st.text("0123456789abcdef", max_size=70).map(lambda s: "0x" + s)
_immutables = st.builds(
    Immutables,
    order_hash=_hexs,
    hashlock=_hexs,
    maker=_hexs,
    taker=_hexs,
    token=_hexs,
    amount=_u256,
    safety_deposit=_u256,
    timelocks=_u256,
    parameters=st.none() | _hexs,
)
_events = st.one_of(
    st.builds(OrderInvalid, _hexs),
    st.builds(OrderFilled, _hexs),
    st.builds(OrderFilledPartially, _hexs, _u256),
    st.builds(OrderCancelled, _hexs, st.none() | _u256),
    st.builds(OrderBalanceChange, _hexs, _u256, _u256),
    st.builds(OrderAllowanceChange, _hexs, _u256, _u256),
    st.builds(
        SecretShared,
        st.builds(
            PublicSecret,
            idx=st.integers(0, 2**32),
            secret=_hexs,
            src_immutables=_immutables,
            dst_immutables=_immutables,
        ),
    ),
    st.builds(
        OrderCreated,
        src_chain_id=st.integers(1, 10**6).filter(lambda c: c != 501),
        dst_chain_id=st.integers(1, 10**6),
        order_hash=_hexs,
        order=st.builds(
            LimitOrder,
            salt=_u256,
            maker=_hexs,
            receiver=_hexs,
            maker_asset=_hexs,
            taker_asset=_hexs,
            maker_traits=_u256,
            making_amount=_u256,
            taking_amount=_u256,
        ),
        extension=_hexs,
        signature=_hexs,
        is_maker_contract=st.booleans(),
        quote_id=st.none() | st.text(max_size=10),
        merkle_leaves=st.lists(_hexs, max_size=3).map(tuple),
        secret_hashes=st.lists(_hexs, max_size=3).map(tuple),
    ),
)


_MESSAGE_TYPES = (
    OrderCreated,
    OrderInvalid,
    OrderBalanceChange,
    OrderAllowanceChange,
    OrderFilled,
    OrderFilledPartially,
    OrderCancelled,
    SecretShared,
    RpcResponse,
)


def _assert_message_or_decode_error(frame: bytes | str) -> None:
    outcome: object
    try:
        outcome = decode_frame(frame)
    except FusionDecodeError as exc:
        outcome = exc.kind
    assert isinstance(outcome, _MESSAGE_TYPES) or outcome in {
        "not_json",
        "unknown_event",
        "invalid",
    }


@given(_events)
def test_generated_events_round_trip(event: Any) -> None:
    """Any event the simulator can build decodes back to an equal object."""
    assert decode_frame(encode_event(event)) == event


@given(st.binary(max_size=300) | st.text(max_size=100))
def test_arbitrary_bytes_never_escape(data: bytes | str) -> None:
    """Arbitrary bytes or text give a message or FusionDecodeError, never another exception."""
    _assert_message_or_decode_error(data)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["0x1", "12", "0x11111111", ORDER_HASH]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "orderHash",
        "remainingMakerAmount",
        "balance",
        "allowance",
        "srcChainId",
        "dstChainId",
        "order",
        "extension",
        "signature",
        "idx",
        "secret",
        "srcImmutables",
        "dstImmutables",
        "items",
        "meta",
        "error",
        "orderType",
        "secrets",
        "timelocks",
    ]
)
_payload = st.dictionaries(_keys, _json, max_size=8)
_envelope = st.one_of(
    st.builds(
        lambda e, p, k: {"event": e, k: p},
        st.sampled_from(
            [
                "order_created",
                "order_invalid",
                "order_balance_change",
                "order_allowance_change",
                "order_filled",
                "order_filled_partially",
                "order_cancelled",
                "secret_shared",
                "x",
            ]
        ),
        _payload | _json,
        st.sampled_from(["result", "data"]),
    ),
    st.builds(
        lambda m, r: {"method": m, "result": r},
        st.sampled_from(["ping", "getAllowedMethods", "getActiveOrders", "getSecrets", "other"]),
        _payload | _json,
    ),
    _json,
)


@settings(max_examples=300)
@given(_envelope)
def test_arbitrary_json_never_escapes(doc: Any) -> None:
    """Arbitrary JSON in plausible envelopes gives a message or FusionDecodeError only."""
    _assert_message_or_decode_error(orjson.dumps(doc))
