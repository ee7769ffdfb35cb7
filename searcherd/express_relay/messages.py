"""Express Relay wire messages: typed classes plus the one decoder the client uses.

Every frame the auction server sends is decoded by :func:`decode_server_frame`, which parses the
JSON exactly once (orjson) and returns one typed message or raises
:class:`ExpressRelayDecodeError`; nothing else escapes, so a single bad frame can never kill a read
loop. Amounts are Python ints of any size: u64 fields arrive as JSON integers (which may exceed
2^53), EVM U256 fields as decimal strings. Unknown bid statuses are kept (``is_known`` is False);
unknown message types, programs and versions are errors of a distinct ``kind`` so the caller can
count and skip them.

Both protocol generations are covered: the current SVM protocol (``swap`` and ``limo``
opportunities, transaction bids) and the legacy EVM one (permission key + calldata, raw bids with
an amount). Pubkeys, signatures and addresses stay strings (base58 / 0x-hex) to keep the hot path
lean; byte payloads (limo ``order``, EVM ``permission_key``/calldata) are decoded to ``bytes``.

The server side of the format (client-frame decoding, server encoders) lives in the private
:mod:`._sim_codec`: only the simulator and the round-trip tests need it.
"""

from __future__ import annotations

import base64
import binascii
import sys
from typing import Any, ClassVar, Final

import attrs
import cattrs
import orjson
from cattrs.gen import make_dict_structure_fn, override

__all__ = [
    "FINAL_STATUSES",
    "KNOWN_STATUSES",
    "BidStatus",
    "BidStatusUpdate",
    "EvmBidWire",
    "EvmOpportunity",
    "ExpressRelayDecodeError",
    "LimoOpportunity",
    "OnChainBidWire",
    "Opportunity",
    "OpportunityDelete",
    "OpportunityList",
    "PostBidResult",
    "Response",
    "ServerMessage",
    "SvmChainUpdate",
    "SwapBidWire",
    "SwapOpportunity",
    "TokenAccountInitializationConfigs",
    "TokenAmount",
    "TokensSearcherSpecified",
    "TokensUserSpecified",
    "WireBid",
    "bid_to_json",
    "decode_bid_status_http",
    "decode_http_error",
    "decode_opportunities_http",
    "decode_post_bid_http",
    "decode_server_frame",
    "encode_cancel_bid",
    "encode_post_bid",
    "encode_subscribe",
    "encode_unsubscribe",
    "hex_to_bytes",
    "u256_to_int",
]

#: Statuses after which a bid never changes again (the server's "concluded" set).
FINAL_STATUSES: Final = frozenset(
    {"lost", "won", "failed", "expired", "cancelled", "submission_failed"}
)
#: Every status type this module knows (SVM and legacy EVM).
KNOWN_STATUSES: Final = FINAL_STATUSES | {
    "pending",
    "awaiting_signature",
    "sent_to_user_for_submission",
    "submitted",
}
_U256_MAX: Final = (1 << 256) - 1


class ExpressRelayDecodeError(Exception):
    """A frame or body that is not a message this module can represent.

    ``kind`` is one of ``not_json``, ``unknown_type``, ``unknown_program``, ``unknown_version`` or
    ``invalid`` so callers can count by cause; ``detail`` is a short human text (never the frame).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# --------------------------------------------------------------------------- data classes


@attrs.frozen
class TokensSearcherSpecified:
    """Swap tokens when the user fixed the output (``side_specified: "searcher"``); lowest bid wins."""

    SIDE: ClassVar[str] = "searcher"
    searcher_token: str
    searcher_amount: int
    user_token: str
    token_program_searcher: str
    token_program_user: str


@attrs.frozen
class TokensUserSpecified:
    """Swap tokens when the user fixed the input (``side_specified: "user"``); highest bid wins."""

    SIDE: ClassVar[str] = "user"
    searcher_token: str
    user_token: str
    user_amount: int
    user_amount_including_fees: int
    token_program_searcher: str
    token_program_user: str


SwapTokens = TokensSearcherSpecified | TokensUserSpecified


@attrs.frozen
class TokenAccountInitializationConfigs:
    """Who pays for each token account a swap may need: ``unneeded``/``searcher_payer``/``user_payer``."""

    user_ata_mint_searcher: str
    user_ata_mint_user: str
    router_fee_receiver_ta: str
    relayer_fee_receiver_ata: str
    express_relay_fee_receiver_ata: str


@attrs.frozen
class SwapOpportunity:
    """An SVM RFQ quote (``program: "swap"``); dead ``~250 ms`` after receipt, no removal is sent."""

    PROGRAM: ClassVar[str] = "swap"
    opportunity_id: str
    chain_id: str
    creation_time: int  # microseconds since the Unix epoch
    version: str
    user_wallet_address: str
    user_mint_user_balance: int
    permission_account: str
    router_account: str
    referral_fee_ppm: int
    platform_fee_ppm: int
    fee_token: str
    tokens: SwapTokens
    token_account_initialization_configs: TokenAccountInitializationConfigs
    cancellable: bool
    minimum_deadline: int  # Unix seconds
    memo: str | None = None
    profile_id: str | None = None
    referral_fee_bps: int = 0  # deprecated on the wire, kept for round trips
    platform_fee_bps: int = 0


@attrs.frozen
class LimoOpportunity:
    """An SVM Kamino Limo order (``program: "limo"``); ``order`` is the raw account data."""

    PROGRAM: ClassVar[str] = "limo"
    opportunity_id: str
    chain_id: str
    creation_time: int
    version: str
    order: bytes  # 424 bytes incl. the 8-byte Anchor discriminator
    order_address: str
    slot: int


@attrs.frozen
class TokenAmount:
    """[EVM, legacy] one token and an amount (U256 decimal string on the wire)."""

    token: str
    amount: int


@attrs.frozen
class EvmOpportunity:
    """[EVM, legacy] an opportunity keyed by ``permission_key`` with a target call."""

    opportunity_id: str
    chain_id: str
    creation_time: int
    version: str
    permission_key: bytes
    target_contract: str
    target_calldata: bytes
    target_call_value: int
    sell_tokens: tuple[TokenAmount, ...]
    buy_tokens: tuple[TokenAmount, ...]


Opportunity = SwapOpportunity | LimoOpportunity | EvmOpportunity


@attrs.frozen
class OpportunityDelete:
    """Payload of ``remove_opportunities``: every opportunity under one key is gone.

    ``chain_type`` is ``"svm"`` (``permission_account``, ``router``, ``program`` set) or ``"evm"``
    (``permission_key`` set); the fields of the other chain type are ``None``.
    """

    chain_type: str
    chain_id: str
    version: str
    permission_account: str | None = None
    router: str | None = None
    program: str | None = None
    permission_key: bytes | None = None


@attrs.frozen
class SvmChainUpdate:
    """Pushed every ~5 s per subscribed SVM chain: a finalized blockhash and the priority fee."""

    chain_id: str
    blockhash: str
    latest_prioritization_fee: int  # micro-lamports per compute unit


@attrs.frozen
class BidStatus:
    """A bid status of any generation; unknown ``type`` values are kept, never rejected.

    ``result`` is a base58 signature (SVM) or 0x tx hash (EVM) and may be ``None`` (``lost``
    without a winner, ``pending``); ``reason`` only on ``failed``/``submission_failed`` (may be
    ``None``); ``index`` only on EVM statuses.
    """

    type: str
    result: str | None = None
    reason: str | None = None
    index: int | None = None

    @property
    def is_final(self) -> bool:
        """True when the bid can never change status again."""
        return self.type in FINAL_STATUSES

    @property
    def is_known(self) -> bool:
        """False for a status type this module has never heard of (log it, keep the bid open)."""
        return self.type in KNOWN_STATUSES


@attrs.frozen
class BidStatusUpdate:
    """Push for a bid posted on this connection: ``bid_id`` moved to ``status``."""

    bid_id: str
    status: BidStatus


@attrs.frozen
class PostBidResult:
    """Success result of ``post_bid`` (and of ``POST /v1/bids``): the server's bid id."""

    bid_id: str


@attrs.frozen
class Response:
    """Answer to a request; ``id`` is ``None`` when the server could not parse the request.

    ``result`` is ``None`` or :class:`PostBidResult` on success (another JSON value if a future
    server returns one) and the server's error text (``str``) on failure.
    """

    id: str | None
    ok: bool
    result: object = None

    @property
    def error(self) -> str | None:
        """The error text of a failed request, ``None`` on success."""
        if self.ok:
            return None
        return self.result if isinstance(self.result, str) else repr(self.result)


ServerMessage = (
    SwapOpportunity
    | LimoOpportunity
    | EvmOpportunity
    | OpportunityDelete
    | SvmChainUpdate
    | BidStatusUpdate
    | Response
)


@attrs.frozen
class SwapBidWire:
    """A bid on a swap opportunity (``type: "swap"`` on the wire); the tx is base64 bincode."""

    chain_id: str
    transaction_b64: str
    opportunity_id: str


@attrs.frozen
class OnChainBidWire:
    """A bid the server submits itself (limo); ``slot`` is the minimum simulation slot."""

    chain_id: str
    transaction_b64: str
    slot: int | None = None


@attrs.frozen
class EvmBidWire:
    """[EVM, legacy] a raw bid: the amount in wei and the call the relay should make."""

    amount: int
    chain_id: str
    permission_key: bytes
    target_contract: str
    target_calldata: bytes


WireBid = SwapBidWire | OnChainBidWire | EvmBidWire


@attrs.frozen
class OpportunityList:
    """Result of ``GET /v1/opportunities``: decodable entries plus why others were skipped."""

    opportunities: tuple[Opportunity, ...]
    skipped: tuple[ExpressRelayDecodeError, ...] = ()


# --------------------------------------------------------------------------- converter

# Strict scalar hooks: cattrs would otherwise coerce ("5" -> 5, 5.7 -> 5, 1 -> "1", 0 -> False).
# The checks use `type(v) is X` because bool is a subclass of int.


def _s_int(v: Any, _: Any) -> int:
    if type(v) is int:
        return v
    raise TypeError(f"expected an integer, got {type(v).__name__}")


def _s_str(v: Any, _: Any) -> str:
    if type(v) is str:
        return v
    raise TypeError(f"expected a string, got {type(v).__name__}")


def _s_bool(v: Any, _: Any) -> bool:
    if type(v) is bool:
        return v
    raise TypeError(f"expected a boolean, got {type(v).__name__}")


def _s_b64(v: Any, _: Any) -> bytes:
    return base64.b64decode(_s_str(v, None), validate=True)


def hex_to_bytes(v: Any, _: Any = None) -> bytes:
    """Decode a 0x-prefixed (or bare) hex string; raises ``TypeError``/``ValueError``."""
    s = _s_str(v, None)
    return bytes.fromhex(s[2:] if s[:2] in ("0x", "0X") else s)


def u256_to_int(v: Any, _: Any = None) -> int:
    """Decode a U256 decimal string to an int; raises ``TypeError``/``ValueError``."""
    s = _s_str(v, None)
    if not (s.isascii() and s.isdigit()):
        raise ValueError(f"expected a U256 decimal string, got {s[:40]!r}")
    n = int(s)
    if n > _U256_MAX:
        raise ValueError("U256 out of range")
    return n


def _s_tokens(v: Any, _: Any) -> SwapTokens:
    if not isinstance(v, dict):
        raise TypeError("tokens: expected an object")
    side = v.get("side_specified")
    if side == "searcher":
        return _CONVERTER.structure(v, TokensSearcherSpecified)
    if side == "user":
        return _CONVERTER.structure(v, TokensUserSpecified)
    raise ValueError(f"tokens: unknown side_specified {side!r}")


def _s_token_amounts(v: Any, _: Any) -> tuple[TokenAmount, ...]:
    if type(v) is not list:
        raise TypeError("expected an array of token amounts")
    return tuple(_CONVERTER.structure(x, TokenAmount) for x in v)


def _build_converter() -> cattrs.Converter:
    # Built once at import. detailed_validation=False keeps structuring fast: the first error is
    # raised as-is (KeyError for a missing field, our TypeError/ValueError for a bad value).
    c = cattrs.Converter(detailed_validation=False, forbid_extra_keys=False)
    c.register_structure_hook(int, _s_int)
    c.register_structure_hook(str, _s_str)
    c.register_structure_hook(bool, _s_bool)
    c.register_structure_hook(SwapTokens, _s_tokens)
    c.register_structure_hook_func(lambda t: t == tuple[TokenAmount, ...], _s_token_amounts)
    c.register_structure_hook(
        TokenAmount,
        make_dict_structure_fn(TokenAmount, c, amount=override(struct_hook=u256_to_int)),
    )
    c.register_structure_hook(
        LimoOpportunity,
        make_dict_structure_fn(LimoOpportunity, c, order=override(struct_hook=_s_b64)),
    )
    c.register_structure_hook(
        EvmOpportunity,
        make_dict_structure_fn(
            EvmOpportunity,
            c,
            permission_key=override(struct_hook=hex_to_bytes),
            target_calldata=override(struct_hook=hex_to_bytes),
            target_call_value=override(struct_hook=u256_to_int),
        ),
    )
    return c


_CONVERTER: Final = _build_converter()
# Everything a malformed-but-JSON payload can raise while being structured.
_STRUCTURE_ERRORS: Final = (
    KeyError,
    TypeError,
    ValueError,
    binascii.Error,
    cattrs.BaseValidationError,
)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!s}" if exc.args else "missing field"
    return str(exc)[:200] or type(exc).__name__


# --------------------------------------------------------------------------- decoding


def _loads(frame: str | bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError as e:
        raise ExpressRelayDecodeError("not_json", str(e)[:200]) from None


def _swap_fast(d: dict[str, Any]) -> SwapOpportunity | None:
    """A well-formed swap opportunity without the converter, or None.

    Swap quotes are most of the feed, and the generated cattrs function costs about twice
    this. Only the exact shape is taken here: every field present (optional ones may be
    missing) with exactly its type, the same strict rules the converter's hooks apply. Anything
    else returns None and goes through the converter, which decodes it or rejects it with its
    own message, so results and errors are the converter's in every case.
    """
    t = d.get("tokens")
    c = d.get("token_account_initialization_configs")
    if type(t) is not dict or type(c) is not dict:
        return None
    try:
        side = t["side_specified"]
        tokens: SwapTokens
        if side == "searcher":
            tokens = TokensSearcherSpecified(
                t["searcher_token"],
                t["searcher_amount"],
                t["user_token"],
                t["token_program_searcher"],
                t["token_program_user"],
            )
            amounts: tuple[Any, ...] = (tokens.searcher_amount,)
        elif side == "user":
            tokens = TokensUserSpecified(
                t["searcher_token"],
                t["user_token"],
                t["user_amount"],
                t["user_amount_including_fees"],
                t["token_program_searcher"],
                t["token_program_user"],
            )
            amounts = (tokens.user_amount, tokens.user_amount_including_fees)
        else:
            return None
        configs = TokenAccountInitializationConfigs(
            c["user_ata_mint_searcher"],
            c["user_ata_mint_user"],
            c["router_fee_receiver_ta"],
            c["relayer_fee_receiver_ata"],
            c["express_relay_fee_receiver_ata"],
        )
        opp = SwapOpportunity(
            opportunity_id=d["opportunity_id"],
            chain_id=d["chain_id"],
            creation_time=d["creation_time"],
            version=d["version"],
            user_wallet_address=d["user_wallet_address"],
            user_mint_user_balance=d["user_mint_user_balance"],
            permission_account=d["permission_account"],
            router_account=d["router_account"],
            referral_fee_ppm=d["referral_fee_ppm"],
            platform_fee_ppm=d["platform_fee_ppm"],
            fee_token=d["fee_token"],
            tokens=tokens,
            token_account_initialization_configs=configs,
            cancellable=d["cancellable"],
            minimum_deadline=d["minimum_deadline"],
            memo=d.get("memo"),
            profile_id=d.get("profile_id"),
            referral_fee_bps=d.get("referral_fee_bps", 0),
            platform_fee_bps=d.get("platform_fee_bps", 0),
        )
    except KeyError:
        return None
    strings = (
        opp.opportunity_id,
        opp.chain_id,
        opp.version,
        opp.user_wallet_address,
        opp.permission_account,
        opp.router_account,
        opp.fee_token,
        tokens.searcher_token,
        tokens.user_token,
        tokens.token_program_searcher,
        tokens.token_program_user,
        configs.user_ata_mint_searcher,
        configs.user_ata_mint_user,
        configs.router_fee_receiver_ta,
        configs.relayer_fee_receiver_ata,
        configs.express_relay_fee_receiver_ata,
    )
    integers = (
        opp.creation_time,
        opp.user_mint_user_balance,
        opp.referral_fee_ppm,
        opp.platform_fee_ppm,
        opp.minimum_deadline,
        opp.referral_fee_bps,
        opp.platform_fee_bps,
        *amounts,
    )
    # `type(v) is X`, as in the converter's hooks: bool is an int, and neither coerces.
    if (
        all(type(v) is str for v in strings)
        and all(type(v) is int for v in integers)
        and type(opp.cancellable) is bool
        and (opp.memo is None or type(opp.memo) is str)
        and (opp.profile_id is None or type(opp.profile_id) is str)
    ):
        return opp
    return None


def _decode_opportunity(d: Any) -> Opportunity:
    if not isinstance(d, dict):
        raise ExpressRelayDecodeError("invalid", "opportunity: expected an object")
    version = d.get("version")
    if version != "v1":
        raise ExpressRelayDecodeError("unknown_version", f"opportunity version {version!r}")
    # The legacy server tried EVM first; an EVM opportunity has no `program` key.
    cls: type[Opportunity]
    if "permission_key" in d or "target_contract" in d:
        cls = EvmOpportunity
    else:
        program = d.get("program")
        if program == "swap":
            fast = _swap_fast(d)
            if fast is not None:
                return fast
            cls = SwapOpportunity
        elif program == "limo":
            cls = LimoOpportunity
        else:
            raise ExpressRelayDecodeError("unknown_program", f"program {program!r}")
    try:
        return _CONVERTER.structure(d, cls)
    except _STRUCTURE_ERRORS as e:
        raise ExpressRelayDecodeError("invalid", f"{cls.__name__}: {_describe(e)}") from None


def _opt(d: dict[str, Any], key: str, typ: type) -> Any:
    v = d.get(key)
    if v is None or type(v) is typ:
        return v
    raise TypeError(f"{key}: expected {typ.__name__} or null")


def _decode_bid_status(d: Any) -> BidStatus:
    if not isinstance(d, dict):
        raise TypeError("bid_status: expected an object")
    return BidStatus(
        # Interned: the thousands of open bids share one string per status instead of each
        # holding the copy its frame was decoded into.
        type=sys.intern(_s_str(d["type"], None)),
        result=_opt(d, "result", str),
        reason=_opt(d, "reason", str),
        index=_opt(d, "index", int),
    )


def _decode_delete(d: Any) -> OpportunityDelete:
    if not isinstance(d, dict):
        raise TypeError("opportunity_delete: expected an object")
    version = d.get("version")
    if version != "v1":
        raise ExpressRelayDecodeError("unknown_version", f"opportunity_delete version {version!r}")
    chain_type = d.get("chain_type")
    if chain_type == "svm":
        return OpportunityDelete(
            chain_type="svm",
            chain_id=_s_str(d["chain_id"], None),
            version=version,
            permission_account=_s_str(d["permission_account"], None),
            router=_s_str(d["router"], None),
            program=_s_str(d["program"], None),
        )
    if chain_type == "evm":
        return OpportunityDelete(
            chain_type="evm",
            chain_id=_s_str(d["chain_id"], None),
            version=version,
            permission_key=hex_to_bytes(d["permission_key"]),
        )
    raise ValueError(f"opportunity_delete: unknown chain_type {chain_type!r}")


def _decode_response(d: dict[str, Any]) -> Response:
    rid = d.get("id")
    if rid is not None and type(rid) is not str:
        raise TypeError("response id: expected a string or null")
    status = d["status"]
    result = d.get("result")
    if status == "success":
        if isinstance(result, dict) and result.get("status") == "OK" and "id" in result:
            return Response(rid, True, PostBidResult(_s_str(result["id"], None)))
        return Response(rid, True, result)
    if status == "error":
        return Response(rid, False, result if isinstance(result, str) else repr(result))
    raise ValueError(f"response status {status!r}")


def decode_server_frame(frame: str | bytes) -> ServerMessage:
    """Decode one server frame into a push message or a :class:`Response`.

    A ``new_opportunity`` push returns the opportunity itself, ``remove_opportunities`` returns
    its :class:`OpportunityDelete`. Raises :class:`ExpressRelayDecodeError` for anything else;
    no other exception escapes.
    """
    d = _loads(frame)
    if not isinstance(d, dict):
        raise ExpressRelayDecodeError("invalid", f"expected an object, got {type(d).__name__}")
    kind = d.get("type")
    try:
        if kind is None:
            if "status" in d:
                return _decode_response(d)
            raise ExpressRelayDecodeError("unknown_type", "neither `type` nor `status` present")
        if kind == "new_opportunity":
            return _decode_opportunity(d["opportunity"])
        if kind == "bid_status_update":
            s = d["status"]
            if not isinstance(s, dict):
                raise TypeError("status: expected an object")
            return BidStatusUpdate(_s_str(s["id"], None), _decode_bid_status(s["bid_status"]))
        if kind == "svm_chain_update":
            u = d["update"]
            return SvmChainUpdate(
                _s_str(u["chain_id"], None),
                _s_str(u["blockhash"], None),
                _s_int(u["latest_prioritization_fee"], None),
            )
        if kind == "remove_opportunities":
            return _decode_delete(d["opportunity_delete"])
    except _STRUCTURE_ERRORS as e:
        raise ExpressRelayDecodeError("invalid", f"{kind or 'response'}: {_describe(e)}") from None
    raise ExpressRelayDecodeError("unknown_type", f"type {str(kind)[:60]!r}")


# --------------------------------------------------------------------------- HTTP bodies


def decode_bid_status_http(body: str | bytes) -> BidStatus:
    """Decode the body of ``GET /v1/{chain_id}/bids/{bid_id}`` (a bare BidStatus)."""
    d = _loads(body)
    try:
        return _decode_bid_status(d)
    except _STRUCTURE_ERRORS as e:
        raise ExpressRelayDecodeError("invalid", f"bid status: {_describe(e)}") from None


def decode_opportunities_http(body: str | bytes) -> OpportunityList:
    """Decode ``GET /v1/opportunities``; undecodable entries are skipped and reported."""
    d = _loads(body)
    if type(d) is not list:
        raise ExpressRelayDecodeError("invalid", "opportunities: expected an array")
    opps: list[Opportunity] = []
    skipped: list[ExpressRelayDecodeError] = []
    for item in d:
        try:
            opps.append(_decode_opportunity(item))
        except ExpressRelayDecodeError as e:
            skipped.append(e)
    return OpportunityList(tuple(opps), tuple(skipped))


def decode_post_bid_http(body: str | bytes) -> PostBidResult:
    """Decode the ``{"status": "OK", "id": ...}`` body of ``POST /v1/bids``."""
    d = _loads(body)
    if not isinstance(d, dict) or d.get("status") != "OK" or type(d.get("id")) is not str:
        raise ExpressRelayDecodeError("invalid", "post bid: expected {status: OK, id: string}")
    return PostBidResult(d["id"])


def decode_http_error(body: str | bytes) -> str:
    """The text of an HTTP error body (``{"error": "..."}``, or plain text such as ``Forbidden``)."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return text.strip()[:500]
    if isinstance(d, dict) and isinstance(d.get("error"), str):
        return str(d["error"])
    return repr(d)[:500]


# --------------------------------------------------------------------------- client requests


def _request(id: str, method: str, params: dict[str, Any]) -> bytes:
    if type(id) is not str:
        # The server rejects non-string ids with an uncorrelatable `id: null` error.
        raise TypeError("request id must be a string")
    return orjson.dumps({"id": id, "method": method, "params": params})


def bid_to_json(bid: WireBid) -> dict[str, Any]:
    """The wire object of a bid (``params.bid`` of ``post_bid``, body of ``POST /v1/bids``)."""
    if isinstance(bid, SwapBidWire):
        return {
            "chain_id": bid.chain_id,
            "transaction": bid.transaction_b64,
            "opportunity_id": bid.opportunity_id,
            "type": "swap",
        }
    if isinstance(bid, OnChainBidWire):
        out: dict[str, Any] = {"chain_id": bid.chain_id, "transaction": bid.transaction_b64}
        if bid.slot is not None:
            out["slot"] = bid.slot
        return out
    return {
        "amount": str(bid.amount),
        "chain_id": bid.chain_id,
        "permission_key": "0x" + bid.permission_key.hex(),
        "target_contract": bid.target_contract,
        "target_calldata": "0x" + bid.target_calldata.hex(),
    }


def encode_subscribe(id: str, chain_ids: list[str] | tuple[str, ...]) -> bytes:
    """A ``subscribe`` request for ``chain_ids``."""
    return _request(id, "subscribe", {"chain_ids": list(chain_ids)})


def encode_unsubscribe(id: str, chain_ids: list[str] | tuple[str, ...]) -> bytes:
    """An ``unsubscribe`` request for ``chain_ids``."""
    return _request(id, "unsubscribe", {"chain_ids": list(chain_ids)})


def encode_post_bid(id: str, bid: WireBid) -> bytes:
    """A ``post_bid`` request carrying ``bid``."""
    return _request(id, "post_bid", {"bid": bid_to_json(bid)})


def encode_cancel_bid(id: str, chain_id: str, bid_id: str) -> bytes:
    """A ``cancel_bid`` request (only honoured for authenticated owners in awaiting_signature)."""
    return _request(id, "cancel_bid", {"data": {"chain_id": chain_id, "bid_id": bid_id}})
