"""The Express Relay submitter: intent -> risk gate -> wire bid -> state table -> ``post_bid``,
and every status after that.

``submit`` is synchronous and never waits: it runs the risk gate, builds and signs the bid,
records it (the store queues the row; no disk wait) and queues the frame. A bid made while the
venue's reader dispatches an opportunity is written by the reader right after that frame
(``send_held``) if a request slot is free; any other goes to the sender task, which waits for a
slot. A sent bid's metrics wait for an idle moment. The response, the pushed
``bid_status_update`` messages and the reconciler's HTTP answers all arrive through
:meth:`Submitter.apply_status`, the one place where a bid changes status:

- every change is one transition row (``source`` = ``ws``, ``http`` or ``local``);
- a final status is final: anything after it is recorded with ``applied=False``, logged as an
  anomaly and counted, never applied;
- an unknown status type is recorded (not applied), logged once per type and counted;
- each applied change goes to the strategies as a :class:`~searcherd.bids.BidUpdate`.

Local statuses: ``blocked`` (risk gate, or the venue cannot take bids now), ``invalid`` (the
bid could not be built), ``dry_run``, ``submitting`` (recorded, being sent), ``rejected`` (the
server's error text), ``unconfirmed`` (no answer; a late answer still attaches the server id).
"""

from __future__ import annotations

import base64
import datetime
import math
import random
import sys
import uuid
from collections import Counter, OrderedDict, deque
from typing import TYPE_CHECKING, Any, Final, Protocol

import orjson
import structlog
import trio

from searcherd.bids import BidUpdate, EvmBid, LimoBid, SwapBid, is_final
from searcherd.express_relay._parked import ParkedBids
from searcherd.express_relay._tracked import VENUE, TrackedBid
from searcherd.express_relay._wire_bids import BuildError, build_wire_bid
from searcherd.express_relay.messages import (
    BidStatus,
    BidStatusUpdate,
    ExpressRelayDecodeError,
    PostBidResult,
    Response,
    WireBid,
    decode_bid_status_http,
    encode_post_bid,
)
from searcherd.store import BidRecord

RECOVERED: Final = "(recovered)"
"""The strategy name of bids found on the venue after a crash lost their rows."""


def _listed_kind(permission_key: Any) -> str:
    # The listing's permission key is base64 of 65 bytes; the first says the payment type.
    try:
        first = base64.b64decode(permission_key)[:1] if isinstance(permission_key, str) else b""
    except ValueError:
        return "swap"
    return "limo" if first == b"\x00" else "swap"


def _parse_rfc3339(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from searcherd.express_relay._requests import Outcome, RequestTracker
    from searcherd.express_relay._wire_bids import ConstantsCache
    from searcherd.metrics import Metrics
    from searcherd.risk import RiskGate
    from searcherd.store import StateStore
    from searcherd.strategy import ChainState
    from searcherd.svm.keys import Signer

__all__ = ["VENUE", "BidSink", "Submitter", "TrackedBid"]

_log = structlog.get_logger(__name__)

_QUEUE_SIZE: Final = 1024  # bids waiting for the sender; beyond that new bids are blocked
_FINAL_MEMORY: Final = 2_000  # finished bids remembered to spot updates after a final status


_id_bits = random.Random()  # local ids need uniqueness, not secrecy: no syscall per bid


def _local_id(now: float) -> str:
    """A fresh local bid id: a UUID in the version 7 layout (48-bit Unix milliseconds, then
    74 random bits).

    Time-ordered ids land at the end of the state table's indexes instead of on a random page
    each, which makes each commit write a fraction of the pages (measured: about a third less
    store CPU per bid than with random UUIDs, and the gap widens as the table grows).
    """
    bits = _id_bits.getrandbits(74)
    value = (
        (int(now * 1000) & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (bits >> 62) << 64
        | 0b10 << 62
        | (bits & 0x3FFF_FFFF_FFFF_FFFF)
    )
    return str(uuid.UUID(int=value))


class BidSink(Protocol):
    """Where status changes go (the evaluator); must not block."""

    def bid_status(self, update: BidUpdate) -> None:
        """Take one status change."""
        ...


class Submitter:
    """Sends bids and owns their status; see the module docstring."""

    def __init__(
        self,
        *,
        store: StateStore,
        metrics: Metrics,
        risk: RiskGate,
        sink: BidSink,
        tracker: RequestTracker,
        send: Callable[[bytes], Awaitable[None]],
        chain_state: Callable[[str], ChainState | None],
        constants: ConstantsCache,
        signer: Signer | None,
        dry_run: bool,
        ready: Callable[[], bool],
        wall_clock: Callable[[], float],
        defer: Callable[..., None],
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._risk = risk
        self._sink = sink
        self._tracker = tracker
        self._send = send
        self._chain_state = chain_state
        self._constants = constants
        self._signer = signer
        self.dry_run = dry_run
        self._ready = ready
        self._wall = wall_clock
        self._defer = defer
        # Bids not final yet: as objects by local id (and by server id once known), or packed
        # by server id while they wait out a slow status (see _parked). Never in both.
        self._open: dict[str, TrackedBid] = {}
        self._by_server: dict[str, TrackedBid] = {}
        self._parked = ParkedBids()
        self._finished: OrderedDict[str, TrackedBid] = OrderedDict()  # server id -> final bid
        self._queue: deque[tuple[TrackedBid, WireBid]] = deque()  # recorded, waiting to be sent
        self._sender_lot = trio.lowlevel.ParkingLot()
        self._sender_parked = False  # the sender task waits on `_sender_lot` for bids
        # True while the venue's reader dispatches a frame: bids made meanwhile (inline by the
        # evaluator) are sent by the reader itself right after (`send_held`), not by the sender.
        self.held = False
        self._sending = 0  # bids taken off the queue and not yet written
        self._progress = trio.Event()  # set when a bid was written or answered (for drain)
        self._closed = False
        self._unknown_seen: set[str] = set()
        self._gauge = metrics.bids_in_flight.labels(VENUE)
        # Metric children bound once (`.labels()` costs a lock and a lookup per call).
        self._frame_to_bid = metrics.frame_to_bid.labels(VENUE)
        self._bid_response = metrics.bid_response.labels(VENUE)

    # -- intake (the hot path) ----------------------------------------------------------------

    def submit(self, strategy: str, bid: SwapBid | LimoBid | EvmBid, received_at: float) -> str:
        """Gate, build, record and queue one bid; return its local id. Never blocks or raises
        for a bad bid: every outcome is a recorded status."""
        now = self._wall()
        tb = TrackedBid(
            local_id=_local_id(now),
            strategy=strategy,
            # Interned: bids by the thousand share one string per chain instead of a copy each.
            chain_id=sys.intern(bid.chain_id),
            opportunity_id=bid.opportunity_id,
            amount=bid.amount,
            kind="swap"
            if isinstance(bid, SwapBid)
            else "limo"
            if isinstance(bid, LimoBid)
            else "evm",
            status="submitting",
            created_at=now,
            last_change=trio.current_time(),
            received_at=received_at,
        )
        # Venue-side refusals come before the risk gate so they do not spend a rate token.
        refusal = self._refusal()
        if refusal is None:
            refusal = self._risk.blocked_reason(strategy, bid.amount)
            if refusal is not None:
                self._metrics.risk_blocked.labels(strategy, refusal).inc()
        if refusal is not None:
            self._record_local_final(tb, "blocked", refusal, None)
            return tb.local_id
        try:
            built = build_wire_bid(
                bid,
                chain=self._chain_state(bid.chain_id),
                signer=self._signer,
                constants=self._constants,
                now=now,
            )
        except BuildError as exc:
            self._risk.refund(strategy)  # never sent: its rate token goes back
            self._record_local_final(tb, "invalid", str(exc), None)
            return tb.local_id
        tb.kind, tb.signature = built.kind, built.signature
        if self.dry_run:
            self._record_local_final(tb, "dry_run", None, built.detail)
            return tb.local_id
        self._store.add_bid(self._record(tb, built.detail))
        self._track(tb)
        self._queue.append((tb, built.wire))  # room was checked in _refusal
        if not self.held:
            self._wake_sender()
        return tb.local_id

    def _refusal(self) -> str | None:
        if self._closed:
            return "venue_draining"
        if self.dry_run:
            return None
        if not self._ready():
            return "venue_not_connected"
        if len(self._queue) >= _QUEUE_SIZE:
            return "venue_send_queue_full"
        return None

    def _record(self, tb: TrackedBid, detail: dict[str, Any] | None) -> BidRecord:
        return BidRecord(
            local_id=tb.local_id,
            venue=VENUE,
            chain_id=tb.chain_id,
            strategy=tb.strategy,
            opportunity_id=tb.opportunity_id,
            amount=tb.amount,
            status=tb.status,
            created_at=tb.created_at,
            detail=detail,
        )

    def _record_local_final(
        self, tb: TrackedBid, status: str, reason: str | None, detail: dict[str, Any] | None
    ) -> None:
        tb.status, tb.reason = status, reason
        self._store.add_bid(self._record(tb, detail))
        if reason is not None:
            # The bid row has no reason column of its own at insert time; this row carries it.
            self._store.add_status(
                tb.local_id, status, at=tb.created_at, source="local", reason=reason
            )
        self._metrics.child(self._metrics.bids_final, tb.strategy, VENUE, status).inc()
        tb.debug("bid_not_sent", status=status, reason=reason)
        self._notify(tb)

    def _track(self, tb: TrackedBid) -> None:
        self._open[tb.local_id] = tb
        if tb.server_bid_id is not None:
            self._by_server[tb.server_bid_id] = tb
        tb.in_flight = True
        self._risk.sent(tb.strategy)
        self._gauge.inc()

    # -- sending ---------------------------------------------------------------------------

    def _wake_sender(self) -> None:
        if self._sender_parked:
            self._sender_parked = False
            self._sender_lot.unpark()

    async def run(self) -> None:
        """The sender: one task writes queued bids, within the connection's slot cap."""
        queue = self._queue
        while True:
            if not queue:
                self._sender_parked = True
                await self._sender_lot.park()
                continue
            tb, wire = queue.popleft()
            self._sending += 1
            try:
                # Bounded wait for a slot: the server stops reading our socket at 150 in flight.
                if await self._tracker.acquire_slot(self._tracker.timeout):
                    await self._write(tb, wire)
                else:
                    self.set_status(tb, "blocked", source="local",
                                    reason="max_in_flight_per_connection")  # fmt: skip
            finally:
                self._sending -= 1
                self._progress.set()

    @property
    def has_queued(self) -> bool:
        """True while bids wait to be sent."""
        return bool(self._queue)

    async def send_held(self) -> None:
        """Send the bids made while the reader dispatched its frame, from the reader's task.

        Only while a slot is free at once: the reader must not wait for the server. Whatever is
        left goes to the sender task. This spares the common case (a strategy called inline on
        an opportunity) a trip through the scheduler between the bid and its frame.
        """
        queue = self._queue
        while queue and self._tracker.try_acquire_slot():
            tb, wire = queue.popleft()
            self._sending += 1
            try:
                await self._write(tb, wire)
            finally:
                self._sending -= 1
                self._progress.set()
        if queue:
            self._wake_sender()

    async def _write(self, tb: TrackedBid, wire: WireBid) -> None:
        """Send one bid whose request slot is already taken."""
        if not self._ready():
            self._tracker.release_slot()
            self.set_status(tb, "blocked", source="local", reason="venue_not_connected")
            return
        req = self._tracker.begin(
            "post_bid",
            lambda outcome: self._on_response(tb, outcome),
            limited=True,
            on_late=lambda response: self._on_late_response(tb, response),
        )
        try:
            await self._send(encode_post_bid(req.id, wire))
        except Exception as exc:  # NotConnected: it may or may not have left
            self._tracker.fail(req, "unsent", str(exc))
            return
        now = trio.current_time()
        tb.sent_at = req.sent_at = now
        # The bid is out: what is left is bookkeeping, done when nothing more urgent waits.
        self._defer(self._after_send, tb, req.id, now)

    def _after_send(self, tb: TrackedBid, request_id: str, sent_at: float) -> None:
        if tb.received_at is not None:
            self._frame_to_bid.observe(max(0.0, sent_at - tb.received_at))
            tb.received_at = None  # measured: no need to keep it for the bid's whole life
        self._metrics.child(self._metrics.bids_submitted, tb.strategy, VENUE).inc()
        tb.debug("bid_sent", kind=tb.kind, amount=str(tb.amount), request_id=request_id)

    def _on_response(self, tb: TrackedBid, outcome: Outcome) -> None:
        self._progress.set()
        response = outcome.response
        if response is None:
            failure = outcome.failure
            reason = str(failure) if failure is not None else "no answer"
            self.set_status(tb, "unconfirmed", source="local", reason=reason)
            return
        if tb.sent_at is not None:
            elapsed = trio.current_time() - tb.sent_at
            self._bid_response.observe(max(0.0, elapsed))
            tb.sent_at = None  # measured (as above)
        self._apply_response(tb, response)

    def _apply_response(self, tb: TrackedBid, response: Response) -> None:
        if response.ok and isinstance(response.result, PostBidResult):
            self.attach_server_id(tb, response.result.bid_id)
            self.set_status(tb, "pending", source="ws")
        elif response.ok:
            reason = f"unexpected post_bid result: {str(response.result)[:100]}"
            self.set_status(tb, "unconfirmed", source="local", reason=reason)
        else:
            self.set_status(tb, "rejected", source="local", reason=response.error)

    def _on_late_response(self, tb: TrackedBid, response: Response) -> None:
        # Only an `unconfirmed` bid still followed can learn from its own response: one given
        # up on stays `unconfirmed` in the table (a `pending` nobody follows would never end).
        if tb.status == "unconfirmed" and tb.server_bid_id is None and tb.local_id in self._open:
            self._apply_response(tb, response)

    def attach_server_id(self, tb: TrackedBid, server_bid_id: str) -> None:
        """Remember the server's id (response, late response, or matched after a restart)."""
        if tb.server_bid_id == server_bid_id:
            return
        tb.server_bid_id, tb.signature = server_bid_id, None  # see TrackedBid.signature
        self._store.set_server_bid_id(tb.local_id, server_bid_id, self._wall())
        if tb.local_id in self._open:
            self._by_server[server_bid_id] = tb

    # -- statuses --------------------------------------------------------------------------

    def on_status_update(self, update: BidStatusUpdate) -> None:
        """A pushed ``bid_status_update`` (synchronously, from the reader)."""
        bid_id = update.bid_id
        tb = self._by_server.get(bid_id) or self._unpark(bid_id) or self._finished.get(bid_id)
        if tb is None:
            _log.info("bid_status_unknown_bid", venue=VENUE, server_bid_id=update.bid_id,
                      status=update.status.type)  # fmt: skip
            return
        self.apply_status(tb, update.status, source="ws")

    def apply_status(self, tb: TrackedBid, status: BidStatus, *, source: str) -> None:
        """Apply a venue status (``ws`` push or ``http`` reconciliation) to ``tb``."""
        if not status.is_known:
            self._metrics.unknown_messages.labels(VENUE, "status").inc()
            log = tb.log()
            if status.type not in self._unknown_seen:
                self._unknown_seen.add(status.type)
                log.warning("bid_status_unknown_type", status=status.type[:60], source=source)
            else:
                log.debug("bid_status_unknown_type", status=status.type[:60], source=source)
            self._store.add_status(tb.local_id, status.type[:60], at=self._wall(), source=source,
                                   applied=False, result=status.result, reason=status.reason)  # fmt: skip
            return
        self.set_status(tb, status.type, source=source, result=status.result,
                        reason=status.reason, index=status.index)  # fmt: skip

    def set_status(
        self,
        tb: TrackedBid,
        status: str,
        *,
        source: str,
        result: str | None = None,
        reason: str | None = None,
        index: int | None = None,
    ) -> None:
        """Record one transition of ``tb`` (or an anomaly if ``tb`` is already final)."""
        tb = self._followed(tb)
        now_wall = self._wall()
        tb.last_change = trio.current_time()
        if is_final(tb.status):
            if status == tb.status and result == tb.result:
                return  # the same final status again (e.g. a duplicate push): nothing new
            self._metrics.status_anomalies.labels(VENUE).inc()
            tb.log().warning("bid_status_after_final", final=tb.status, status=status,
                             source=source, result=result, reason=reason)  # fmt: skip
            self._store.add_status(tb.local_id, status, at=now_wall, source=source,
                                   applied=False, result=result, reason=reason)  # fmt: skip
            return
        # The bid is not final here, so neither is a repeat of its status. A waiting status's
        # result is the bid's own transaction, the same in every push and HTTP answer: the row
        # keeps it and the bid in memory does not (thousands of bids wait minutes for
        # `expired`). A final result is kept, for the comparison above.
        if status == tb.status and reason == tb.reason:
            self._park(tb)  # an HTTP check that confirms a waiting bid: packed again
            return  # nothing changed
        final = is_final(status)
        tb.status, tb.result, tb.reason = status, result if final else None, reason
        self._store.add_status(tb.local_id, status, at=now_wall, source=source,
                               result=result, reason=reason)  # fmt: skip
        if final:
            self._metrics.child(self._metrics.bids_final, tb.strategy, VENUE, status).inc()
            self._settle(tb)
        tb.debug("bid_final" if final else "bid_status", status=status, kind=tb.kind,
                 amount=str(tb.amount), result=result, reason=reason, index=index,
                 source=source)  # fmt: skip
        self._notify(tb, result)
        # After the strategies heard of it: the update is built from the object.
        self._park(tb)

    def _followed(self, tb: TrackedBid) -> TrackedBid:
        """The object the submitter follows now for ``tb``'s bid.

        The reconciler holds bids across an HTTP wait and ``get`` hands out copies of packed
        ones; meanwhile the bid may have been packed, unpacked into a new object, or finished.
        A status goes to the bid as it is now, never to a stale copy.
        """
        server_id = tb.server_bid_id
        if server_id is None:
            return tb
        followed = self._by_server.get(server_id)
        if followed is tb:
            return tb
        return followed or self._unpark(server_id) or self._finished.get(server_id) or tb

    def _park(self, tb: TrackedBid) -> None:
        """Pack ``tb`` if it waits out a slow status (and is the object followed)."""
        server_id = tb.server_bid_id
        if server_id is not None and self._by_server.get(server_id) is tb and self._parked.pack(tb):
            del self._by_server[server_id]
            del self._open[tb.local_id]

    def _unpark(self, server_id: str) -> TrackedBid | None:
        tb = self._parked.unpark(server_id)
        if tb is not None:
            self._open[tb.local_id] = tb
            self._by_server[server_id] = tb
        return tb

    def _settle(self, tb: TrackedBid) -> None:
        self._open.pop(tb.local_id, None)
        if tb.server_bid_id is not None:
            self._by_server.pop(tb.server_bid_id, None)
            self._finished[tb.server_bid_id] = tb
            while len(self._finished) > _FINAL_MEMORY:
                self._finished.popitem(last=False)
        if tb.in_flight:
            tb.in_flight = False
            self._risk.settled(tb.strategy)
            self._gauge.dec()

    def abandon(self, tb: TrackedBid, why: str) -> None:
        """Stop following a bid no status can ever reach (no server id); its row keeps its status."""
        tb.log().warning("bid_abandoned", status=tb.status, why=why)
        self._settle(tb)

    def _notify(self, tb: TrackedBid, result: str | None = None) -> None:
        """Pass the bid's latest change to the strategies; `result` is that status's own."""
        update = BidUpdate(
            local_id=tb.local_id,
            strategy=tb.strategy,
            venue=VENUE,
            chain_id=tb.chain_id,
            opportunity_id=tb.opportunity_id,
            amount=tb.amount,
            status=tb.status,
            server_bid_id=tb.server_bid_id,
            result=result,
            reason=tb.reason,
        )
        try:
            self._sink.bid_status(update)
        except Exception:  # the evaluator's problem must not lose our bookkeeping
            tb.log().exception("bid_sink_failed")

    # -- state for the reconciler, the venue and health -------------------------------------

    def adopt(
        self, chain_id: str, server_bid_id: str, signature: str, listed: dict[str, Any]
    ) -> bool:
        """Record a bid the venue has and the state table lost (a crash in the commit window).

        `listed` is the bid as the venue's own-bid listing returns it. Who made it and for
        which opportunity is not known any more: the row says strategy `(recovered)`. A
        non-final bid is followed to its final status like any other. Returns False when the
        listed bid cannot be read.
        """
        try:
            status = decode_bid_status_http(orjson.dumps(listed.get("status")))
        except (ExpressRelayDecodeError, TypeError):
            return False
        amount = listed.get("bid_amount")
        kind = _listed_kind(listed.get("permission_key"))
        tb = TrackedBid(
            local_id=_local_id(self._wall()),
            strategy=RECOVERED,
            chain_id=chain_id,
            opportunity_id=None,
            amount=amount if type(amount) is int else 0,
            kind=kind,
            status=status.type,
            created_at=_parse_rfc3339(listed.get("initiation_time")) or self._wall(),
            last_change=trio.current_time(),
            server_bid_id=server_bid_id,
            result=status.result if is_final(status.type) else None,  # as in set_status
            reason=status.reason,
            restored=True,
        )
        self._store.add_bid(
            BidRecord(
                local_id=tb.local_id, venue=VENUE, chain_id=chain_id, strategy=RECOVERED,
                opportunity_id=None, amount=tb.amount, status=tb.status,
                created_at=tb.created_at, server_bid_id=server_bid_id,
                detail={"signature": signature, "kind": kind, "recovered": True},
            )
        )  # fmt: skip
        if status.result is not None or status.reason is not None:
            self._store.add_status(tb.local_id, status.type, at=self._wall(), source="http",
                                   result=status.result, reason=status.reason)  # fmt: skip
        tb.log().warning("bid_recovered_from_venue", status=status.type)
        if not is_final(status.type):
            self._track(tb)
        return True

    def restore(self, rows: list[dict[str, Any]]) -> int:
        """Follow non-final bids of a previous run (rows of the state table); return how many."""
        count = 0
        for row in rows:
            if row["local_id"] in self._open or is_final(row["status"]):
                continue
            detail = row.get("detail") or {}
            tb = TrackedBid(
                local_id=row["local_id"],
                strategy=row["strategy"],
                chain_id=row["chain_id"],
                opportunity_id=row["opportunity_id"],
                amount=int(row["amount"]),
                kind=str(detail.get("kind", "swap")),
                status=row["status"],
                created_at=float(row["created_at"]),
                last_change=-math.inf,  # due for a check at once
                server_bid_id=row["server_bid_id"],
                signature=None if row["server_bid_id"] else detail.get("signature"),
                restored=True,
            )
            self._track(tb)
            count += 1
        return count

    def open_bids(self) -> list[TrackedBid]:
        """Every bid not final yet and not packed (a list, safe to iterate while statuses
        change); :meth:`unpark_idle` brings packed ones back first."""
        return list(self._open.values())

    def unpark_idle(self, before: float) -> None:
        """Unpack the packed bids silent since ``before`` (trio clock; ``math.inf``: all), so
        :meth:`open_bids` lists them: they are due for an HTTP check. A check that finds them
        still waiting packs them again."""
        for server_id in self._parked.idle(before):
            self._unpark(server_id)

    def is_open(self, local_id: str) -> bool:
        """True while the bid is followed (not final, not abandoned)."""
        return local_id in self._open or self._parked.find(local_id) is not None

    def get(self, local_id: str) -> TrackedBid | None:
        """A bid by local id: open (a copy if packed: statuses reach the bid itself), or
        final and still remembered."""
        tb = self._open.get(local_id) or self._parked.find(local_id)
        if tb is not None:
            return tb
        return next((b for b in self._finished.values() if b.local_id == local_id), None)

    def counts_by_status(self) -> dict[str, int]:
        """Open bids per status, for health."""
        counts = Counter(tb.status for tb in self._open.values())
        counts.update(self._parked.counts())
        return dict(counts)

    def close(self) -> None:
        """Stop intake: later ``submit`` calls are recorded as blocked (``venue_draining``)."""
        self._closed = True

    async def wait_idle(self) -> None:
        """Return once no bid is queued, being written, or awaiting its answer."""
        while self.busy:
            self._progress = trio.Event()
            # Bounded: a cancel request (not ours to watch) may be what frees the last slot.
            with trio.move_on_after(0.1):
                await self._progress.wait()

    @property
    def busy(self) -> bool:
        """True while bids are queued, being written, or waiting for their response."""
        return bool(self._queue) or self._sending > 0 or self._tracker.limited_in_flight > 0
