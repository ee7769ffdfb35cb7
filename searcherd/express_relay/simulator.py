"""A local Express Relay auction server: the test partner of the daemon and of ``--simulate``.

It speaks the protocol as the real server does (WebSocket on ``/v1/ws``, HTTP next to it): bearer
auth with 401s, subscribe/unsubscribe/post_bid/cancel_bid with the real success shapes and error
strings, ``id: null`` parse errors, out-of-order bid responses, protocol pings every 30 s with a
drop when no pong came, per-connection status routing, SVM swap and limo opportunities, chain
updates, removals, and the legacy EVM flavour. Every accepted bid is kept in :attr:`bids` with its
full status history, so tests can compare a client's state table against it. Fault methods
(drops, stalls, bad frames, late/duplicated/reordered responses, rejected upgrades, ...) let
tests break it on purpose. All timing uses the trio clock, so it runs under ``autojump_clock``,
and all randomness comes from ``config.seed``.

Usage::

    sim = await nursery.start(serve, SimulatorConfig(api_keys=("k",)))
    async with open_websocket_url(sim.ws_url) as ws: ...
"""

from __future__ import annotations

import base64
import random
import uuid
from collections import Counter
from functools import partial
from typing import TYPE_CHECKING, Final

import structlog
import trio
from solders.transaction import VersionedTransaction

from searcherd._simnet import start_servers

from . import _sim_state as st
from ._sim_codec import (
    CancelBidRequest,
    ClientFrameError,
    PostBidRequest,
    SubscribeRequest,
    decode_client_frame,
    encode_server_message,
    untagged_bid_error,
)
from ._sim_conn import SimConnection
from ._sim_faults import SimFaults
from ._sim_http import HttpApp
from ._sim_state import BidRecord, SimulatorConfig, Timings
from ._sim_svm import SimSvm
from .messages import (
    BidStatus,
    BidStatusUpdate,
    EvmBidWire,
    EvmOpportunity,
    LimoOpportunity,
    Opportunity,
    OpportunityDelete,
    PostBidResult,
    Response,
    SvmChainUpdate,
    SwapBidWire,
    SwapOpportunity,
    WireBid,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_websocket import WebSocketRequest

    from searcherd._simnet import FaultStream

__all__ = ["BidRecord", "ExpressRelaySimulator", "SimulatorConfig", "Timings", "serve"]

log = structlog.get_logger(__name__)
_MAX_IN_FLIGHT: Final = 150  # concurrent post_bid/cancel_bid per connection, as on the server
_NOT_CANCELLABLE: Final = "Bad parameters: Bid is only cancellable in awaiting_signature state"
_PROFILE_NS: Final = uuid.UUID("6f1c2d9a-4b77-4d58-9b0e-0f8e2e613a7c")


class ExpressRelaySimulator(SimFaults):
    """The running simulator (returned by ``nursery.start(serve, config)``).

    Fault switches (drops, stalls, bad frames, response delays, ...) come from :class:`SimFaults`.
    """

    def __init__(self, config: SimulatorConfig, nursery: trio.Nursery) -> None:
        self.config = config
        self.ws_url = ""
        self.http_url = ""
        #: Every bid accepted over WS or HTTP, by server bid id.
        self.bids: dict[str, BidRecord] = {}
        #: Live opportunities by id; ``published`` keeps every one ever sent, in order.
        self.opportunities: dict[str, Opportunity] = {}
        self.published: list[Opportunity] = []
        self.connections: dict[int, SimConnection] = {}
        self.latest_chain_update: dict[str, SvmChainUpdate] = {}
        #: Unexpected exceptions in connection handlers (a healthy run keeps this empty).
        self.internal_errors: list[BaseException] = []
        #: Optional hook called with every client frame as soon as it is read, before decoding
        #: (the benchmark timestamps ``post_bid`` arrivals with it). Must not block or raise.
        self.on_client_frame: Callable[[str | bytes], None] | None = None
        self._nursery = nursery
        self._api_keys = set(config.api_keys)
        self._chains = set(config.svm_chains) | set(config.evm_chains)
        seed = config.seed
        self._rng = random.Random(f"{seed}:manual")
        self._bid_rng = random.Random(f"{seed}:bids")
        self._conn_ids = iter(range(1, 1 << 62))
        self._ip_counts: Counter[str] = Counter()
        self._seen_bids: set[object] = set()
        self._bid_conn: dict[str, SimConnection] = {}
        self._bid_scopes: dict[str, trio.CancelScope] = {}
        self._limo_keys: dict[tuple[str, str], str] = {}
        # The simulated Express Relay deployment (program ids, relayer) and its SVM bid checks.
        self._svm = SimSvm(seed, config.svm_chains)
        self.relayer_signer = self._svm.relayer_signer
        self.fee_receiver_relayer = self._svm.fee_receiver_relayer
        self.program_id = self._svm.program_id  # per SVM chain id
        self._limo_router = {c: str(self._svm.limo_router(c)) for c in self._chains}
        self._slot = 334_000_000
        self._init_faults()

    # ------------------------------------------------------------------ startup

    async def _start(self) -> None:
        cfg = self.config
        servers = await start_servers(
            self._nursery,
            host=cfg.host,
            ws_port=cfg.ws_port,
            http_port=cfg.http_port,
            ws_path="/v1/ws",
            label="er_sim",
            serve_ws=self._serve_request,
            http_app=HttpApp(self),
            internal_errors=self.internal_errors,
        )
        self.ws_url, self.http_url = servers.ws_url, servers.http_url
        for chain in cfg.svm_chains:
            self._nursery.start_soon(self._chain_update_loop, chain)
        if cfg.opportunity_interval > 0:
            for chain in (*cfg.svm_chains, *cfg.evm_chains):
                self._nursery.start_soon(self._opportunity_loop, chain)
        log.info("er_sim_started", ws_url=self.ws_url, http_url=self.http_url)

    def stop(self) -> None:
        """Stop serving; :func:`serve` then returns."""
        self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ auth

    def key_valid(self, key: str) -> bool:
        """True while ``key`` is an accepted API key."""
        return key in self._api_keys

    def authenticate(self, header: str | None) -> tuple[bool, str | None, str | None]:
        """(ok, api key, profile id) for an ``Authorization`` header value (``None`` = anonymous)."""
        if header is None:
            return True, None, None
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not self.key_valid(token.strip()):
            return False, None, None
        key = token.strip()
        return True, key, str(uuid.uuid5(_PROFILE_NS, key))

    def revoke_api_key(self, key: str) -> None:
        """Stop accepting ``key``; open connections using it drop at their next ping tick."""
        self._api_keys.discard(key)

    # ------------------------------------------------------------------ WebSocket

    async def _serve_request(self, request: WebSocketRequest, stream: FaultStream | None) -> None:
        headers = {k.lower(): v.decode("latin-1") for k, v in request.headers}
        json_type = [(b"content-type", b"application/json")]
        if self._reject_queue:
            status = self._reject_queue.popleft()
            text = (
                "Invalid authorization token"
                if status == 401
                else "Too many open websocket connections"
            )
            body = f'{{"error":"{text}"}}'.encode()
            await request.reject(status, extra_headers=json_type, body=body)
            return
        ok, key, profile_id = self.authenticate(headers.get(b"authorization"))
        if not ok:
            body = b'{"error":"Invalid authorization token"}'
            await request.reject(401, extra_headers=json_type, body=body)
            return
        ip = headers.get(b"x-forwarded-for", "").split(",")[0].strip()
        if ip and self._ip_counts[ip] >= self.config.max_connections_per_ip:
            body = b'{"error":"Too many open websocket connections"}'
            await request.reject(429, extra_headers=json_type, body=body)
            return
        ws = await request.accept()
        conn = SimConnection(
            next(self._conn_ids),
            ws,
            stream,
            api_key=key,
            profile_id=profile_id,
            event_buffer=self.config.event_buffer,
        )
        self.connections[conn.conn_id] = conn
        if ip:
            self._ip_counts[ip] += 1
        log.info("er_sim_connected", conn=conn.conn_id, authenticated=key is not None)
        try:
            ping = partial(conn.ping_loop, self.config.ping_interval, self.key_valid)
            await conn.run(partial(self._read_loop, conn), ping)
        finally:
            del self.connections[conn.conn_id]
            if ip:
                self._ip_counts[ip] -= 1
            log.info("er_sim_disconnected", conn=conn.conn_id)

    async def _read_loop(self, conn: SimConnection) -> None:
        in_flight = trio.Semaphore(_MAX_IN_FLIGHT)
        assert conn.nursery is not None
        while True:
            frame = await conn.ws.get_message()
            if self.on_client_frame is not None:
                self.on_client_frame(frame)
            try:
                req = decode_client_frame(frame)
                tx = self._parse_tx(req.bid, frame) if isinstance(req, PostBidRequest) else None
            except ClientFrameError as e:
                self._respond(conn, Response(None, False, str(e)))
                continue
            if isinstance(req, SubscribeRequest):
                unknown = [c for c in req.chain_ids if c not in self._chains]
                if unknown:
                    shown = ", ".join(f'"{c}"' for c in unknown)
                    self._respond(
                        conn, Response(req.id, False, f"Chain id(s) with id(s) [{shown}] not found")
                    )
                else:
                    conn.subscriptions.update(req.chain_ids)
                    self._respond(conn, Response(req.id, True, None))
                continue
            if not isinstance(req, PostBidRequest | CancelBidRequest):
                conn.subscriptions.difference_update(req.chain_ids)
                self._respond(conn, Response(req.id, True, None))
                continue
            # Like the server: bids and cancels run concurrently (responses come out of order);
            # at the in-flight cap the read loop itself blocks, pings and pushes included.
            await in_flight.acquire()
            conn.nursery.start_soon(self._bid_request, conn, req, tx, in_flight)

    def _parse_tx(self, bid: WireBid, frame: str | bytes) -> VersionedTransaction | None:
        if isinstance(bid, EvmBidWire):
            return None
        try:
            return VersionedTransaction.from_bytes(base64.b64decode(bid.transaction_b64))
        except ValueError:
            raise untagged_bid_error(frame) from None

    async def _bid_request(
        self,
        conn: SimConnection,
        req: PostBidRequest | CancelBidRequest,
        tx: VersionedTransaction | None,
        in_flight: trio.Semaphore,
    ) -> None:
        try:
            await trio.sleep(st.jitter(self._bid_rng, self.config.timings.bid_processing))
            if isinstance(req, CancelBidRequest):
                err = self.cancel_bid(conn.profile_id, req.chain_id, req.bid_id)
                self._respond(conn, Response(req.id, err is None, err))
                return
            result = self.accept_bid(req.bid, tx, conn.profile_id, conn)
        finally:
            in_flight.release()
        if isinstance(result, str):
            self._respond(conn, Response(req.id, False, result))
        else:
            # The bid is attached to this connection as its success response goes out.
            conn.bid_ids.add(result.bid_id)
            self._respond(conn, Response(req.id, True, PostBidResult(result.bid_id)))

    # ------------------------------------------------------------------ bids

    def accept_bid(
        self,
        bid: WireBid,
        tx: VersionedTransaction | None,
        profile_id: str | None,
        conn: SimConnection | None = None,
    ) -> BidRecord | str:
        """Validate and record a bid (WS or HTTP); returns the record or the error text."""
        cfg = self.config
        opp: Opportunity | None = None
        if isinstance(bid, EvmBidWire):
            if bid.chain_id not in cfg.evm_chains:
                return "The chain id is not found"
            key: object = ("evm", bid.chain_id, bid.permission_key, bid.target_calldata, bid.amount)
            opp = next((o for o in self.opportunities.values() if isinstance(o, EvmOpportunity)
                        and o.permission_key == bid.permission_key), None)  # fmt: skip
            kind, sig = "evm", None
        else:
            if bid.chain_id not in cfg.svm_chains or tx is None:
                return "The chain id is not found"
            sig = str(tx.signatures[0]) if tx.signatures else None
            key = ("svm", bytes(tx))
            if isinstance(bid, SwapBidWire):
                opp = self.opportunities.get(bid.opportunity_id)
                if not isinstance(opp, SwapOpportunity) or opp.chain_id != bid.chain_id:
                    return "No swap opportunity with the given id found"
                kind = "swap"
            else:
                accounts = {str(k) for k in tx.message.account_keys}
                opp = next((o for o in self.opportunities.values() if isinstance(o, LimoOpportunity)
                            and o.order_address in accounts), None)  # fmt: skip
                kind = "on_chain"
            if cfg.svm_bid_check is not None:
                try:
                    cfg.svm_bid_check(bid=bid, transaction=tx, opportunity=opp)
                except Exception as e:  # the hook's text is the server's error response
                    return str(e) or type(e).__name__
            elif cfg.check_svm_bids:
                now = cfg.wall_clock()
                checked = self._svm.check(bid, tx, opp, self.opportunities.values(), now=now)
                if checked.error is not None:
                    return checked.error
                opp = checked.opportunity
        if key in self._seen_bids:
            return "Duplicate bid"
        self._seen_bids.add(key)
        record = BidRecord(
            bid_id=st.new_uuid(self._bid_rng),
            chain_id=bid.chain_id,
            kind=kind,
            opportunity_id=opp.opportunity_id if opp is not None else None,
            transaction=bytes(tx) if tx is not None else None,
            signature=sig,
            amount=bid.amount if isinstance(bid, EvmBidWire) else None,
            profile_id=profile_id,
            outcome=st.pick_outcome(self._bid_rng, cfg.outcomes),
            cancellable=isinstance(opp, SwapOpportunity) and opp.cancellable,
            initiated_at=cfg.wall_clock(),
        )
        self.bids[record.bid_id] = record
        if conn is not None:
            self._bid_conn[record.bid_id] = conn
        plan = st.plan_statuses(record, self._bid_rng, cfg.timings)
        scope = self._bid_scopes[record.bid_id] = trio.CancelScope()
        self._nursery.start_soon(self._progress, record, plan, scope)
        log.info("er_sim_bid_accepted", bid_id=record.bid_id, kind=kind, outcome=record.outcome)
        return record

    async def _progress(
        self, record: BidRecord, plan: list[tuple[float, BidStatus]], scope: trio.CancelScope
    ) -> None:
        with scope:
            for delay, status in plan:
                await trio.sleep(delay)
                self._record_status(record, status)

    def _record_status(self, record: BidRecord, status: BidStatus) -> None:
        record.history.append(status)
        conn = self._bid_conn.get(record.bid_id)
        # Routing is per connection: only the connection that posted the bid hears about it.
        if conn is not None and not conn.closed and record.bid_id in conn.bid_ids:
            update = BidStatusUpdate(record.bid_id, status)
            conn.push(encode_server_message(update, evm=record.is_evm).decode())

    def set_bid_status(self, bid_id: str, status: BidStatus) -> None:
        """Force a status now (e.g. while the client is away); stops the planned progression."""
        self._bid_scopes[bid_id].cancel()
        self._record_status(self.bids[bid_id], status)

    def cancel_bid(self, profile_id: str | None, chain_id: str, bid_id: str) -> str | None:
        """Cancel for ``profile_id``; returns the server's error text or ``None`` on success."""
        if profile_id is None:
            return "Unauthorized"
        if chain_id not in self._chains:
            return "The chain id is not found"
        record = self.bids.get(bid_id)
        if record is None or record.chain_id != chain_id:
            return _NOT_CANCELLABLE
        if record.profile_id != profile_id:
            return "Forbidden"
        if record.kind == "swap" and not record.cancellable:
            return "Bad parameters: Non-cancellable quotes can't be cancelled"
        if record.status.type != "awaiting_signature":
            return _NOT_CANCELLABLE
        self.set_bid_status(bid_id, BidStatus("cancelled", record.signature))
        return None

    # ------------------------------------------------------------------ opportunities

    def push_opportunity(
        self,
        opportunity: Opportunity | None = None,
        *,
        chain_id: str | None = None,
        program: str = "swap",
        cancellable: bool = True,
    ) -> Opportunity:
        """Publish one opportunity now (generated from the seed unless given) and return it.

        ``program`` is ``"swap"``, ``"limo"`` or ``"evm"``; ``chain_id`` defaults to the first
        chain of that kind.
        """
        opp = opportunity
        if opp is None:
            now = self.config.wall_clock()
            if program == "evm":
                opp = st.make_evm(self._rng, chain_id or self.config.evm_chains[0], now)
            else:
                chain = chain_id or self.config.svm_chains[0]
                if program == "limo":
                    opp = st.make_limo(self._rng, chain, now, self._next_slot())
                else:
                    opp = st.make_swap(self._rng, chain, now, cancellable=cancellable)
        self._publish(opp)
        return opp

    def _next_slot(self) -> int:
        self._slot += 2
        return self._slot

    def _publish(self, opp: Opportunity) -> None:
        cfg = self.config
        if isinstance(opp, LimoOpportunity):
            # The server keeps the newest opportunity per (chain, order); a changed order replaces
            # the old one without a removal push.
            old = self._limo_keys.get((opp.chain_id, opp.order_address))
            if old is not None and old != opp.opportunity_id:
                self.opportunities.pop(old, None)
            self._limo_keys[(opp.chain_id, opp.order_address)] = opp.opportunity_id
            lifetime = cfg.limo_lifetime
        else:
            lifetime = cfg.swap_lifetime if isinstance(opp, SwapOpportunity) else cfg.evm_lifetime
        self.opportunities[opp.opportunity_id] = opp
        self.published.append(opp)
        self._broadcast(opp.chain_id, encode_server_message(opp).decode())
        self._nursery.start_soon(self._expire, opp, lifetime)

    async def _expire(self, opp: Opportunity, lifetime: float) -> None:
        await trio.sleep(lifetime)
        self.remove_opportunity(opp.opportunity_id)

    def remove_opportunity(self, opportunity_id: str) -> None:
        """Remove a live opportunity now; limo and EVM ones get a ``remove_opportunities`` push."""
        opp = self.opportunities.pop(opportunity_id, None)
        delete: OpportunityDelete | None = None
        if isinstance(opp, LimoOpportunity):
            self._limo_keys.pop((opp.chain_id, opp.order_address), None)
            delete = OpportunityDelete("svm", opp.chain_id, "v1", permission_account=opp.order_address,
                                       router=self._limo_router[opp.chain_id], program="limo")  # fmt: skip
        elif isinstance(opp, EvmOpportunity):
            delete = OpportunityDelete("evm", opp.chain_id, "v1", permission_key=opp.permission_key)
        # Swap quotes vanish silently after their auction, as on the real server.
        if delete is not None:
            self._broadcast(delete.chain_id, encode_server_message(delete).decode())

    def _broadcast(self, chain_id: str, frame: str) -> None:
        for conn in list(self.connections.values()):
            if chain_id in conn.subscriptions:
                conn.push(frame)

    async def _opportunity_loop(self, chain: str) -> None:
        cfg = self.config
        rng = random.Random(f"{cfg.seed}:opportunities:{chain}")
        while True:
            await trio.sleep(rng.expovariate(1.0 / cfg.opportunity_interval))
            now = cfg.wall_clock()
            opp: Opportunity
            if chain in cfg.evm_chains:
                opp = st.make_evm(rng, chain, now)
            elif rng.random() < cfg.swap_share:
                opp = st.make_swap(
                    rng, chain, now, cancellable=rng.random() < cfg.cancellable_share
                )
            else:
                opp = st.make_limo(rng, chain, now, self._next_slot())
            self._publish(opp)

    async def _chain_update_loop(self, chain: str) -> None:
        rng = random.Random(f"{self.config.seed}:chain:{chain}")
        while True:
            update = SvmChainUpdate(chain, st.blockhash(rng), rng.randrange(1_000, 200_000))
            self.latest_chain_update[chain] = update
            self._svm.note_fee(chain, update.latest_prioritization_fee)
            self._broadcast(chain, encode_server_message(update).decode())
            await trio.sleep(self.config.chain_update_interval)


async def serve(
    config: SimulatorConfig | None = None,
    *,
    task_status: trio.TaskStatus[ExpressRelaySimulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the simulator until cancelled; ``nursery.start`` returns the running simulator."""
    async with trio.open_nursery() as nursery:
        sim = ExpressRelaySimulator(config or SimulatorConfig(), nursery)
        await sim._start()
        task_status.started(sim)
