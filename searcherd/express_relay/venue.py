"""The Express Relay venue: the object the app starts for one auction server.

It wires the resilient :class:`~searcherd.connection.Connection` to the protocol:

- session setup (``on_connected``) on every link: subscribe to every chain (an error is a setup
  failure with the server's text), reconcile every open bid over HTTP, backfill the live
  opportunities over HTTP, and only then is the venue ready (bids may go out from the accepted
  ``subscribe`` on: strategies may bid on backfilled opportunities at once);
- dispatch (``on_message``): each frame is decoded once and handled synchronously:
  opportunities -> live set -> ``sink.offer``; chain updates -> chain state; removals -> live
  set; responses -> request tracker, which frees the request's slot at once. What a response
  means for its bid, and bid statuses (-> submitter), are bookkeeping: they wait in an
  :class:`~searcherd._idle.IdleQueue`, in order, until the loop is idle, so they never delay an
  opportunity. Bad and unknown frames are counted and logged within a budget,
  never fatal;
- ``on_disconnected`` applies what the socket delivered, then fails every request still in
  flight.

Besides the connection it runs the request timeouts, the submitter's sender, the reconciler's
silence checks and (if needed) the metadata fetch, all in one nursery.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx
import orjson
import structlog
import trio

from searcherd._idle import IdleQueue
from searcherd.bids import FINAL_STATUSES, BidUpdate, EvmBid, LimoBid, SwapBid, is_final
from searcherd.connection import Connection, ConnectionSettings
from searcherd.express_relay._requests import RequestFailed, RequestTracker
from searcherd.express_relay._wire_bids import ConstantsCache
from searcherd.express_relay.messages import (
    BidStatusUpdate,
    EvmOpportunity,
    ExpressRelayDecodeError,
    LimoOpportunity,
    OpportunityDelete,
    Response,
    SvmChainUpdate,
    SwapOpportunity,
    decode_http_error,
    decode_opportunities_http,
    decode_server_frame,
    encode_cancel_bid,
    encode_subscribe,
)
from searcherd.express_relay.opportunities import LiveOpportunities, opportunity_kind
from searcherd.express_relay.reconciler import Reconciler
from searcherd.express_relay.submitter import VENUE, Submitter
from searcherd.strategy import ChainState

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Awaitable, Callable, Sequence

    from searcherd.config import ExpressRelayConfig
    from searcherd.connection import Link
    from searcherd.express_relay.messages import Opportunity
    from searcherd.metrics import Metrics
    from searcherd.risk import RiskGate
    from searcherd.store import StateStore
    from searcherd.svm.keys import Signer
    from searcherd.transport import Transport

__all__ = ["ExpressRelayVenue", "OpportunitySink", "SubscribeFailed"]

_log = structlog.get_logger(__name__)

_UNKNOWN_KINDS: Final = frozenset({"unknown_type", "unknown_program", "unknown_version"})
_WARN_BUDGET: Final = 10  # warnings about bad frames per minute; the rest go to debug
_RECOVERY_LOOKBACK: Final = 600.0  # seconds looked back for lost bids when the table is empty
_BACKFILL_LIMIT: Final = "100"  # the server's maximum page


class OpportunitySink(Protocol):
    """The evaluator as the venue sees it; both calls are synchronous and must not block."""

    def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
        """A new opportunity (``received_at`` = trio clock of its frame)."""
        ...

    def bid_status(self, update: BidUpdate) -> None:
        """A status change of one of our bids."""
        ...


class SubscribeFailed(Exception):
    """The server refused ``subscribe``; the message is its text."""


class _WarnBudget:
    """At most ``budget`` warnings per minute; beyond that, callers log at debug."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._window_start = -float("inf")
        self._used = 0

    def allow(self, now: float) -> bool:
        if now - self._window_start >= 60.0:
            self._window_start, self._used = now, 0
        self._used += 1
        return self._used <= self._budget


class _View:
    """The read-only :class:`~searcherd.strategy.ExpressRelayView` handed to strategies."""

    def __init__(
        self,
        chains: dict[str, ChainState],
        live: LiveOpportunities,
        signer: Signer | None,
        cancel: Callable[[str], Awaitable[str]],
    ) -> None:
        self._chains = chains
        self._live = live
        self._cancel = cancel
        # Only the public half: strategies never get near the key itself.
        self._pubkey = None if signer is None else str(signer.pubkey())

    def chain(self, chain_id: str) -> ChainState | None:
        """The latest blockhash and priority fee of an SVM chain, if one has arrived."""
        return self._chains.get(chain_id)

    def live_opportunities(self, chain_id: str | None = None) -> Sequence[Any]:
        """The opportunities currently live (not removed, not expired), oldest first."""
        return self._live.live(chain_id)

    def searcher_pubkey(self) -> str | None:
        """The public key bids are signed with, or None without a signer."""
        return self._pubkey

    async def cancel_bid(self, local_id: str) -> str:
        """Ask the server to cancel one of our bids; returns what happened, in words."""
        return await self._cancel(local_id)


def _newest_bid_time(conn: sqlite3.Connection) -> float | None:
    (newest,) = conn.execute(
        "SELECT max(created_at) FROM bids WHERE venue = ?", (VENUE,)
    ).fetchone()
    return None if newest is None else float(newest)


def _known_ids(conn: sqlite3.Connection, since: float) -> set[str]:
    """Server bid ids and transaction signatures of our bids recorded since `since`."""
    known: set[str] = set()
    rows = conn.execute(
        "SELECT server_bid_id, json_extract(detail, '$.signature') FROM bids"
        " WHERE venue = ? AND created_at >= ?",
        (VENUE, since),
    )
    for server_bid_id, signature in rows:
        known.update(v for v in (server_bid_id, signature) if isinstance(v, str))
    return known


def _open_rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    finals = sorted(FINAL_STATUSES)
    marks = ",".join("?" * len(finals))
    cursor = conn.execute(
        "SELECT local_id, chain_id, strategy, opportunity_id, server_bid_id, amount, status,"
        f" created_at, detail FROM bids WHERE venue = ? AND status NOT IN ({marks})"
        " ORDER BY created_at",
        (VENUE, *finals),
    )
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        try:
            row["detail"] = orjson.loads(row["detail"]) if row["detail"] else None
        except orjson.JSONDecodeError:
            row["detail"] = None
    return rows


_CANCEL_EXPLAINED: Final = (
    ("Unauthorized", "the server only lets authenticated searchers cancel (Unauthorized)"),
    ("Forbidden", "the bid belongs to another profile or was posted anonymously (Forbidden)"),
    ("only cancellable in awaiting_signature", "the bid is no longer awaiting_signature"),
    ("Non-cancellable", "the quote was not cancellable"),
    ("revoked", "the cancel feature is revoked for this API key"),
)


class ExpressRelayVenue:
    """One Express Relay auction server: feed, bids, statuses; see the module docstring.

    ``wall_clock`` (Unix seconds) and ``transport`` exist for tests and the simulator.
    """

    name: Final = VENUE

    def __init__(
        self,
        config: ExpressRelayConfig,
        *,
        store: StateStore,
        metrics: Metrics,
        risk: RiskGate,
        sink: OpportunitySink,
        dry_run: bool,
        signer: Signer | None,
        max_opportunity_age: float,
        http: httpx.AsyncClient | None = None,
        wall_clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._metrics = metrics
        self._sink = sink
        self._max_age = max_opportunity_age
        self._wall = wall_clock
        self._recover_since: float | None = None  # set by run() until the first link recovers
        self._http = http if http is not None else httpx.AsyncClient()
        self._own_http = http is None
        self._authenticated = config.api_key is not None
        auth = (
            {"Authorization": f"Bearer {config.api_key.reveal()}"}
            if config.api_key is not None
            else {}
        )
        self._chains: dict[str, ChainState] = {}
        self._live = LiveOpportunities(
            swap_window=config.swap_auction_window, clock=trio.current_time
        )
        self.view = _View(self._chains, self._live, signer, self.cancel_bid)
        self._later = IdleQueue(VENUE)
        # True from a link's accepted `subscribe` until it goes down: bids may go out from then
        # on, also while the rest of the setup (reconcile, backfill) runs. The backfill offers
        # opportunities to strategies, which may bid on them at once.
        self._subscribed = False
        self._tracker = RequestTracker(
            timeout=config.request_timeout,
            max_in_flight=config.max_in_flight_per_connection,
            defer=self._later.defer,
        )
        self._connection = Connection(
            VENUE,
            ConnectionSettings(
                url=config.ws_url,
                headers=tuple(auth.items()),
                liveness_window=config.liveness_window,
                ping_interval=config.ping_interval,
                ping_timeout=config.ping_timeout,
                backoff_max=config.backoff_max,
                setup_timeout=max(30.0, 6 * config.request_timeout),
            ),
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            after_message=self._after_message,
            transport=transport,
        )
        self._constants = ConstantsCache(config, self._http)
        self._submitter = Submitter(
            store=store,
            metrics=metrics,
            risk=risk,
            sink=sink,
            tracker=self._tracker,
            send=self._connection.send,
            chain_state=self._chains.get,
            constants=self._constants,
            signer=signer,
            dry_run=dry_run,
            ready=lambda: self._subscribed,
            wall_clock=wall_clock,
            defer=self._later.defer,
        )
        self._reconciler = Reconciler(
            submitter=self._submitter,
            http=self._http,
            http_url=config.http_url,
            headers=auth,
            interval=config.reconcile_interval,
            request_timeout=config.request_timeout,
            authenticated=self._authenticated,
        )
        self._warn_budget = _WarnBudget(_WARN_BUDGET)
        self._gauge_connected = metrics.venue_connected.labels(VENUE)

    def __repr__(self) -> str:
        return f"<ExpressRelayVenue {self._connection!r}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load open bids of a previous run, report started, then run every task until cancelled."""
        try:
            # One read of the previous run's table: its open bids, and where it ends (bids
            # after that may be on the venue only).
            rows, newest = await self._store.query(
                lambda conn: (_open_rows(conn), _newest_bid_time(conn))
            )
            restored = self._submitter.restore(rows)
            if restored:
                _log.info("bids_restored", venue=VENUE, count=restored)
            self._recover_since = (
                newest if newest is not None else self._wall() - _RECOVERY_LOOKBACK
            )
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._later.run)
                nursery.start_soon(self._tracker.run_timeouts)
                nursery.start_soon(self._submitter.run)
                nursery.start_soon(self._reconciler.run)
                nursery.start_soon(self._constants.prefetch, self.config.chains)
                nursery.start_soon(self._connection.run)
        finally:
            self._gauge_connected.set(0)
            if self._own_http:
                with trio.CancelScope(shield=True):
                    await self._http.aclose()

    async def wait_ready(self) -> None:
        """Return once connected, subscribed, reconciled and backfilled."""
        await self._connection.wait_healthy()

    def submit(self, strategy: str, bid: SwapBid | LimoBid | EvmBid, received_at: float) -> None:
        """Hand one bid intent to the submitter (synchronous; never blocks)."""
        self._submitter.submit(strategy, bid, received_at)

    async def drain(self) -> None:
        """Stop intake and wait until no bid is queued or awaiting its answer."""
        self._submitter.close()
        await self._submitter.wait_idle()
        self._later.drain()  # statuses already received reach the table before it closes

    # -- health ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Connection and bid state for /healthz."""
        health = self._connection.health
        last = health.last_message_at
        return {
            "connected": health.connected,
            "healthy": health.healthy,
            "last_message_age": None if last is None else round(trio.current_time() - last, 3),
            "reconnects": health.reconnects,
            "bids_in_flight_by_status": self._submitter.counts_by_status(),
            "last_error": health.last_error,
        }

    def is_fresh(self) -> bool:
        """True when a frame arrived within the liveness window (for the systemd watchdog)."""
        health = self._connection.health
        last = health.last_message_at
        return (
            health.connected
            and last is not None
            and trio.current_time() - last <= self.config.liveness_window
        )

    # -- cancel ----------------------------------------------------------------------------

    async def cancel_bid(self, local_id: str) -> str:
        """Ask the server to cancel one of our bids; return what happened, in words."""
        tb = self._submitter.get(local_id)
        if tb is None:
            return f"unknown bid {local_id}"
        if is_final(tb.status):
            return f"bid {local_id} is already final ({tb.status})"
        if tb.server_bid_id is None:
            return f"bid {local_id} has no server bid id yet ({tb.status}); nothing to cancel"
        if not self._authenticated:
            return "the server only lets authenticated searchers cancel: set express_relay.api_key"
        if tb.status != "awaiting_signature":
            return (
                f"the server only cancels a bid in awaiting_signature (a won, cancellable swap "
                f"quote); bid {local_id} is {tb.status}"
            )
        if not await self._tracker.acquire_slot(self.config.request_timeout):
            return "cancel not sent: too many requests in flight"
        server_id, chain = tb.server_bid_id, tb.chain_id
        try:
            response: Response = await self._tracker.call(
                self._connection.send,
                "cancel_bid",
                lambda rid: encode_cancel_bid(rid, chain, server_id),
                limited=True,
            )
        except RequestFailed as exc:
            return f"cancel not confirmed: {exc}"
        if response.ok:
            tb.log().info("bid_cancel_accepted")
            return "cancel accepted by the server; the bid moves to cancelled"
        text = response.error or ""
        tb.log().info("bid_cancel_refused", error=text)
        for needle, explained in _CANCEL_EXPLAINED:
            if needle in text:
                return f"the server refused the cancel: {explained} (server said: {text})"
        return f"the server refused the cancel: {text}"

    # -- connection callbacks ------------------------------------------------------------------

    async def _on_connected(self, link: Link) -> None:
        if link.generation > 1:
            self._metrics.reconnects.labels(VENUE).inc()
        chains = self.config.chains
        response = await self._tracker.call(
            link.send, "subscribe", lambda rid: encode_subscribe(rid, chains)
        )
        if not response.ok:
            _log.error("subscribe_failed", venue=VENUE, chains=list(chains), error=response.error)
            raise SubscribeFailed(response.error or "subscribe refused")
        self._subscribed = True
        await self._reconciler.reconcile_all()
        if self._recover_since is not None:
            # Once per process, on the first link: the restart's look for lost rows.
            adopted = await self._reconciler.recover_unrecorded(
                chains,
                self._recover_since,
                lambda since: self._store.query(lambda conn: _known_ids(conn, since)),
            )
            self._recover_since = None
            if adopted:
                await self._store.flush()  # rows the last crash lost: make them durable now
        for chain in chains:
            await self._backfill(chain, trio.current_time())
        self._gauge_connected.set(1)

    def _on_disconnected(self, error: BaseException | None) -> None:
        self._subscribed = False
        self._gauge_connected.set(0)
        # First what the socket did deliver: a response queued here is an answer, not a loss.
        self._later.drain()
        failed = self._tracker.fail_all("disconnected", type(error).__name__ if error else "closed")
        self._later.drain()  # ... and the failures' bookkeeping, now
        if failed:
            _log.info("requests_failed_on_disconnect", venue=VENUE, count=failed)

    async def _backfill(self, chain: str, received_at: float) -> None:
        try:
            response = await self._http.get(
                self.config.http_url.rstrip("/") + "/v1/opportunities",
                params={"mode": "live", "chain_id": chain, "limit": _BACKFILL_LIMIT},
                headers=dict(self._connection.settings.headers),
                timeout=self.config.request_timeout,
            )
        except httpx.HTTPError as exc:
            _log.warning("backfill_failed", venue=VENUE, chain=chain, error=type(exc).__name__)
            return
        if response.status_code != 200:
            _log.warning("backfill_failed", venue=VENUE, chain=chain,
                         http_status=response.status_code,
                         error=decode_http_error(response.content))  # fmt: skip
            return
        try:
            listing = decode_opportunities_http(response.content)
        except ExpressRelayDecodeError as exc:
            self._bad_frame(exc)
            return
        for skipped in listing.skipped:
            self._bad_frame(skipped)
        # Removals pushed while we were away are lost: keep only what the server still lists.
        self._live.retain(chain, {o.opportunity_id for o in listing.opportunities})
        for opp in listing.opportunities:
            self._on_opportunity(opp, received_at)
        _log.info("backfill_done", venue=VENUE, chain=chain, live=len(listing.opportunities))

    # -- dispatch (synchronous, on the reader) ------------------------------------------------

    def _on_message(self, frame: str | bytes, received_at: float) -> None:
        try:
            msg = decode_server_frame(frame)
        except ExpressRelayDecodeError as exc:
            self._bad_frame(exc)
            return
        # Opportunities first: they are the hot path. Bids made for one while it is dispatched
        # are held for the reader to send right after (`_after_message`).
        if isinstance(msg, (SwapOpportunity, LimoOpportunity, EvmOpportunity)):
            self._submitter.held = True
            try:
                self._on_opportunity(msg, received_at)
            finally:
                self._submitter.held = False
        elif isinstance(msg, Response):
            self._tracker.resolve(msg)  # frees its slot now; the bookkeeping waits (see above)
        elif isinstance(msg, BidStatusUpdate):
            self._later.defer(self._submitter.on_status_update, msg)
        elif isinstance(msg, SvmChainUpdate):
            self._chains[msg.chain_id] = ChainState(
                msg.chain_id, msg.blockhash, msg.latest_prioritization_fee, received_at
            )
        elif isinstance(msg, OpportunityDelete):
            self._live.remove(msg)

    async def _after_message(self) -> None:
        if self._submitter.has_queued:
            await self._submitter.send_held()

    def _on_opportunity(self, opp: Opportunity, received_at: float) -> None:
        metrics = self._metrics
        metrics.child(
            metrics.opportunities_received, VENUE, opp.chain_id, opportunity_kind(opp)
        ).inc()
        # A swap quote is perishable: one created longer ago than the cutoff (a backfill, a
        # lagging feed) is dropped before it enters the live set. Limo and EVM opportunities
        # stay valid until the server removes them, so their age from creation says nothing;
        # the evaluator still drops any that wait in an inbox past the cutoff.
        if isinstance(opp, SwapOpportunity):
            age = self._wall() - opp.creation_time / 1_000_000
            if age > self._max_age:
                self._metrics.drops.labels(VENUE, "", "stale").inc()
                _log.debug("opportunity_stale", venue=VENUE, chain=opp.chain_id,
                           opportunity_id=opp.opportunity_id, age=round(age, 3))  # fmt: skip
                return
        if not self._live.add(opp, received_at):
            return  # a refresh of one the strategies already saw
        self._sink.offer(VENUE, opp, received_at)

    def _bad_frame(self, exc: ExpressRelayDecodeError) -> None:
        unknown = exc.kind in _UNKNOWN_KINDS
        counter = self._metrics.unknown_messages if unknown else self._metrics.decode_errors
        counter.labels(VENUE, exc.kind).inc()
        event = "frame_unknown" if unknown else "frame_undecodable"
        if self._warn_budget.allow(trio.current_time()):
            _log.warning(event, venue=VENUE, kind=exc.kind, detail=exc.detail[:200])
        else:
            _log.debug(event, venue=VENUE, kind=exc.kind, detail=exc.detail[:200])
