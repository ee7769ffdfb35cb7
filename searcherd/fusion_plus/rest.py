"""The Fusion+ REST endpoints used next to the socket: one order's status, its secrets.

The socket replays nothing: an order that was filled or cancelled while we were disconnected
simply is not in the next active-orders list. `order_status` tells what became of it
(`GET {http_url}/orders/v1.2/order/status/{hash}`), and `secrets` fetches the published secrets
of one order (`GET {http_url}/orders/v1.2/order/secrets/{hash}`). Both send the same
`Authorization: Bearer` header as the socket; errors are `RestError` with the HTTP status and a
secret-free message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import attrs
import httpx
import orjson

from searcherd.fusion_plus._wire import ShapeError, as_obj, get_str, opt_str, opt_u256
from searcherd.fusion_plus.messages import SecretsResult

if TYPE_CHECKING:
    from searcherd._secrets import Secret

__all__ = ["FusionRestClient", "OrderStatus", "RestError", "RestFill", "book_status"]

_API_VERSION: Final = "v1.2"
_MAX_BODY: Final = 200
# The REST statuses mapped onto the book's; "pending" means still live (None: no change).
_BOOK_STATUS: Final[dict[str, str | None]] = {
    "pending": None,
    "executed": "filled",
    "expired": "expired",
    "cancelled": "cancelled",
    "refunding": "refunded",
    "refunded": "refunded",
    "unpublished": "invalid",
}


def book_status(rest_status: str) -> str | None:
    """The book status for a REST order status; None when the order is still live.

    An unknown REST status is passed through as-is (it is final for the book: the order is not
    among the active ones any more).
    """
    return _BOOK_STATUS.get(rest_status, rest_status)


class RestError(Exception):
    """A REST call failed; `status` is the HTTP status (None for network errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class RestFill:
    """One fill of an order as the status endpoint reports it."""

    status: str
    tx_hash: str | None
    filled_maker_amount: int | None


@attrs.frozen
class OrderStatus:
    """The parts of `OrderStatusResponse` the daemon uses; `raw` keeps the whole answer."""

    order_hash: str
    status: str
    fills: tuple[RestFill, ...] = ()
    cancel_tx: str | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OrderStatus:
        """Decode; raises ShapeError."""
        fills = []
        raw_fills = d.get("fills") or []
        if not isinstance(raw_fills, list):
            raise ShapeError("status.fills must be a list")
        for i, f in enumerate(raw_fills):
            obj = as_obj(f, f"status.fills[{i}]")
            fills.append(
                RestFill(
                    status=opt_str(obj, "status", f"status.fills[{i}]") or "",
                    tx_hash=opt_str(obj, "txHash", f"status.fills[{i}]"),
                    filled_maker_amount=opt_u256(obj, "filledMakerAmount", f"status.fills[{i}]"),
                )
            )
        return cls(
            order_hash=get_str(d, "orderHash", "status"),
            status=get_str(d, "status", "status"),
            fills=tuple(fills),
            cancel_tx=opt_str(d, "cancelTx", "status"),
            raw=d,
        )


class FusionRestClient:
    """Calls the REST endpoints with the venue's key over a shared `httpx.AsyncClient`."""

    def __init__(
        self, http_url: str, api_key: Secret | None, client: httpx.AsyncClient, *, timeout: float
    ) -> None:
        self._base = http_url.rstrip("/")
        self._key = api_key
        self._client = client
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<FusionRestClient {self._base}>"

    async def _get(self, path: str) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        url = f"{self._base}/orders/{_API_VERSION}/order/{path}"
        try:
            response = await self._client.get(url, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as exc:
            # httpx messages name the URL, never our headers.
            raise RestError(f"GET {path}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            body = response.text[:_MAX_BODY]
            raise RestError(
                f"GET {path}: HTTP {response.status_code}: {body}", response.status_code
            )
        try:
            return as_obj(orjson.loads(response.content), "body")
        except (orjson.JSONDecodeError, ShapeError) as exc:
            raise RestError(f"GET {path}: bad JSON body: {exc}", response.status_code) from None

    async def order_status(self, order_hash: str) -> OrderStatus:
        """What became of one order (`.../order/status/{hash}`); raises RestError."""
        body = await self._get(f"status/{quote(order_hash, safe='')}")
        try:
            return OrderStatus.from_json(body)
        except ShapeError as exc:
            raise RestError(f"order status {order_hash}: {exc}") from None

    async def secrets(self, order_hash: str) -> SecretsResult:
        """The published secrets of one order (`.../order/secrets/{hash}`); raises RestError."""
        body = await self._get(f"secrets/{quote(order_hash, safe='')}")
        try:
            return SecretsResult.from_json(body, "body")
        except ShapeError as exc:
            raise RestError(f"order secrets {order_hash}: {exc}") from None
