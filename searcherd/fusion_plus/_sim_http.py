"""The REST side of the Fusion+ simulator: a small ASGI app (served by hypercorn).

Routes (v1.2 paths, as the SDK calls them), all behind the same Bearer key as the socket:
`GET /orders/v1.2/order/status/{hash}`, `GET /orders/v1.2/order/secrets/{hash}` and
`GET /orders/v1.2/order/active/?page=&limit=`. Errors are JSON `{"error": ...}` bodies with
the status a client must handle: 401 for a bad key, 404 for an unknown order, 400 for bad paging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from searcherd._simnet import AsgiApp

if TYPE_CHECKING:
    from hypercorn.typing import HTTPScope

    from searcherd.fusion_plus.simulator import FusionPlusSimulator

__all__ = ["HttpApp"]

_PREFIX = ["orders", "v1.2", "order"]


class HttpApp(AsgiApp):
    """ASGI application serving the simulator's REST endpoints."""

    def __init__(self, sim: FusionPlusSimulator) -> None:
        self._sim = sim

    def route(self, scope: HTTPScope, body: bytes) -> tuple[int, Any]:
        """Authenticate, record the path, then answer one request (the body is never needed)."""
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
