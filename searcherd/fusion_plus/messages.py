"""Fusion+ WebSocket wire messages: typed push events, RPC results, one decoder, encoders.

Every frame is one JSON object. A push event is `{"event": name, "result": payload}` (the
stale docs say `data`; it is accepted as a fallback); an RPC response is `{"method": name,
"result": value}`; a request is `{"method": name, "param": {...}}` (singular `param`, no id).

`decode_frame` parses the JSON once (orjson), dispatches through one table and returns a typed
message or raises `FusionDecodeError` with `kind` "not_json", "unknown_event" or "invalid";
nothing else escapes, so a feed loop can log and count bad frames and carry on. Amounts are
ints parsed from decimal strings; `timelocks` may be decimal or `0x` hex; empty, absent or null
`merkleLeaves` / `secretHashes` / `parameters` are tolerated. Hex values are kept as sent (no
strict length checks: the SDK's own fixtures carry malformed hashes).

Solana-source orders (`srcChainId` 501) use a different order schema: they are flagged
(`is_solana_source`) with `order`, `extension` and `signature` left None and the payload kept
in `raw`, never rejected. The encoders (`encode_event`, `encode_rpc_result`, `encode_request`)
write the same shapes for the bundled simulator; decoding what they write gives back equal
objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import orjson

from searcherd.fusion_plus._events import (
    EVENT_DECODERS,
    FusionEvent,
    OrderAllowanceChange,
    OrderBalanceChange,
    OrderCancelled,
    OrderCreated,
    OrderFilled,
    OrderFilledPartially,
    OrderInvalid,
    SecretShared,
)
from searcherd.fusion_plus._timelocks import Timelocks
from searcherd.fusion_plus._types import (
    SOLANA_CHAIN_ID,
    ActiveOrder,
    ActiveOrdersPage,
    Immutables,
    LimitOrder,
    PageMeta,
    PublicSecret,
    SecretsError,
    SecretsResult,
    parse_date,
)
from searcherd.fusion_plus._wire import ShapeError, as_obj, get_str, get_str_list

__all__ = [
    "SOLANA_CHAIN_ID",
    "ActiveOrder",
    "ActiveOrdersPage",
    "FusionDecodeError",
    "FusionEvent",
    "FusionMessage",
    "Immutables",
    "LimitOrder",
    "OrderAllowanceChange",
    "OrderBalanceChange",
    "OrderCancelled",
    "OrderCreated",
    "OrderFilled",
    "OrderFilledPartially",
    "OrderInvalid",
    "PageMeta",
    "PublicSecret",
    "RpcResponse",
    "SecretShared",
    "SecretsError",
    "SecretsResult",
    "Timelocks",
    "decode_frame",
    "encode_event",
    "encode_request",
    "encode_rpc_result",
    "parse_active_orders",
    "parse_allowed_methods",
    "parse_date",
    "parse_ping",
    "parse_secrets",
]

_MAX_PAGE_LIMIT: Final = 500


class FusionDecodeError(ValueError):
    """A frame that is not a Fusion+ message we understand.

    `kind` is "not_json", "unknown_event" or "invalid"; `detail` says what is wrong (a path and
    the problem, never the whole frame). `event` / `method` name the message when known, so an
    RPC waiter can be failed at once instead of timing out.
    """

    def __init__(
        self, kind: str, detail: str, *, event: str | None = None, method: str | None = None
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.event = event
        self.method = method


# ---------------------------------------------------------------- RPC


@attrs.frozen
class RpcResponse:
    """`{"method", "result"}`. `result` is typed for the four known methods (see `parse_*`)
    and the raw JSON value for any other method."""

    method: str
    result: object = attrs.field(hash=False)


def _invalid(method: str, exc: ShapeError) -> FusionDecodeError:
    return FusionDecodeError("invalid", f"{method}: {exc}", method=method)


def parse_ping(raw: object) -> str:
    """The `ping` result (a string, "pong"); raises FusionDecodeError."""
    if not isinstance(raw, str):
        raise FusionDecodeError("invalid", "ping: result must be a string", method="ping")
    return raw


def parse_allowed_methods(raw: object) -> tuple[str, ...]:
    """The `getAllowedMethods` result (method names); raises FusionDecodeError."""
    try:
        return get_str_list({"r": raw}, "r", "getAllowedMethods") if raw is not None else ()
    except ShapeError as exc:
        raise _invalid("getAllowedMethods", exc) from None


def parse_active_orders(raw: object) -> ActiveOrdersPage:
    """The `getActiveOrders` result (`items` + `meta`); raises FusionDecodeError."""
    try:
        return ActiveOrdersPage.from_json(as_obj(raw, "result"), "result")
    except ShapeError as exc:
        raise _invalid("getActiveOrders", exc) from None


def parse_secrets(raw: object) -> SecretsResult | SecretsError:
    """The `getSecrets` result: the secrets object, or `{"error": str}`."""
    try:
        d = as_obj(raw, "result")
        if "error" in d:
            return SecretsError(get_str(d, "error", "result"))
        return SecretsResult.from_json(d, "result")
    except ShapeError as exc:
        raise _invalid("getSecrets", exc) from None


_RPC_RESULTS: Final[dict[str, Callable[[object], object]]] = {
    "ping": parse_ping,
    "getAllowedMethods": parse_allowed_methods,
    "getActiveOrders": parse_active_orders,
    "getSecrets": parse_secrets,
}

FusionMessage = FusionEvent | RpcResponse


def decode_frame(frame: str | bytes) -> FusionMessage:
    """Decode one text frame into a push event or an `RpcResponse`.

    Raises `FusionDecodeError` (kind "not_json", "unknown_event" or "invalid") for anything
    else; no other exception escapes, whatever the input.
    """
    try:
        doc = orjson.loads(frame)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise FusionDecodeError("not_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise FusionDecodeError("invalid", f"frame is a JSON {type(doc).__name__}, not an object")
    # Push events are keyed by `event`, RPC responses by `method`; `event` wins if both appear.
    if "event" in doc:
        return _decode_event(doc)
    if "method" in doc:
        return _decode_rpc(doc)
    raise FusionDecodeError("invalid", "frame has neither 'event' nor 'method'")


def _decode_event(doc: dict[str, Any]) -> FusionEvent:
    name = doc["event"]
    if not isinstance(name, str):
        raise FusionDecodeError("invalid", "'event' must be a string")
    decoder = EVENT_DECODERS.get(name)
    if decoder is None:
        short = name[:80]
        raise FusionDecodeError("unknown_event", f"unknown event {short!r}", event=short)
    # `result` per the SDK code; `data` is what the stale docs show.
    key = "result" if doc.get("result") is not None else "data"
    if doc.get(key) is None:
        raise FusionDecodeError("invalid", f"{name}: no 'result' payload", event=name)
    try:
        return decoder(as_obj(doc.get(key), key), key)
    except (ShapeError, ValueError) as exc:
        raise FusionDecodeError("invalid", f"{name}: {exc}", event=name) from None


def _decode_rpc(doc: dict[str, Any]) -> RpcResponse:
    method = doc["method"]
    if not isinstance(method, str):
        raise FusionDecodeError("invalid", "'method' must be a string")
    if "result" not in doc:
        raise FusionDecodeError("invalid", f"{method}: response has no 'result'", method=method)
    parser = _RPC_RESULTS.get(method)
    raw = doc["result"]
    if parser is None:
        return RpcResponse(method, raw)
    try:
        return RpcResponse(method, parser(raw))
    except FusionDecodeError:
        raise
    except ValueError as exc:
        raise FusionDecodeError("invalid", f"{method}: {exc}", method=method) from None


# ---------------------------------------------------------------- encoders


def encode_request(method: str, param: Mapping[str, Any] | None = None) -> bytes:
    """Encode an RPC request: `{"method": m}` or `{"method": m, "param": {...}}`.

    For `getActiveOrders` / `getSecrets`, `page` must be >= 1 and `limit` within 1..500 when
    given (the SDK refuses to send anything else); raises ValueError otherwise.
    """
    if not isinstance(method, str) or not method:
        raise ValueError("method must be a non-empty string")
    msg: dict[str, Any] = {"method": method}
    if param is not None:
        body = dict(param)
        if method in ("getActiveOrders", "getSecrets"):
            _check_paging(body)
        msg["param"] = body
    return orjson.dumps(msg)


def _check_paging(body: dict[str, Any]) -> None:
    page, limit = body.get("page"), body.get("limit")
    if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1):
        raise ValueError(f"page must be an integer >= 1, got {page!r}")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= _MAX_PAGE_LIMIT
    ):
        raise ValueError(f"limit must be an integer in 1..{_MAX_PAGE_LIMIT}, got {limit!r}")


def encode_event(event: FusionEvent) -> bytes:
    """Encode a push event as the server sends it: `{"event": name, "result": payload}`."""
    return orjson.dumps({"event": event.EVENT, "result": event.to_json()})


def encode_rpc_result(method: str, result: object) -> bytes:
    """Encode an RPC response `{"method", "result"}`; typed results are written in wire form."""
    return orjson.dumps({"method": method, "result": _result_json(result)})


def _result_json(result: object) -> object:
    to_json = getattr(result, "to_json", None)
    if callable(to_json):
        return to_json()
    if isinstance(result, Sequence) and not isinstance(result, str | bytes):
        return list(result)
    return result
