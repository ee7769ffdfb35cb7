"""The server side of the Express Relay wire format: client-frame decoding, server encoders.

The simulator uses these to speak the protocol exactly as the auction server does, and the tests
use them for round trips against :func:`.messages.decode_server_frame`. Client-frame errors carry
serde-like text (``missing field `id` at line 1 column 12``), because that is what the server puts
in its ``id: null`` error responses.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, Final

import attrs
import orjson

from .messages import (
    BidStatus,
    BidStatusUpdate,
    EvmBidWire,
    EvmOpportunity,
    LimoOpportunity,
    OnChainBidWire,
    Opportunity,
    OpportunityDelete,
    PostBidResult,
    Response,
    ServerMessage,
    SvmChainUpdate,
    SwapBidWire,
    SwapOpportunity,
    WireBid,
    hex_to_bytes,
    u256_to_int,
)

__all__ = [
    "CancelBidRequest",
    "ClientFrameError",
    "ClientRequest",
    "PostBidRequest",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "bid_status_to_json",
    "decode_client_frame",
    "decode_wire_bid",
    "encode_bid_status_update",
    "encode_opportunity_delete",
    "encode_response",
    "encode_server_message",
    "encode_svm_chain_update",
    "opportunity_to_json",
    "serde_position",
    "untagged_bid_error",
]

_METHODS: Final = "`subscribe`, `unsubscribe`, `post_bid`, `cancel_bid`"
_UNTAGGED_BID: Final = "data did not match any variant of untagged enum BidCreate"


class ClientFrameError(Exception):
    """A client frame the server cannot parse into a request; ``str()`` is the serde-like text."""


@attrs.frozen
class SubscribeRequest:
    """``subscribe``: add ``chain_ids`` to the connection's subscriptions."""

    id: str
    chain_ids: tuple[str, ...]


@attrs.frozen
class UnsubscribeRequest:
    """``unsubscribe``: remove ``chain_ids`` (unknown ids are ignored)."""

    id: str
    chain_ids: tuple[str, ...]


@attrs.frozen
class PostBidRequest:
    """``post_bid`` with a swap, on-chain or legacy EVM bid."""

    id: str
    bid: WireBid


@attrs.frozen
class CancelBidRequest:
    """``cancel_bid`` for one bid of the caller's profile."""

    id: str
    chain_id: str
    bid_id: str


ClientRequest = SubscribeRequest | UnsubscribeRequest | PostBidRequest | CancelBidRequest


def _kind(v: Any) -> str:
    # serde's "invalid type" wording for a JSON value.
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    if isinstance(v, str):
        return f"string {orjson.dumps(v).decode()[:60]}"
    return "sequence" if isinstance(v, list) else "map"


def _str_field(d: dict[str, Any], key: str) -> str:
    if key not in d:
        raise ClientFrameError(f"missing field `{key}`")
    v = d[key]
    if type(v) is not str:
        raise ClientFrameError(f"invalid type: {_kind(v)}, expected a string")
    return v


def _map_field(d: dict[str, Any], key: str) -> dict[str, Any]:
    if key not in d:
        raise ClientFrameError(f"missing field `{key}`")
    v = d[key]
    if not isinstance(v, dict):
        raise ClientFrameError(f"invalid type: {_kind(v)}, expected a map")
    return v


def _chain_ids(params: dict[str, Any]) -> tuple[str, ...]:
    if "chain_ids" not in params:
        raise ClientFrameError("missing field `chain_ids`")
    v = params["chain_ids"]
    if type(v) is not list:
        raise ClientFrameError(f"invalid type: {_kind(v)}, expected a sequence")
    for x in v:
        if type(x) is not str:
            raise ClientFrameError(f"invalid type: {_kind(x)}, expected a string")
    return tuple(v)


def _b64_tx(d: dict[str, Any]) -> str:
    tx = d.get("transaction")
    if not isinstance(tx, str):
        raise TypeError("transaction")
    base64.b64decode(tx, validate=True)
    return tx


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


def _decode_bid_fields(d: dict[str, Any]) -> WireBid:
    if "target_contract" in d or "amount" in d:
        _require(all(type(d.get(k)) is str for k in ("chain_id", "target_contract")), "evm bid")
        return EvmBidWire(
            amount=u256_to_int(d.get("amount")),
            chain_id=d["chain_id"],
            permission_key=hex_to_bytes(d.get("permission_key")),
            target_contract=d["target_contract"],
            target_calldata=hex_to_bytes(d.get("target_calldata")),
        )
    chain_id = d.get("chain_id")
    _require(type(chain_id) is str, "chain_id")
    assert isinstance(chain_id, str)
    tx = _b64_tx(d)
    opp_id = d.get("opportunity_id")
    if d.get("type") == "swap" and isinstance(opp_id, str):
        uuid.UUID(opp_id)
        return SwapBidWire(chain_id, tx, opp_id)
    slot = d.get("slot")
    _require(slot is None or (type(slot) is int and 0 <= slot < 1 << 64), "slot")
    return OnChainBidWire(chain_id, tx, slot)


def decode_wire_bid(d: Any) -> WireBid:
    """Parse a bid object (untagged like the server); raises :class:`ClientFrameError`."""
    # Untagged like the server: EVM raw bid, then the swap form, then the on-chain form. Any
    # mismatch gives the one opaque serde text, exactly like the real server.
    if not isinstance(d, dict):
        raise ClientFrameError(_UNTAGGED_BID)
    try:
        return _decode_bid_fields(d)
    except (ValueError, TypeError, binascii.Error):
        raise ClientFrameError(_UNTAGGED_BID) from None


def _parse(d: Any) -> ClientRequest:
    if not isinstance(d, dict):
        raise ClientFrameError(f"invalid type: {_kind(d)}, expected struct ClientRequest")
    rid = _str_field(d, "id")
    if "method" not in d:
        raise ClientFrameError("missing field `method`")
    method = d["method"]
    if method not in ("subscribe", "unsubscribe", "post_bid", "cancel_bid"):
        shown = method if isinstance(method, str) else _kind(method)
        raise ClientFrameError(f"unknown variant `{shown}`, expected one of {_METHODS}")
    params = _map_field(d, "params")
    if method == "subscribe":
        return SubscribeRequest(rid, _chain_ids(params))
    if method == "unsubscribe":
        return UnsubscribeRequest(rid, _chain_ids(params))
    if method == "post_bid":
        if "bid" not in params:
            raise ClientFrameError("missing field `bid`")
        return PostBidRequest(rid, decode_wire_bid(params["bid"]))
    data = _map_field(params, "data")
    bid_id = _str_field(data, "bid_id")
    try:
        uuid.UUID(bid_id)
    except ValueError:
        raise ClientFrameError(f"UUID parsing failed: invalid bid_id {bid_id[:40]!r}") from None
    return CancelBidRequest(rid, _str_field(data, "chain_id"), bid_id)


def serde_position(frame: str | bytes) -> str:
    """serde's error suffix for a complete JSON frame: ``at line L column C`` of its end."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    lines = text.rstrip().split("\n")
    return f"at line {len(lines)} column {len(lines[-1])}"


def untagged_bid_error(frame: str | bytes) -> ClientFrameError:
    """The parse error of a bid that matches no schema (e.g. undecodable transaction bytes)."""
    return ClientFrameError(f"{_UNTAGGED_BID} {serde_position(frame)}")


def decode_client_frame(frame: str | bytes) -> ClientRequest:
    """Parse a client frame (text or binary) into a request.

    Raises :class:`ClientFrameError` whose text is what the server answers with ``id: null``.
    """
    try:
        d = orjson.loads(frame)
    except orjson.JSONDecodeError as e:
        raise ClientFrameError(f"expected value at line {e.lineno} column {e.colno}") from None
    try:
        return _parse(d)
    except ClientFrameError as e:
        # serde reports where it stopped; for a complete object that is its end.
        raise ClientFrameError(f"{e} {serde_position(frame)}") from None


# --------------------------------------------------------------------------- server encoders


def bid_status_to_json(status: BidStatus, *, evm: bool = False) -> dict[str, Any]:
    """The wire object of a status: keys a variant does not have are absent (EVM: always index)."""
    out: dict[str, Any] = {"type": status.type}
    if status.type == "pending":
        return out
    out["result"] = status.result
    if status.reason is not None or status.type in ("failed", "submission_failed"):
        out["reason"] = status.reason
    if evm or status.index is not None:
        out["index"] = status.index
    return out


def opportunity_to_json(opp: Opportunity) -> dict[str, Any]:
    """The wire object of an opportunity (as pushed and as listed over HTTP)."""
    common = {
        "opportunity_id": opp.opportunity_id,
        "creation_time": opp.creation_time,
        "version": opp.version,
        "chain_id": opp.chain_id,
    }
    if isinstance(opp, EvmOpportunity):
        return {
            **common,
            "permission_key": "0x" + opp.permission_key.hex(),
            "target_contract": opp.target_contract,
            "target_calldata": "0x" + opp.target_calldata.hex(),
            "target_call_value": str(opp.target_call_value),
            "sell_tokens": [{"token": t.token, "amount": str(t.amount)} for t in opp.sell_tokens],
            "buy_tokens": [{"token": t.token, "amount": str(t.amount)} for t in opp.buy_tokens],
        }
    if isinstance(opp, LimoOpportunity):
        return {
            **common,
            "program": "limo",
            "order": base64.b64encode(opp.order).decode(),
            "order_address": opp.order_address,
            "slot": opp.slot,
        }
    tokens = attrs.asdict(opp.tokens)
    tokens["side_specified"] = opp.tokens.SIDE
    return {
        **common,
        "program": "swap",
        "user_wallet_address": opp.user_wallet_address,
        "user_mint_user_balance": opp.user_mint_user_balance,
        "permission_account": opp.permission_account,
        "router_account": opp.router_account,
        "referral_fee_bps": opp.referral_fee_bps,
        "referral_fee_ppm": opp.referral_fee_ppm,
        "platform_fee_bps": opp.platform_fee_bps,
        "platform_fee_ppm": opp.platform_fee_ppm,
        "fee_token": opp.fee_token,
        "tokens": tokens,
        "token_account_initialization_configs": attrs.asdict(
            opp.token_account_initialization_configs
        ),
        "memo": opp.memo,
        "cancellable": opp.cancellable,
        "minimum_deadline": opp.minimum_deadline,
        "profile_id": opp.profile_id,
    }


def encode_response(resp: Response) -> bytes:
    """A response frame; a :class:`PostBidResult` becomes ``{"status": "OK", "id": ...}``."""
    result = resp.result
    if isinstance(result, PostBidResult):
        result = {"status": "OK", "id": result.bid_id}
    status = "success" if resp.ok else "error"
    return orjson.dumps({"id": resp.id, "status": status, "result": result})


def encode_bid_status_update(update: BidStatusUpdate, *, evm: bool = False) -> bytes:
    """A ``bid_status_update`` push."""
    status = {"id": update.bid_id, "bid_status": bid_status_to_json(update.status, evm=evm)}
    return orjson.dumps({"type": "bid_status_update", "status": status})


def encode_svm_chain_update(update: SvmChainUpdate) -> bytes:
    """An ``svm_chain_update`` push."""
    return orjson.dumps({"type": "svm_chain_update", "update": attrs.asdict(update)})


def encode_opportunity_delete(delete: OpportunityDelete) -> bytes:
    """A ``remove_opportunities`` push (SVM or EVM form by ``chain_type``)."""
    d: dict[str, Any] = {"chain_type": delete.chain_type, "version": delete.version}
    if delete.chain_type == "evm":
        d["permission_key"] = "0x" + (delete.permission_key or b"").hex()
    else:
        d["permission_account"] = delete.permission_account
        d["router"] = delete.router
        d["program"] = delete.program
    d["chain_id"] = delete.chain_id
    return orjson.dumps({"type": "remove_opportunities", "opportunity_delete": d})


def encode_server_message(msg: ServerMessage, *, evm: bool = False) -> bytes:
    """Encode any message :func:`.messages.decode_server_frame` can return."""
    if isinstance(msg, SwapOpportunity | LimoOpportunity | EvmOpportunity):
        return orjson.dumps({"type": "new_opportunity", "opportunity": opportunity_to_json(msg)})
    if isinstance(msg, BidStatusUpdate):
        return encode_bid_status_update(msg, evm=evm)
    if isinstance(msg, SvmChainUpdate):
        return encode_svm_chain_update(msg)
    if isinstance(msg, OpportunityDelete):
        return encode_opportunity_delete(msg)
    return encode_response(msg)
