"""A local Fusion+ server: the test partner of the venue and of `searcherd simulate`.

It speaks the protocol as the real service does, on loopback:

- WebSocket on `/ws/v1.2` (trio-websocket), `Authorization: Bearer <key>` checked at the
  upgrade (a bad or missing key is a 401); every event pushed to every client as
  `{"event", "result"}`; the RPC methods `ping`, `getAllowedMethods`, `getActiveOrders`
  (paginated, with `meta`) and `getSecrets` (`{"error"}` when the key may not call it);
- REST next to it (hypercorn + a small ASGI app): order status, published secrets, active orders.

Orders are generated for real (`_sim_orders`): real v1.2 / v1.1 extensions, keccak hashlocks,
consistent amounts and timestamps. Tests drive everything deterministically through the
injection methods (`create_order`, `fill`, `share_secret`, ...); with `flow_interval > 0` a
seeded random flow of orders and events runs by itself (for `searcherd simulate`). Fault
switches: `drop_clients` (abrupt TCP reset), `stall` / `resume` (no bytes, no pongs, no RPC
answers), `send_raw` (e.g. a non-JSON frame), `send_unknown_event`, and `refuse_connections`
(clients stay away, so events happen while nobody listens and are missed for good). All timing
uses the trio clock and `config.clock` (unix seconds), so it runs under `autojump_clock`.

Usage::

    sim = await nursery.start(serve, SimulatorConfig(api_keys=("k",)))
    sim.ws_url, sim.http_url
"""

from __future__ import annotations

import itertools
import math
import random
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson
import structlog
import trio

from searcherd._simnet import SimPeer, start_servers
from searcherd.fusion_plus._sim_http import HttpApp
from searcherd.fusion_plus._sim_orders import SimFill, SimOrder, make_order
from searcherd.fusion_plus.messages import (
    ActiveOrdersPage,
    FusionEvent,
    OrderAllowanceChange,
    OrderBalanceChange,
    OrderCancelled,
    OrderFilled,
    OrderFilledPartially,
    OrderInvalid,
    PageMeta,
    PublicSecret,
    SecretsError,
    SecretShared,
    SecretsResult,
    encode_event,
    encode_rpc_result,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_websocket import WebSocketRequest

    from searcherd._simnet import FaultStream

__all__ = [
    "WS_PATH",
    "FusionPlusSimulator",
    "SimFill",
    "SimOrder",
    "SimulatorConfig",
    "serve",
    "venue_overrides",
]

_log = structlog.get_logger(__name__)

WS_PATH: Final = "/ws/v1.2"
DEFAULT_RESOLVER: Final = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
_OTHER_RESOLVERS: Final = (
    "0x90f79bf6eb2c4f870365e785982e1f101e93b906",
    "0x15d34aaf54267db7c0c6ddb9e4c4a8e3e1e1b9c1",
)
_BASE_METHODS: Final = ("ping", "getAllowedMethods", "getActiveOrders")


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """How the simulator listens, whom it lets in, and what it generates.

    `api_keys` empty means no auth. `secrets_keys` may call `getSecrets` (others get the
    `{"error"}` shape). `resolver_address` is the taker of "our" fills (`our_fill_share` of the
    generated ones). `flow_interval` 0 turns the generated flow off (tests inject events).
    `clock` gives unix seconds (tests pass one derived from the trio clock).
    """

    host: str = "127.0.0.1"
    ws_port: int = 0
    http_port: int = 0
    api_keys: tuple[str, ...] = ("sim-key",)
    secrets_keys: tuple[str, ...] = ()
    resolver_address: str = DEFAULT_RESOLVER
    seed: int = 0
    flow_interval: float = 0.0
    max_active: int = 20
    our_fill_share: float = 0.3
    client_queue: int = 4096
    clock: Callable[[], float] = attrs.field(default=time.time, eq=False, repr=False)


class FusionPlusSimulator:
    """The running simulator (returned by `nursery.start(serve, config)`)."""

    def __init__(self, config: SimulatorConfig, nursery: trio.Nursery) -> None:
        self.config = config
        self.ws_url = ""
        self.http_url = ""
        #: Every order ever created, by hash (the record tests compare against).
        self.orders: dict[str, SimOrder] = {}
        #: Every event pushed, in order, and how many were pushed while no client listened.
        self.events: list[FusionEvent] = []
        self.missed_events = 0
        self.clients: dict[int, SimPeer] = {}
        self.connections_accepted = 0
        self.rpc_requests: list[dict[str, Any]] = []
        self.http_requests: list[str] = []
        #: Unexpected exceptions in handlers (a healthy run keeps this empty).
        self.internal_errors: list[BaseException] = []
        self._nursery = nursery
        self._rng = random.Random(f"{config.seed}:orders")
        self._flow_rng = random.Random(f"{config.seed}:flow")
        self._ids = itertools.count(1)
        self._refuse: int | None = None

    # ------------------------------------------------------------------ startup

    async def _start(self) -> None:
        cfg = self.config
        servers = await start_servers(
            self._nursery,
            host=cfg.host,
            ws_port=cfg.ws_port,
            http_port=cfg.http_port,
            ws_path=WS_PATH,
            label="fusion_sim",
            serve_ws=self._serve_request,
            http_app=HttpApp(self),
            internal_errors=self.internal_errors,
        )
        self.ws_url, self.http_url = servers.ws_url, servers.http_url
        if cfg.flow_interval > 0:
            self._nursery.start_soon(self._flow_loop)
        _log.info("fusion_sim_started", ws_url=self.ws_url, http_url=self.http_url)

    def stop(self) -> None:
        """Stop serving; `serve` then returns."""
        self._nursery.cancel_scope.cancel()

    def now(self) -> int:
        """The simulator's unix time in whole seconds."""
        return int(self.config.clock())

    def authorized(self, header: str | None) -> bool:
        """Whether an `Authorization` header value carries an accepted key."""
        if not self.config.api_keys:
            return True
        return self._key_of(header) is not None

    def _key_of(self, header: str | None) -> str | None:
        if header is None:
            return None
        scheme, _, token = header.partition(" ")
        token = token.strip()
        return token if scheme == "Bearer" and token in self.config.api_keys else None

    # ------------------------------------------------------------------ WebSocket

    async def _serve_request(self, request: WebSocketRequest, stream: FaultStream | None) -> None:
        headers = {k.lower(): v.decode("latin-1") for k, v in request.headers}
        json_type = [(b"content-type", b"application/json")]
        if request.path.split("?")[0].rstrip("/") != WS_PATH:
            await request.reject(404, extra_headers=json_type, body=b'{"error":"Not found"}')
            return
        if self._refuse is not None:
            body = b'{"error":"Service unavailable"}'
            await request.reject(self._refuse, extra_headers=json_type, body=body)
            return
        if not self.authorized(headers.get(b"authorization")):
            await request.reject(401, extra_headers=json_type, body=b'{"error":"Unauthorized"}')
            return
        key = self._key_of(headers.get(b"authorization"))
        ws = await request.accept()
        client = SimPeer(
            next(self._ids), ws, stream, self.config.client_queue, label="fusion_sim_client"
        )
        self.clients[client.peer_id] = client
        self.connections_accepted += 1
        _log.info("fusion_sim_connected", client=client.peer_id)
        try:
            await client.run(partial(self._read_loop, client, key))
        finally:
            del self.clients[client.peer_id]
            _log.info("fusion_sim_disconnected", client=client.peer_id)

    async def _read_loop(self, client: SimPeer, key: str | None) -> None:
        while True:
            frame = await client.ws.get_message()
            try:
                doc = orjson.loads(frame)
            except orjson.JSONDecodeError:
                _log.info("fusion_sim_bad_request", client=client.peer_id)
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("method"), str):
                continue
            self.rpc_requests.append(doc)
            if client.stalled:
                continue  # a stalled server answers nothing
            result = self._rpc(doc["method"], doc.get("param"), key)
            if result is not None:
                client.push(encode_rpc_result(doc["method"], result).decode())

    def _rpc(self, method: str, param: object, key: str | None) -> object | None:
        params = param if isinstance(param, dict) else {}
        may_secrets = key is not None and key in self.config.secrets_keys
        if method == "ping":
            return "pong"
        if method == "getAllowedMethods":
            return [*_BASE_METHODS, "getSecrets"] if may_secrets else list(_BASE_METHODS)
        if method == "getActiveOrders":
            page, limit = params.get("page", 1), params.get("limit", 100)
            if not isinstance(page, int) or not isinstance(limit, int) or page < 1:
                return {"error": "bad paging"}
            return self.active_page(page, max(1, min(limit, 500)))
        if method == "getSecrets":
            if not may_secrets:
                return SecretsError("not allowed")
            shared = [s for o in self.orders.values() for _, s in sorted(o.shared.items())]
            return SecretsResult(order_type="MultipleFills", secrets=tuple(shared))
        _log.info("fusion_sim_unknown_method", method=method[:80])
        return None

    def active_page(self, page: int, limit: int) -> ActiveOrdersPage:
        """One page of the active-orders list, oldest order first."""
        active = [o for o in self.orders.values() if o.is_active]
        pages = max(1, math.ceil(len(active) / limit))
        items = active[(page - 1) * limit : page * limit]
        meta = PageMeta(
            total_items=len(active), items_per_page=limit, total_pages=pages, current_page=page
        )
        return ActiveOrdersPage(tuple(o.active_item() for o in items), meta)

    # ------------------------------------------------------------------ pushing

    def _broadcast(self, frame: str) -> None:
        live = [c for c in self.clients.values() if not c.closed]
        if not live:
            self.missed_events += 1
        for client in live:
            client.push(frame)

    def push_event(self, event: FusionEvent) -> None:
        """Push one event to every connected client (missed by everyone away)."""
        self.events.append(event)
        self._broadcast(encode_event(event).decode())

    def send_raw(self, frame: str) -> None:
        """Push an arbitrary text frame (e.g. "not json") to every client."""
        self._broadcast(frame)

    def send_unknown_event(self, name: str = "order_mystery") -> None:
        """Push an event type the protocol does not have."""
        self._broadcast(orjson.dumps({"event": name, "result": {"orderHash": "0x00"}}).decode())

    # ------------------------------------------------------------------ injection

    def _order(self, order_hash: str) -> SimOrder:
        try:
            return self.orders[order_hash]
        except KeyError:
            raise KeyError(f"no simulated order {order_hash}") from None

    def create_order(self, *, announce: bool = True, **kwargs: Any) -> SimOrder:
        """Create an order (see `_sim_orders.make_order` for the keywords) and push it.

        With `announce=False` it is only listed as active (as if created while nobody listened).
        """
        kwargs.setdefault("resolvers", (self.config.resolver_address, *_OTHER_RESOLVERS))
        order = make_order(self._rng, self.now(), **kwargs)
        self.orders[order.order_hash] = order
        if announce:
            self.push_event(order.created_event())
        return order

    def change_balance(self, order_hash: str, balance: int) -> None:
        """The maker's balance changed: `order_balance_change`."""
        order = self._order(order_hash)
        order.balance = balance
        self.push_event(OrderBalanceChange(order_hash, order.remaining, balance))

    def change_allowance(self, order_hash: str, allowance: int) -> None:
        """The maker's allowance changed: `order_allowance_change`."""
        order = self._order(order_hash)
        order.allowance = allowance
        self.push_event(OrderAllowanceChange(order_hash, order.remaining, allowance))

    def fill_partially(self, order_hash: str, amount: int, *, taker: str | None = None) -> SimFill:
        """A fill of `amount` (not the last one): `order_filled_partially`."""
        order = self._order(order_hash)
        if amount >= order.remaining:
            raise ValueError("a partial fill must leave something; use fill()")
        fill = order.record_fill(amount, taker or _OTHER_RESOLVERS[0], self.now(), self._rng)
        self.push_event(OrderFilledPartially(order_hash, order.remaining))
        return fill

    def fill(self, order_hash: str, *, taker: str | None = None) -> SimFill:
        """Fill what remains: `order_filled` (the order leaves the active list)."""
        order = self._order(order_hash)
        fill = order.record_fill(
            order.remaining, taker or _OTHER_RESOLVERS[0], self.now(), self._rng
        )
        self.push_event(OrderFilled(order_hash))
        return fill

    def share_secret(self, order_hash: str, fill: SimFill | None = None) -> PublicSecret:
        """The maker publishes the secret of `fill` (default: the latest): `secret_shared`."""
        order = self._order(order_hash)
        if fill is None:
            if not order.fills:
                raise ValueError(f"order {order_hash} has no fill to share a secret for")
            fill = order.fills[-1]
        secret = order.public_secret(fill)
        order.shared[fill.idx] = secret
        self.push_event(SecretShared(secret))
        return secret

    def cancel(self, order_hash: str) -> None:
        """The maker cancels: `order_cancelled`."""
        order = self._order(order_hash)
        order.status = "cancelled"
        order.cancel_tx = "0x" + self._rng.randbytes(32).hex()
        self.push_event(OrderCancelled(order_hash, order.remaining))

    def invalidate(self, order_hash: str) -> None:
        """The relayer declares the order unfillable: `order_invalid`."""
        self._order(order_hash).status = "expired"
        self.push_event(OrderInvalid(order_hash))

    def expire(self, order_hash: str) -> None:
        """The order expires silently (no event; REST says `expired`)."""
        self._order(order_hash).status = "expired"

    # ------------------------------------------------------------------ faults

    def drop_clients(self) -> None:
        """Abruptly close every connection (TCP reset, no close frame)."""
        for client in list(self.clients.values()):
            client.drop("fault")

    def stall(self) -> None:
        """Stop sending anything (frames, pongs) and answering RPC on current connections.

        New connections are served normally (a client that reconnects gets a working server).
        """
        for client in self.clients.values():
            if client.stream is not None:
                client.stream.stall()

    def resume(self) -> None:
        """Undo `stall` on the connections that are still open."""
        for client in self.clients.values():
            if client.stream is not None:
                client.stream.resume()

    def refuse_connections(self, status: int | None = 503) -> None:
        """Reject every new upgrade with `status` (None: accept again)."""
        self._refuse = status

    # ------------------------------------------------------------------ generated flow

    async def _flow_loop(self) -> None:
        while True:
            await trio.sleep(self.config.flow_interval)
            try:
                self._flow_step()
            except (KeyError, ValueError) as exc:  # never let the flow die on a bad draw
                _log.info("fusion_sim_flow_skip", error=str(exc))

    def _taker(self) -> str:
        ours = self._flow_rng.random() < self.config.our_fill_share
        return self.config.resolver_address if ours else _OTHER_RESOLVERS[0]

    def _flow_step(self) -> None:
        rng = self._flow_rng
        now = self.now()
        for order in [o for o in self.orders.values() if o.is_active and now > o.deadline]:
            order.status = "expired"  # silence, as on the real feed
        active = [o for o in self.orders.values() if o.is_active]
        if len(active) < self.config.max_active and (not active or rng.random() < 0.35):
            parts = rng.choice((1, 1, 3))
            self.create_order(version=rng.choice(("1.2", "1.2", "1.1")), parts=parts)
            return
        order = rng.choice(active)
        roll = rng.random()
        if roll < 0.15:
            self.change_balance(
                order.order_hash, rng.randrange(order.remaining, 2 * order.remaining + 1)
            )
        elif roll < 0.25:
            self.change_allowance(order.order_hash, rng.choice((0, (1 << 256) - 1)))
        elif roll < 0.45 and order.multi and order.remaining > 1:
            fill = self.fill_partially(order.order_hash, order.remaining // 2, taker=self._taker())
            self.share_secret(order.order_hash, fill)
        elif roll < 0.8:
            fill = self.fill(order.order_hash, taker=self._taker())
            self.share_secret(order.order_hash, fill)
        elif roll < 0.9:
            self.cancel(order.order_hash)
        else:
            self.invalidate(order.order_hash)


async def serve(
    config: SimulatorConfig | None = None,
    *,
    task_status: trio.TaskStatus[FusionPlusSimulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the simulator until cancelled; `nursery.start` returns the running simulator."""
    async with trio.open_nursery() as nursery:
        sim = FusionPlusSimulator(config or SimulatorConfig(), nursery)
        await sim._start()
        task_status.started(sim)


def venue_overrides(sim: FusionPlusSimulator) -> dict[str, Any]:
    """The `[fusion_plus]` keys that point the venue at a running simulator.

    For `searcherd simulate` / `run --simulate`: merge these (and the simulator's first API key
    and resolver address) into the venue's config.
    """
    return {
        "ws_url": sim.ws_url,
        "http_url": sim.http_url,
        "resolver_address": sim.config.resolver_address,
        "api_key": sim.config.api_keys[0] if sim.config.api_keys else None,
    }
