"""The HTTP side of the Express Relay simulator: a small hand-written ASGI app (run by hypercorn).

Routes (the ones a searcher uses next to the WebSocket): ``GET /v1/opportunities``,
``POST /v1/bids``, ``GET /v1/{chain_id}/bids/{bid_id}`` (and the deprecated ``/v1/bids/{id}``),
``GET /v1/{chain_id}/bids`` (own bids, logged in), ``POST /v1/{chain_id}/bids/{bid_id}/cancel``
and ``GET /live``. Errors use the server's
``{"error": "..."}`` bodies; an unknown bearer token is a 401 on every route.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from solders.transaction import VersionedTransaction

from searcherd._simnet import AsgiApp

from ._sim_codec import ClientFrameError, bid_status_to_json, decode_wire_bid, opportunity_to_json
from .messages import EvmBidWire

if TYPE_CHECKING:
    from hypercorn.typing import HTTPScope

    from .simulator import ExpressRelaySimulator

__all__ = ["HttpApp"]

_STATUS_BY_ERROR = {
    "Unauthorized": 401,
    "Forbidden": 403,
    "The chain id is not found": 404,
    "No swap opportunity with the given id found": 404,
    "Duplicate bid": 409,
}


class HttpApp(AsgiApp):
    """ASGI application serving the simulator's HTTP endpoints."""

    def __init__(self, sim: ExpressRelaySimulator) -> None:
        self._sim = sim

    def route(self, scope: HTTPScope, body: bytes) -> tuple[int, Any]:
        """Authenticate, then answer one request (plain text where the server sends text)."""
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        ok, _key, profile_id = self._sim.authenticate(headers.get(b"authorization"))
        if not ok:
            return 401, {"error": "Invalid authorization token"}
        method: str = scope["method"]
        parts = [p for p in scope["path"].split("/") if p]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if parts == ["live"]:
            return 200, b"OK"
        if parts[:1] != ["v1"]:
            return 404, {"error": "Not found"}
        rest = parts[1:]
        if method == "GET" and rest == ["opportunities"]:
            return self._opportunities(query)
        if method == "POST" and rest == ["bids"]:
            return self._post_bid(body, profile_id)
        if method == "GET" and len(rest) == 2 and rest[0] == "bids":
            return self._bid_status(None, rest[1])
        if method == "GET" and len(rest) == 2 and rest[1] == "bids":
            if profile_id is None:
                return 401, b"Forbidden"  # logged-in-only route: plain text, not JSON
            return self._own_bids(rest[0], profile_id, query)
        if method == "GET" and len(rest) == 3 and rest[1] == "bids":
            return self._bid_status(rest[0], rest[2])
        if method == "POST" and len(rest) == 4 and rest[1] == "bids" and rest[3] == "cancel":
            if profile_id is None:
                return 401, b"Forbidden"  # logged-in-only route: plain text, not JSON
            err = self._sim.cancel_bid(profile_id, rest[0], rest[2])
            return (200, None) if err is None else (_error_status(err), {"error": err})
        return 404, {"error": "Not found"}

    def _opportunities(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        mode = query.get("mode", ["live"])[0]
        chain = query.get("chain_id", [None])[0]
        try:
            limit = min(int(query.get("limit", ["20"])[0]), 100)
        except ValueError:
            return 400, {"error": "Bad parameters: invalid limit"}
        if mode == "historical":
            if chain is None:
                return 400, {"error": "Bad parameters: chain_id is required for historical mode"}
            pool = list(self._sim.published)
        elif mode == "live":
            pool = list(self._sim.opportunities.values())
        else:
            return 400, {"error": f"Bad parameters: unknown mode {mode}"}
        if chain is not None:
            if chain not in self._sim.config.svm_chains + self._sim.config.evm_chains:
                return 404, {"error": "The chain id is not found"}
            pool = [o for o in pool if o.chain_id == chain]
        pool.sort(key=lambda o: o.creation_time)
        return 200, [opportunity_to_json(o) for o in pool[:limit]]

    def _post_bid(self, body: bytes, profile_id: str | None) -> tuple[int, Any]:
        try:
            bid = decode_wire_bid(orjson.loads(body))
            tx = None
            if not isinstance(bid, EvmBidWire):
                tx = VersionedTransaction.from_bytes(base64.b64decode(bid.transaction_b64))
        except (orjson.JSONDecodeError, ClientFrameError, ValueError, binascii.Error) as e:
            text = (
                str(e) if isinstance(e, ClientFrameError) else "Failed to deserialize the JSON body"
            )
            return 400, {"error": text}
        result = self._sim.accept_bid(bid, tx, profile_id)  # HTTP bids get no WS pushes
        if isinstance(result, str):
            return _error_status(result), {"error": result}
        return 200, {"status": "OK", "id": result.bid_id}

    def _bid_status(self, chain_id: str | None, bid_id: str) -> tuple[int, Any]:
        if (
            chain_id is not None
            and chain_id not in self._sim.config.svm_chains + self._sim.config.evm_chains
        ):
            return 404, {"error": "The chain id is not found"}
        record = self._sim.bids.get(bid_id)
        if record is None or (chain_id is not None and record.chain_id != chain_id):
            return 404, {"error": "Bid with the specified id was not found"}
        return 200, bid_status_to_json(record.status, evm=record.is_evm)

    def _own_bids(
        self, chain_id: str, profile_id: str, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        # `GET /v1/{chain_id}/bids?from_time=`: the profile's own bids initiated at or after
        # `from_time` (RFC 3339), oldest first, one page of 20, as on the server.
        if chain_id not in self._sim.config.svm_chains + self._sim.config.evm_chains:
            return 404, {"error": "The chain id is not found"}
        since = -float("inf")
        if "from_time" in query:
            try:
                since = _parse_rfc3339(query["from_time"][0])
            except ValueError:
                return 400, {"error": "Bad parameters: invalid from_time"}
        own = sorted((b for b in self._sim.bids.values() if b.profile_id == profile_id
                      and b.chain_id == chain_id and b.initiated_at >= since),
                     key=lambda b: b.initiated_at)[:20]  # fmt: skip
        items = [
            {
                "id": b.bid_id,
                "chain_id": b.chain_id,
                "initiation_time": _rfc3339(b.initiated_at),
                "profile_id": b.profile_id,
                "status": bid_status_to_json(b.status, evm=b.is_evm),
                "transaction": base64.b64encode(b.transaction).decode() if b.transaction else None,
                "bid_amount": b.amount or 0,
            }
            for b in own
        ]
        return 200, {"items": items}


def _rfc3339(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_rfc3339(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _error_status(err: str) -> int:
    return _STATUS_BY_ERROR.get(err, 400)
