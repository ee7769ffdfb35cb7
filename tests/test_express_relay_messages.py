"""Tests for the Express Relay wire messages: decoding, encoding and round trips."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from searcherd.express_relay._sim_codec import (
    CancelBidRequest,
    ClientFrameError,
    PostBidRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    bid_status_to_json,
    decode_client_frame,
    encode_server_message,
    opportunity_to_json,
)
from searcherd.express_relay.messages import (
    BidStatus,
    BidStatusUpdate,
    EvmBidWire,
    EvmOpportunity,
    ExpressRelayDecodeError,
    LimoOpportunity,
    OnChainBidWire,
    OpportunityDelete,
    PostBidResult,
    Response,
    ServerMessage,
    SvmChainUpdate,
    SwapBidWire,
    SwapOpportunity,
    TokenAccountInitializationConfigs,
    TokenAmount,
    TokensSearcherSpecified,
    TokensUserSpecified,
    decode_bid_status_http,
    decode_http_error,
    decode_opportunities_http,
    decode_post_bid_http,
    decode_server_frame,
    encode_cancel_bid,
    encode_post_bid,
    encode_subscribe,
    encode_unsubscribe,
)

SIG = "5NPkhCfNoYhzH7WnaTx4Jk5Ybs1FYknmnSDcxg7zfADCKy2zUuWfCvcJqX17JEoxjXmQdsdBf9FopnKsMo1kg3Zs"
BID_ID = "0f8e2e61-3a7c-4d58-9b0e-6f1c2d9a4b77"
TX_B64 = base64.b64encode(b"\x01" + bytes(64) + b"tx").decode()
PK = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"

SWAP = SwapOpportunity(
    opportunity_id="d3c4a1f0-7b2e-4c8a-9f61-2a5b0e9c7d13",
    chain_id="solana",
    creation_time=1745500000123456,
    version="v1",
    user_wallet_address="3Z3wCgpzP1fccTQvJM9mNBcDVc5kLxLz32UvLcnQz126",
    user_mint_user_balance=2**63 + 5,
    permission_account="5DU1gUGwJo7Nw5Bs2kJz3NWkqEo1bEexLjJbPCDM5w3G",
    router_account="EqkiZo13ikh11HxtXCsbVbGASWQqCbd85yYUET9Kouvg",
    referral_fee_ppm=0,
    platform_fee_ppm=1000,
    fee_token="user_token",
    tokens=TokensUserSpecified(PK, PK, 999000000, 1000000000, PK, PK),
    token_account_initialization_configs=TokenAccountInitializationConfigs(
        "searcher_payer", "user_payer", "unneeded", "unneeded", "unneeded"
    ),
    cancellable=True,
    minimum_deadline=1745500010,
    memo=None,
    profile_id=None,
    referral_fee_bps=0,
    platform_fee_bps=10,
)
LIMO = LimoOpportunity(
    opportunity_id="6a1d9c2e-5f3b-4e7a-8c0d-1b2a3c4d5e6f",
    chain_id="solana",
    creation_time=1745500001654321,
    version="v1",
    order=bytes(range(256)) + bytes(168),
    order_address=PK,
    slot=334410293,
)
EVM = EvmOpportunity(
    opportunity_id="beedbeed-0e42-400f-a8ef-d78aa5422252",
    chain_id="op_sepolia",
    creation_time=1727000000123456,
    version="v1",
    permission_key=bytes.fromhex(
        "00" * 12 + "6b8df01dc9d0f2f3b6a1e2b8c7d4f5a6b7c8d9e0" + "00" * 31 + "17"
    ),
    target_contract="0x6b8df01dc9d0f2f3b6a1e2b8c7d4f5a6b7c8d9e0",
    target_calldata=bytes.fromhex("8b1f6e2b" + "00" * 31 + "17"),
    target_call_value=0,
    sell_tokens=(TokenAmount("0x5fd84259d66cd46123540766be93dfe6d43130d7", 2500000000),),
    buy_tokens=(TokenAmount("0x4200000000000000000000000000000000000006", 2**255 + 1),),
)


def _swap_json(**changes: Any) -> dict[str, Any]:
    d = opportunity_to_json(SWAP)
    d.update(changes)
    return d


def _push(opp: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "new_opportunity", "opportunity": opp})


class TestServerFrames:
    def test_swap_opportunity_decodes_with_big_ints(self) -> None:
        """A swap opportunity decodes with u64 amounts above 2^53 kept exact as ints."""
        msg = decode_server_frame(_push(_swap_json()))
        assert msg == SWAP
        assert isinstance(msg, SwapOpportunity)
        assert msg.user_mint_user_balance == 2**63 + 5

    def test_searcher_side_tokens(self) -> None:
        """``side_specified: searcher`` yields :class:`TokensSearcherSpecified`."""
        tokens = {"side_specified": "searcher", "searcher_token": PK, "searcher_amount": 7,
                  "user_token": PK, "token_program_searcher": PK, "token_program_user": PK}  # fmt: skip
        msg = decode_server_frame(_push(_swap_json(tokens=tokens)))
        assert isinstance(msg, SwapOpportunity)
        assert msg.tokens == TokensSearcherSpecified(PK, 7, PK, PK, PK)

    def test_limo_order_is_bytes(self) -> None:
        """A limo opportunity's base64 ``order`` is decoded to bytes."""
        msg = decode_server_frame(encode_server_message(LIMO))
        assert msg == LIMO
        assert isinstance(msg, LimoOpportunity)
        assert len(msg.order) == 424

    def test_evm_opportunity_by_permission_key(self) -> None:
        """An opportunity without ``program`` but with ``permission_key`` is EVM, U256 as ints."""
        msg = decode_server_frame(encode_server_message(EVM))
        assert msg == EVM
        assert isinstance(msg, EvmOpportunity)
        assert msg.buy_tokens[0].amount == 2**255 + 1

    def test_unknown_program_and_version(self) -> None:
        """Unknown programs and versions are distinct error kinds, not crashes."""
        with pytest.raises(ExpressRelayDecodeError) as e1:
            decode_server_frame(_push(_swap_json(program="dca")))
        assert e1.value.kind == "unknown_program"
        with pytest.raises(ExpressRelayDecodeError) as e2:
            decode_server_frame(_push(_swap_json(version="v2")))
        assert e2.value.kind == "unknown_version"

    @pytest.mark.parametrize(
        "change",
        [
            {"user_mint_user_balance": "5"},
            {"user_mint_user_balance": 5.0},
            {"cancellable": 1},
            {"tokens": {"side_specified": "both"}},
            {"token_account_initialization_configs": []},
            {"opportunity_id": None},
        ],
    )
    def test_invalid_field_values(self, change: dict[str, Any]) -> None:
        """Wrong scalar types are rejected as ``invalid`` instead of being coerced."""
        with pytest.raises(ExpressRelayDecodeError) as e:
            decode_server_frame(_push(_swap_json(**change)))
        assert e.value.kind == "invalid"

    def test_missing_field_is_invalid(self) -> None:
        """A missing required field is reported by name."""
        d = _swap_json()
        del d["router_account"]
        with pytest.raises(ExpressRelayDecodeError) as e:
            decode_server_frame(_push(d))
        assert (e.value.kind, "router_account" in e.value.detail) == ("invalid", True)

    def test_extra_keys_are_ignored(self) -> None:
        """New server fields do not break decoding (forward compatibility)."""
        assert decode_server_frame(_push(_swap_json(new_field=[1, 2]))) == SWAP

    def test_not_json_and_unknown_type(self) -> None:
        """Garbage is ``not_json``; valid JSON of another type is ``unknown_type``."""
        with pytest.raises(ExpressRelayDecodeError) as e1:
            decode_server_frame(b"{nope")
        assert e1.value.kind == "not_json"
        with pytest.raises(ExpressRelayDecodeError) as e2:
            decode_server_frame('{"type": "quote_request"}')
        assert e2.value.kind == "unknown_type"
        with pytest.raises(ExpressRelayDecodeError) as e3:
            decode_server_frame("[1, 2]")
        assert e3.value.kind == "invalid"

    @pytest.mark.parametrize(
        ("bid_status", "expected"),
        [
            ({"type": "lost", "result": None}, BidStatus("lost")),
            ({"type": "failed", "result": SIG, "reason": None}, BidStatus("failed", SIG)),
            ({"type": "won", "result": "0xab", "index": 1}, BidStatus("won", "0xab", index=1)),
            ({"type": "teleported", "result": SIG}, BidStatus("teleported", SIG)),
        ],
    )
    def test_bid_status_variants(self, bid_status: dict[str, Any], expected: BidStatus) -> None:
        """Null results/reasons are valid and unknown statuses are kept, not rejected."""
        frame = orjson.dumps(
            {"type": "bid_status_update", "status": {"id": BID_ID, "bid_status": bid_status}}
        )
        assert decode_server_frame(frame) == BidStatusUpdate(BID_ID, expected)

    def test_status_flags(self) -> None:
        """``is_final`` follows the server's concluded set; ``is_known`` flags new statuses."""
        assert BidStatus("won").is_final
        assert BidStatus("submission_failed").is_final
        assert not BidStatus("awaiting_signature").is_final
        assert BidStatus("pending").is_known
        assert not BidStatus("teleported").is_known
        assert not BidStatus("teleported").is_final

    def test_responses(self) -> None:
        """Success, post_bid success, error and ``id: null`` responses decode to :class:`Response`."""
        assert decode_server_frame('{"id":"1","status":"success","result":null}') == Response(
            "1", True, None
        )
        ok = decode_server_frame(
            f'{{"id":"3","status":"success","result":{{"status":"OK","id":"{BID_ID}"}}}}'
        )
        assert ok == Response("3", True, PostBidResult(BID_ID))
        err = decode_server_frame(
            '{"id":null,"status":"error","result":"expected value at line 1 column 1"}'
        )
        assert isinstance(err, Response)
        assert (err.id, err.ok, err.error) == (None, False, "expected value at line 1 column 1")

    def test_chain_update_and_removals(self) -> None:
        """Chain updates and both removal forms decode."""
        upd = SvmChainUpdate("solana", "SLxp9LxX1eE9Z5v99Y92DaYEwyukFgMUF6zRerCF12j", 2**60)
        assert decode_server_frame(encode_server_message(upd)) == upd
        svm = OpportunityDelete(
            "svm", "solana", "v1", permission_account=PK, router=PK, program="limo"
        )
        evm = OpportunityDelete("evm", "op_sepolia", "v1", permission_key=b"\x01\x02")
        assert decode_server_frame(encode_server_message(svm)) == svm
        assert decode_server_frame(encode_server_message(evm)) == evm


ROUND_TRIP: list[ServerMessage] = [
    SWAP,
    LIMO,
    EVM,
    SvmChainUpdate("solana", "11111111111111111111111111111111", 0),
    BidStatusUpdate(BID_ID, BidStatus("pending")),
    BidStatusUpdate(BID_ID, BidStatus("failed", SIG, reason="deadline_passed")),
    BidStatusUpdate(BID_ID, BidStatus("failed", SIG, reason=None)),
    BidStatusUpdate(BID_ID, BidStatus("submitted", "0x10", index=0)),
    Response("7", True, PostBidResult(BID_ID)),
    Response("8", False, "Duplicate bid"),
    Response(None, False, "missing field `id` at line 1 column 2"),
]


@pytest.mark.parametrize("msg", ROUND_TRIP)
def test_server_message_round_trip(msg: ServerMessage) -> None:
    """Every server message survives encode -> decode unchanged."""
    assert decode_server_frame(encode_server_message(msg)) == msg


def test_evm_lost_status_keeps_explicit_nulls() -> None:
    """An EVM ``lost`` status is encoded with explicit ``result``/``index`` nulls."""
    assert bid_status_to_json(BidStatus("lost"), evm=True) == {
        "type": "lost",
        "result": None,
        "index": None,
    }
    assert bid_status_to_json(BidStatus("pending")) == {"type": "pending"}
    assert "reason" not in bid_status_to_json(BidStatus("won", SIG))


class TestClientFrames:
    @pytest.mark.parametrize(
        ("frame", "expected"),
        [
            (encode_subscribe("1", ["solana"]), SubscribeRequest("1", ("solana",))),
            (encode_unsubscribe("2", ("a", "b")), UnsubscribeRequest("2", ("a", "b"))),
            (encode_cancel_bid("5", "solana", BID_ID), CancelBidRequest("5", "solana", BID_ID)),
            (
                encode_post_bid("3", SwapBidWire("solana", TX_B64, BID_ID)),
                PostBidRequest("3", SwapBidWire("solana", TX_B64, BID_ID)),
            ),
            (
                encode_post_bid("4", OnChainBidWire("solana", TX_B64, 2**63)),
                PostBidRequest("4", OnChainBidWire("solana", TX_B64, 2**63)),
            ),
            (
                encode_post_bid("6", OnChainBidWire("solana", TX_B64)),
                PostBidRequest("6", OnChainBidWire("solana", TX_B64)),
            ),
            (
                encode_post_bid(
                    "7", EvmBidWire(2**200, "op_sepolia", b"\x01" * 40, "0xab", b"\x26\x08")
                ),
                PostBidRequest(
                    "7", EvmBidWire(2**200, "op_sepolia", b"\x01" * 40, "0xab", b"\x26\x08")
                ),
            ),
        ],
    )
    def test_request_round_trip(self, frame: bytes, expected: object) -> None:
        """Every request encoder round-trips through the server-side decoder."""
        assert decode_client_frame(frame) == expected

    def test_swap_bid_wire_shape(self) -> None:
        """A swap bid carries ``type: swap``; EVM amounts and bytes are decimal / 0x-hex."""
        swap = orjson.loads(encode_post_bid("1", SwapBidWire("solana", TX_B64, BID_ID)))
        assert swap["params"]["bid"]["type"] == "swap"
        evm = orjson.loads(encode_post_bid("1", EvmBidWire(10, "op", b"\xab", "0x1", b"\xcd")))[
            "params"
        ]["bid"]
        assert (evm["amount"], evm["permission_key"], evm["target_calldata"]) == (
            "10",
            "0xab",
            "0xcd",
        )

    def test_request_ids_must_be_strings(self) -> None:
        """Encoders refuse non-string ids (the server could not correlate the error)."""
        with pytest.raises(TypeError):
            encode_subscribe(1, ["solana"])  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("frame", "text"),
        [
            ("nope", "expected value at line 1 column 1"),
            ('{"method":"subscribe","params":{"chain_ids":[]}}', "missing field `id`"),
            (
                '{"id":1,"method":"subscribe","params":{"chain_ids":[]}}',
                "invalid type: integer `1`, expected a string",
            ),
            (
                '{"id":"1","method":"post_opportunity_bid","params":{}}',
                "unknown variant `post_opportunity_bid`, expected one of",
            ),
            (
                '{"id":"1","method":"post_bid","params":{"bid":{"chain_id":"solana","transaction":"!!"}}}',
                "data did not match any variant of untagged enum BidCreate",
            ),
            ('{"id":"1","method":"subscribe","params":{}}', "missing field `chain_ids`"),
        ],
    )
    def test_parse_errors_have_serde_text(self, frame: str, text: str) -> None:
        """Unparseable frames raise :class:`ClientFrameError` with serde-like text and position."""
        with pytest.raises(ClientFrameError) as e:
            decode_client_frame(frame)
        assert str(e.value).startswith(text)
        assert " at line 1 column " in str(e.value)


class TestHttpBodies:
    def test_bid_status_body(self) -> None:
        """``GET /v1/{chain}/bids/{id}`` bodies decode to :class:`BidStatus`."""
        assert decode_bid_status_http(b'{"type":"pending"}') == BidStatus("pending")
        with pytest.raises(ExpressRelayDecodeError):
            decode_bid_status_http(b'{"result":"x"}')

    def test_opportunity_list_skips_unknown_entries(self) -> None:
        """The opportunity list keeps decodable entries and reports the others."""
        body = orjson.dumps(
            [opportunity_to_json(LIMO), _swap_json(program="dca"), opportunity_to_json(EVM)]
        )
        result = decode_opportunities_http(body)
        assert result.opportunities == (LIMO, EVM)
        assert [e.kind for e in result.skipped] == ["unknown_program"]

    def test_post_bid_and_error_bodies(self) -> None:
        """Post-bid results and both error body forms (JSON, plain text) decode."""
        assert decode_post_bid_http(f'{{"status":"OK","id":"{BID_ID}"}}') == PostBidResult(BID_ID)
        assert decode_http_error(b'{"error":"Duplicate bid"}') == "Duplicate bid"
        assert decode_http_error(b"Forbidden") == "Forbidden"


_json = hs.recursive(
    hs.none()
    | hs.booleans()
    | hs.integers(-(2**63), 2**64 - 1)
    | hs.floats(allow_nan=False)
    | hs.text(max_size=20),
    lambda kids: (
        hs.lists(kids, max_size=4) | hs.dictionaries(hs.text(max_size=12), kids, max_size=4)
    ),
    max_leaves=20,
)
_keys = ["type", "status", "id", "result", "opportunity", "bid_status", "update", "opportunity_delete",
         "version", "program", "tokens", "order", "permission_key", "chain_type"]  # fmt: skip


@hs.composite
def _frames(draw: hs.DrawFn) -> bytes | str:
    kind = draw(hs.integers(0, 3))
    if kind == 0:
        return draw(hs.binary(max_size=200))
    if kind == 1:
        return orjson.dumps(draw(_json))
    # Mutate a real message: drop, retype or replace one key at some depth.
    base = orjson.loads(encode_server_message(draw(hs.sampled_from(ROUND_TRIP))))
    target = base
    while isinstance(target, dict) and draw(hs.booleans()):
        dicts = [v for v in target.values() if isinstance(v, dict)]
        if not dicts:
            break
        target = draw(hs.sampled_from(dicts))
    key = draw(hs.sampled_from([*target.keys(), *_keys]))
    if draw(hs.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(_json)
    return orjson.dumps(base).decode()


@settings(max_examples=400, deadline=None)
@given(_frames())
def test_decode_server_frame_never_raises_anything_else(frame: bytes | str) -> None:
    """Any bytes or JSON give a message or :class:`ExpressRelayDecodeError`, nothing else."""
    kind = None
    try:
        decode_server_frame(frame)
    except ExpressRelayDecodeError as e:
        kind = e.kind
    assert kind in {
        None,
        "not_json",
        "unknown_type",
        "unknown_program",
        "unknown_version",
        "invalid",
    }


@settings(max_examples=200, deadline=None)
@given(hs.binary(max_size=200) | _json.map(orjson.dumps))
def test_decode_client_frame_never_raises_anything_else(frame: bytes) -> None:
    """The simulator's request parser only ever raises :class:`ClientFrameError`."""
    with contextlib.suppress(ClientFrameError):
        decode_client_frame(frame)
