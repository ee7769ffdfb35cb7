"""The Fusion+ venue: one resilient socket, the order book, the state table, fills.

Data flow (one direction): frame -> `decode_frame` (once) -> order book -> state table rows
(`orders`, `order_events`, `secrets`) and a `FusionOrder` snapshot offered to strategies ->
their `FillIntent` -> `submit` (risk gate, `fill_intents` row) -> the `ResolverExecutor`.

Connection: the shared `Connection` core (protocol pings, liveness watchdog, backoff); this
module adds the session. After every (re)connect, `_on_connected` reseeds the book from
`getActiveOrders` (every page) and resolves over REST the orders that vanished while the socket
was down (the feed replays nothing), before the connection reports healthy. An app-level `ping`
RPC keeps a quiet feed provably fresh. A periodic sweep expires orders past their deadline (no
event says so) and raises the alarm when a private escrow window of one of our fills is about
to close.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
import trio

from searcherd.bids import BidUpdate, FillIntent
from searcherd.connection import Connection, ConnectionSettings, NotConnected
from searcherd.fusion_plus._rpc import RpcClient, RpcError
from searcherd.fusion_plus.executor import FillQueue, RecordingExecutor, ResolverExecutor
from searcherd.fusion_plus.messages import (
    FusionDecodeError,
    OrderCreated,
    RpcResponse,
    SecretShared,
    decode_frame,
)
from searcherd.fusion_plus.orderbook import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    BookChange,
    FusionOrder,
    OrderBook,
    closing_windows,
)
from searcherd.fusion_plus.rest import FusionRestClient, RestError, book_status

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Sequence

    from searcherd.bids import BidIntent
    from searcherd.config import FusionPlusConfig
    from searcherd.connection import Link
    from searcherd.fusion_plus.messages import ActiveOrdersPage, FusionEvent, PublicSecret
    from searcherd.metrics import Metrics
    from searcherd.risk import RiskGate
    from searcherd.store import StateStore
    from searcherd.transport import Transport

__all__ = ["VENUE", "FusionPlusVenue", "OpportunitySink", "normalize_ws_url"]

_log = structlog.get_logger(__name__)

VENUE: Final = "fusion_plus"
_WS_VERSION: Final = "v1.2"
_VERSION_RE: Final = re.compile(r"/v\d+(?:\.\d+)?$")
_SWEEP_INTERVAL: Final = 5.0
_REST_CONCURRENCY: Final = 8
_LOG_EVERY: Final = 10.0  # s between two log lines about bad frames of one kind


def normalize_ws_url(url: str, version: str = _WS_VERSION) -> str:
    """The socket URL with exactly one version segment: appended when missing, never doubled.

    `http(s)://` becomes `ws(s)://` (as the SDK does). A URL already ending in a version
    (`/v1.2`, `/v1.0`) keeps it; a doubled one (`/v1.2/v1.2`) is collapsed.
    """
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    while True:
        match = _VERSION_RE.search(path)
        if match is None:
            path = f"{path}/{version}"
            break
        rest = path[: match.start()]
        if not rest.endswith(match.group(0)):
            break
        path = rest  # drop one copy of a doubled version segment
    return urlunsplit((scheme, parts.netloc, path, parts.query, parts.fragment))


class OpportunitySink(Protocol):
    """Where orders and fill statuses go: the evaluator. Both calls must not block."""

    def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
        """Hand one order snapshot to the strategies."""
        ...

    def bid_status(self, update: BidUpdate) -> None:
        """Tell the strategy that made it what became of a fill intent."""
        ...


class _Throttle:
    """Logs one line per key per `_LOG_EVERY` seconds, counting what it held back."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, key: str, event: str, **kw: Any) -> None:
        now = trio.current_time()
        if now < self._next.get(key, float("-inf")):
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._next[key] = now + _LOG_EVERY
        _log.warning(event, suppressed=self._held.pop(key, 0), **kw)


class _View:
    """The :class:`~searcherd.strategy.FusionPlusView` handed to strategies."""

    def __init__(self, venue: FusionPlusVenue) -> None:
        self.order = venue.order
        self.active_orders = venue.active_orders


class FusionPlusVenue:
    """The Fusion+ venue as the app wires it (see the module docstring).

    `view` is what strategies may consult (`order`, `active_orders`). `clock` gives unix
    seconds (deadlines and escrow windows are unix times); `http` is a shared
    `httpx.AsyncClient` (one is opened in `run` when None); `transport` replaces the default
    WebSocket transport (the SDK's "custom provider").
    """

    def __init__(
        self,
        config: FusionPlusConfig,
        *,
        store: StateStore,
        metrics: Metrics,
        risk: RiskGate,
        sink: OpportunitySink,
        dry_run: bool,
        executor: ResolverExecutor | None = None,
        transport: Transport | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.dry_run = dry_run
        self._fills = FillQueue(executor or RecordingExecutor(), self._fill_done)
        self._store = store
        self._metrics = metrics
        self._risk = risk
        self._sink = sink
        self._http = http
        self._clock = clock
        self._book = OrderBook(config.resolver_address)
        self._rpc = RpcClient(config.rpc_timeout)
        self._rest: FusionRestClient | None = None
        key = config.api_key.reveal() if config.api_key is not None else None
        settings = ConnectionSettings(
            url=normalize_ws_url(config.ws_url),
            headers=(("Authorization", f"Bearer {key}"),) if key else (),
            liveness_window=config.liveness_window,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            backoff_max=config.backoff_max,
            # A reseed walks every page and may resolve vanished orders over REST.
            setup_timeout=max(60.0, 6 * config.rpc_timeout),
        )
        self._conn = Connection(
            VENUE,
            settings,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            transport=transport,
            rng=rng,
        )
        self._throttle = _Throttle()
        self._ours: set[str] = set()
        self._alarmed: set[tuple[str, int, str]] = set()
        self._setups = 0
        self.decode_errors = 0
        self.unknown_messages = 0
        self.alarms = 0

    def __repr__(self) -> str:
        return f"<FusionPlusVenue {self._conn.settings.url!r}>"

    # ------------------------------------------------------------------ public API

    @property
    def executor(self) -> ResolverExecutor:
        """Where risk-gated fill intents go (default: `RecordingExecutor`)."""
        return self._fills.executor

    @executor.setter
    def executor(self, executor: ResolverExecutor) -> None:
        self._fills.executor = executor

    @property
    def view(self) -> _View:
        """The read-only book strategies consult (`order`, `active_orders`): not the venue, so
        a strategy cannot reach its submitter, executor or sweep."""
        return _View(self)

    @property
    def book(self) -> OrderBook:
        """The order book itself (for status output and tests)."""
        return self._book

    def order(self, order_hash: str) -> FusionOrder | None:
        """One order's latest snapshot, or None."""
        return self._book.get(order_hash)

    def active_orders(self) -> Sequence[FusionOrder]:
        """Orders still fillable: active status and not past their deadline (checked lazily)."""
        now = self._clock()
        return [o for o in self._book.active() if not o.is_expired_at(now)]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the connection, the executor and the sweep until cancelled."""
        own_http = self._http is None
        http = self._http or httpx.AsyncClient()
        try:
            self._rest = FusionRestClient(
                self.config.http_url, self.config.api_key, http, timeout=self.config.rpc_timeout
            )
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._conn.run)
                nursery.start_soon(self._fills.run)
                nursery.start_soon(self._sweep_loop)
                nursery.start_soon(self._app_ping_loop)
                task_status.started()
        finally:
            if own_http:
                with trio.CancelScope(shield=True):
                    await http.aclose()

    async def wait_ready(self) -> None:
        """Return once connected, the book reseeded and vanished orders resolved."""
        await self._conn.wait_healthy()

    def submit(self, strategy: str, intent: BidIntent, received_at: float) -> None:
        """Take one fill intent (sync): check it, risk-gate it, record it, queue it.

        Outcomes, each recorded as a `fill_intents` row and told to the strategy: `invalid`
        (unknown or finished order, bad amount), `blocked` (risk gate), `dry_run`, `rejected`
        (executor queue full), or `submitted` (handed to the executor; `failed` if it raised).
        """
        local_id = uuid.uuid4().hex
        if not isinstance(intent, FillIntent):
            _log.error("fusion_not_a_fill_intent", strategy=strategy, type=type(intent).__name__)
            return
        order = self._book.get(intent.order_hash)
        reason: str | None = None
        if order is None or not order.is_active or order.is_expired_at(self._clock()):
            status, reason = "invalid", "order is not active"
        elif intent.making_amount <= 0 or (
            order.remaining_maker_amount is not None
            and intent.making_amount > order.remaining_maker_amount
        ):
            status, reason = "invalid", "making_amount is not within the remaining amount"
        elif (blocked := self._risk.blocked_reason(strategy, intent.making_amount)) is not None:
            status, reason = "blocked", blocked
            self._metrics.risk_blocked.labels(strategy=strategy, reason=blocked).inc()
        elif self.dry_run:
            status = "dry_run"
        else:
            assert order is not None
            if not self._fills.put(local_id, strategy, intent, order):
                status, reason = "rejected", "executor queue full"
            else:
                status = "submitted"
                self._risk.sent(strategy)
                self._metrics.bids_submitted.labels(strategy=strategy, venue=VENUE).inc()
        self._store.add_fill_intent(
            intent.order_hash,
            strategy,
            intent.making_amount,
            at=self._clock(),
            detail={
                "local_id": local_id,
                "status": status,
                "reason": reason,
                "src_chain_id": intent.src_chain_id,
                "taking_amount": intent.taking_amount,
                "note": intent.note,
            },
        )
        _log.info(
            "fusion_fill_intent",
            strategy=strategy,
            order_hash=intent.order_hash,
            status=status,
            reason=reason,
            age=round(trio.current_time() - received_at, 6),
        )
        self._tell(local_id, strategy, intent, status, reason)

    async def drain(self) -> None:
        """Wait until every intent handed to the executor has been executed."""
        await self._fills.drain()

    def snapshot(self) -> dict[str, Any]:
        """Connection and book state for `/healthz` and `searcherd status` (no secrets)."""
        health = self._conn.health
        age = None
        if health.last_message_at is not None:
            age = round(trio.current_time() - health.last_message_at, 3)
        return {
            "venue": VENUE,
            "connected": health.connected,
            "healthy": health.healthy,
            "last_message_age": age,
            "reconnects": health.reconnects,
            "orders": self._book.counts(),
            "last_error": health.last_error,
            "decode_errors": self.decode_errors,
            "unknown_messages": self.unknown_messages,
            "window_alarms": self.alarms,
            "executor_pending": self._fills.pending,
        }

    def is_fresh(self) -> bool:
        """Healthy and a frame arrived within the liveness window."""
        health = self._conn.health
        if not health.healthy or health.last_message_at is None:
            return False
        return trio.current_time() - health.last_message_at < self.config.liveness_window

    # ------------------------------------------------------------------ socket callbacks

    def _on_message(self, frame: str | bytes, received_at: float) -> None:
        try:
            msg = decode_frame(frame)
        except FusionDecodeError as exc:
            if exc.kind == "unknown_event":
                self.unknown_messages += 1
                self._metrics.unknown_messages.labels(venue=VENUE, kind="event").inc()
                self._throttle.log(f"unknown:{exc.event}", "fusion_unknown_event", name=exc.event)
            else:
                self.decode_errors += 1
                self._metrics.decode_errors.labels(venue=VENUE, kind=exc.kind).inc()
                self._throttle.log(
                    exc.kind, "fusion_decode_error", kind=exc.kind, detail=exc.detail
                )
            if exc.method is not None:
                self._rpc.fail_method(exc.method, exc)
            return
        if isinstance(msg, RpcResponse):
            self._rpc.deliver(msg)
            return
        self._record(self._book.apply(msg, received_at), received_at, msg)

    def _on_disconnected(self, error: BaseException | None) -> None:
        self._rpc.fail_all("socket closed" if error is None else f"socket lost: {error}")
        self._metrics.venue_connected.labels(venue=VENUE).set(0)

    async def _on_connected(self, link: Link) -> None:
        started = trio.current_time()
        self._setups += 1
        if self._setups > 1:
            self._metrics.reconnects.labels(venue=VENUE).inc()
        known = {o.order_hash for o in self._book.active()}
        seen: set[str] = set()

        def on_page(page: ActiveOrdersPage) -> None:
            # Applied page by page, in frame order, so events that follow a page win over it.
            at = trio.current_time()
            for item in page.items:
                seen.add(item.order_hash)
                current = self._book.get(item.order_hash)
                if current is not None and current.is_final:
                    continue  # a terminal event already said more than this list can
                order = self._book.seed(item, at)
                self._record(BookChange("reseed", order.order_hash, order), at, None)

        count = await self._rpc.all_active_orders(link.send, self.config.page_limit, on_page)
        vanished = [
            h
            for h in known - seen
            if (o := self._book.get(h)) is not None and o.is_active and o.updated_at < started
        ]
        follow_up = sorted(set(vanished) | self._ours)
        if follow_up:
            async with trio.open_nursery() as nursery:
                limiter = trio.CapacityLimiter(_REST_CONCURRENCY)
                for order_hash in follow_up:
                    nursery.start_soon(self._follow_up, order_hash, order_hash in vanished, limiter)
        self._metrics.venue_connected.labels(venue=VENUE).set(1)
        _log.info(
            "fusion_reseeded",
            active=count,
            vanished=len(vanished),
            book=self._book.counts(),
            setup_s=round(trio.current_time() - started, 3),
        )

    async def _follow_up(
        self, order_hash: str, vanished: bool, limiter: trio.CapacityLimiter
    ) -> None:
        """Resolve a vanished order's status and refresh our fills' secrets over REST."""
        assert self._rest is not None
        async with limiter:
            try:
                if vanished:
                    rest = await self._rest.order_status(order_hash)
                    status = book_status(rest.status)
                    at = trio.current_time()
                    self._store.add_order_event(
                        order_hash, "rest_status", at=self._clock(), detail={"status": rest.status}
                    )
                    if status is not None:
                        self._record(
                            self._book.resolve(order_hash, status, at, "rest_status"), at, None
                        )
                    if status != "filled" and order_hash not in self._ours:
                        return
                secrets = await self._rest.secrets(order_hash)
            except RestError as exc:
                _log.warning("fusion_rest_failed", order_hash=order_hash, error=str(exc))
                return
        for secret in secrets.secrets:
            if secret.order_hash == order_hash:
                at = trio.current_time()
                self._record(self._book.add_secret(secret, at, "rest_secret"), at, None)

    # ------------------------------------------------------------------ recording

    def _record(self, change: BookChange, received_at: float, event: FusionEvent | None) -> None:
        """Write what one change did to the state table and metrics, then offer the order."""
        wall = self._clock()
        order = change.order
        if change.event not in ("reseed", "rest_status"):  # those write their own rows
            self._store.add_order_event(
                change.order_hash, change.event, at=wall, detail=_event_detail(event, change)
            )
        if change.secret is not None and change.new_secret:
            secret = change.secret
            self._store.add_secret(
                secret.order_hash,
                secret.idx,
                secret.secret,
                at=wall,
                src_immutables=secret.src_immutables.to_json(),
                dst_immutables=secret.dst_immutables.to_json(),
            )
            if self._book.is_ours(secret):
                _log.info("fusion_our_fill_secret", order_hash=secret.order_hash, idx=secret.idx)
        if change.anomaly is not None:
            _log.debug("fusion_event_not_applied", event=change.event, why=change.anomaly,
                       order_hash=change.order_hash)  # fmt: skip
        if order is None or change.anomaly is not None:
            return
        self._upsert(order, wall, full=change.event in (OrderCreated.EVENT, "reseed"))
        if order.ours:
            self._ours.add(order.order_hash)
            self._check_windows(order)
        self._update_gauges()
        self._metrics.opportunities_received.labels(
            venue=VENUE, chain=str(order.src_chain_id), kind=change.event
        ).inc()
        self._sink.offer(VENUE, order, received_at)

    def _upsert(self, order: FusionOrder, wall: float, *, full: bool) -> None:
        if not full:
            self._store.upsert_order(
                order.order_hash,
                status=order.status,
                at=wall,
                remaining_maker_amount=order.remaining_maker_amount,
                ours=order.ours or None,
            )
            return
        ext = order.extension
        self._store.upsert_order(
            order.order_hash,
            status=order.status,
            at=wall,
            src_chain_id=order.src_chain_id,
            dst_chain_id=order.dst_chain_id,
            maker=order.order.maker if order.order else None,
            making_amount=order.making_amount,
            taking_amount=order.order.taking_amount if order.order else None,
            remaining_maker_amount=order.remaining_maker_amount,
            ours=order.ours or None,
            deadline=order.deadline,
            detail={
                "version": order.version,
                "extension_error": order.extension_error,
                "auction_start": ext.auction.start_time if ext else None,
                "auction_end": ext.auction.end_time if ext else None,
                "dst_token": ext.dst_token_address if ext else None,
                "maker_balance": order.maker_balance,
                "maker_allowance": order.maker_allowance,
            },
        )

    def _update_gauges(self) -> None:
        counts = self._book.counts()
        for status in ACTIVE_STATUSES | FINAL_STATUSES | counts.keys():
            self._metrics.fusion_orders.labels(status=status).set(counts.get(status, 0))

    def _check_windows(self, order: FusionOrder) -> None:
        now = self._clock()
        for window in closing_windows(
            order, now, self.config.window_alarm, self.config.resolver_address
        ):
            key = (window.order_hash, window.idx, window.window)
            if key in self._alarmed:
                continue
            self._alarmed.add(key)
            self.alarms += 1
            self._metrics.fusion_window_alarms.labels(window=window.window).inc()
            _log.warning(
                "fusion_window_alarm",
                order_hash=window.order_hash,
                idx=window.idx,
                window=window.window,
                closes_at=window.closes_at,
                closes_in=round(window.closes_at - now, 3),
            )

    def _tell(self, local_id: str, strategy: str, intent: FillIntent, status: str,
              reason: str | None) -> None:  # fmt: skip
        self._sink.bid_status(
            BidUpdate(
                local_id=local_id,
                strategy=strategy,
                venue=VENUE,
                chain_id=intent.chain_id,
                opportunity_id=intent.order_hash,
                amount=intent.making_amount,
                status=status,
                reason=reason,
            )
        )

    # ------------------------------------------------------------------ background tasks

    def _fill_done(
        self, local_id: str, strategy: str, intent: FillIntent, error: Exception | None
    ) -> None:
        # The executor owns the fill from here on: its in-flight slot is released either way.
        self._risk.settled(strategy)
        if error is None:
            return
        text = f"{type(error).__name__}: {error}"[:300]
        self._store.add_order_event(
            intent.order_hash,
            "fill_failed",
            at=self._clock(),
            detail={"local_id": local_id, "error": text},
        )
        self._tell(local_id, strategy, intent, "failed", text)

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(_SWEEP_INTERVAL)
            self.sweep()

    def sweep(self) -> None:
        """Expire orders past their deadline and check our escrow windows (runs periodically)."""
        at = trio.current_time()
        for change in self._book.expire_due(self._clock(), at):
            self._record(change, at, None)
        for order_hash in list(self._ours):
            order = self._book.get(order_hash)
            if order is None:
                self._ours.discard(order_hash)
            else:
                self._check_windows(order)
        # Alarms already raised are remembered only while their order is in the book: the book
        # forgets old final orders, and this set must not outgrow it over weeks of running.
        self._alarmed = {key for key in self._alarmed if self._book.get(key[0]) is not None}
        self._reoffer_running_auctions(at)

    def _reoffer_running_auctions(self, received_at: float) -> None:
        """Offer every order whose Dutch auction is running again: its price falls with time,
        not with events, so a strategy waiting for a threshold must see it without one."""
        now = self._clock()
        for order in self._book.active():
            auction = order.extension.auction if order.extension is not None else None
            if auction is not None and auction.start_time <= now < auction.end_time:
                self._sink.offer(VENUE, order, received_at)

    async def _app_ping_loop(self) -> None:
        # The app-level ping makes a quiet feed produce frames, so freshness stays provable.
        interval = self.config.ping_interval
        while True:
            await self._conn.wait_healthy()
            await trio.sleep(interval)
            try:
                await self._rpc.ping(self._conn.send)
            except (RpcError, NotConnected) as exc:
                _log.info("fusion_app_ping_failed", error=str(exc))


def _event_detail(event: FusionEvent | None, change: BookChange) -> dict[str, Any] | None:
    if isinstance(event, OrderCreated):
        order = change.order
        return {
            "src_chain_id": event.src_chain_id,
            "dst_chain_id": event.dst_chain_id,
            "version": order.version if order else None,
        }
    if isinstance(event, SecretShared):
        return _secret_detail(event.secret)
    if change.secret is not None:
        return _secret_detail(change.secret)
    if event is not None:
        detail = event.to_json()
        detail.pop("orderHash", None)
        return detail or None
    if change.order is not None:
        return {"status": change.order.status}
    return None


def _secret_detail(secret: PublicSecret) -> dict[str, Any]:
    return {"idx": secret.idx, "taker": secret.src_immutables.taker}
