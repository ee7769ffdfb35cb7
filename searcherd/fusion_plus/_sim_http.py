"""The REST side of the Fusion+ simulator: a small ASGI app (served by hypercorn).

Routes (v1.2 paths, as the SDK calls them), all behind the same Bearer key as the socket:
`GET /orders/v1.2/order/status/{hash}`, `GET /orders/v1.2/order/secrets/{hash}` and
`GET /orders/v1.2/order/active/?page=&limit=`. Errors are JSON `{"error": ...}` bodies with
the status a client must handle: 401 for a bad key, 404 for an unknown order, 400 for bad paging.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

import orjson

if TYPE_CHECKING:
    from searcherd.fusion_plus.simulator import FusionPlusSimulator

__all__ = ["HttpApp"]

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_PREFIX = ["orders", "v1.2", "order"]


class HttpApp:
    """ASGI application serving the simulator's REST endpoints."""

    def __init__(self, sim: FusionPlusSimulator) -> None:
        self._sim = sim

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        """ASGI entry point (HTTP and lifespan)."""
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        status, payload = self._route(scope)
        data = orjson.dumps(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _route(self, scope: _Scope) -> tuple[int, Any]:
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self._sim.authorized(headers.get(b"authorization")):
            return 401, {"error": "Unauthorized"}
        self._sim.http_requests.append(scope["path"])
        parts = [unquote(p) for p in scope["path"].split("/") if p]
        if scope["method"] != "GET" or parts[:3] != _PREFIX:
            return 404, {"error": "Not found"}
        rest = parts[3:]
        if rest == ["active"]:
            return self._active(parse_qs(scope.get("query_string", b"").decode("latin-1")))
        if len(rest) == 2 and rest[0] in ("status", "secrets"):
            order = self._sim.orders.get(rest[1])
            if order is None:
                return 404, {"error": f"order {rest[1]} not found"}
            return 200, order.status_json() if rest[0] == "status" else order.secrets_json()
        return 404, {"error": "Not found"}

    def _active(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            page = int(query.get("page", ["1"])[0])
            limit = int(query.get("limit", ["100"])[0])
        except ValueError:
            return 400, {"error": "page and limit must be integers"}
        if page < 1 or not 1 <= limit <= 500:
            return 400, {"error": "page must be >= 1 and limit within 1..500"}
        return 200, self._sim.active_page(page, limit).to_json()
