"""Tests for the Fusion+ venue (and its RPC and REST clients) against the bundled simulator.

Real sockets on 127.0.0.1, a real state table in `tmp_path`, the trio clock jumping
(`autojump_clock`); unix time is derived from the trio clock so deadlines and escrow windows
move with it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import httpx
import pytest
import trio
import trio.testing
from structlog.testing import capture_logs
from trio_websocket import open_websocket_url

from searcherd._secrets import Secret, SecretRef
from searcherd.bids import BidUpdate, FillIntent
from searcherd.config import FusionPlusConfig, LimitsConfig
from searcherd.fusion_plus._rpc import RpcClient, RpcError, RpcTimeout
from searcherd.fusion_plus.messages import (
    ActiveOrdersPage,
    RpcResponse,
    SecretsError,
    SecretsResult,
    decode_frame,
)
from searcherd.fusion_plus.rest import FusionRestClient, RestError
from searcherd.fusion_plus.simulator import FusionPlusSimulator, SimulatorConfig, serve
from searcherd.fusion_plus.venue import FusionPlusVenue, normalize_ws_url
from searcherd.metrics import Metrics
from searcherd.risk import RiskGate
from searcherd.store import StateStore
from searcherd.transport import WebSocketTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path

    from searcherd.connection import ConnectionSettings
    from searcherd.fusion_plus.orderbook import FusionOrder
    from searcherd.transport import Socket

T0 = 1_767_225_600
KEY = "sim-key-0123456789"
RESOLVER = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"


def wall() -> float:
    """Unix seconds that move with the (mock) trio clock."""
    return T0 + trio.current_time()


def secret(value: str) -> Secret:
    """A resolved secret as the config loader makes it."""
    return Secret(SecretRef("env", "FUSION_KEY"), value=value)


class Sink:
    """The evaluator's two entry points, recording what the venue hands over."""

    def __init__(self) -> None:
        self.offers: list[tuple[FusionOrder, float]] = []
        self.updates: list[BidUpdate] = []

    def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
        assert venue == "fusion_plus"
        self.offers.append((opportunity, received_at))

    def bid_status(self, update: BidUpdate) -> None:
        self.updates.append(update)

    def of(self, order_hash: str) -> list[FusionOrder]:
        return [o for o, _ in self.offers if o.order_hash == order_hash]


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (on the trio clock, at most 120 s) until `predicate()` holds.

    Polling, not an Event: the conditions are spread over the venue's internals, and a short
    poll also keeps the mock clock from leaping while the store's thread commits.
    """
    with trio.fail_after(120):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.05)


@attrs.define
class Harness:
    """A simulator, a state store and a venue wired to them."""

    sim: FusionPlusSimulator
    store: StateStore
    venue: FusionPlusVenue
    sink: Sink
    metrics: Metrics

    async def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        await self.store.flush()
        return await self.store.query(lambda c: c.execute(sql, args).fetchall())

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def venue_config(sim: FusionPlusSimulator, **overrides: Any) -> FusionPlusConfig:
    """A venue config pointing at `sim` (URL given without the version segment)."""
    base: dict[str, Any] = {
        "enabled": True,
        "ws_url": sim.ws_url.removesuffix("/v1.2"),
        "http_url": sim.http_url,
        "api_key": secret(KEY),
        "resolver_address": RESOLVER,
        "rpc_timeout": 5.0,
    }
    base.update(overrides)
    return FusionPlusConfig(**base)


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path,
    *,
    sim_config: SimulatorConfig | None = None,
    ready: bool = True,
    limits: LimitsConfig | None = None,
    dry_run: bool = False,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    """Start the simulator, the store and a venue; cancel everything on exit."""
    async with trio.open_nursery() as nursery:
        cfg = sim_config or SimulatorConfig(api_keys=(KEY,), clock=wall)
        sim = await nursery.start(serve, cfg)
        store = StateStore(tmp_path / "state.db", commit_interval=0.01)
        await nursery.start(store.run)
        metrics = Metrics()
        sink = Sink()
        venue = FusionPlusVenue(
            venue_config(sim, **overrides),
            store=store,
            metrics=metrics,
            risk=RiskGate(limits or LimitsConfig(), clock=trio.current_time),
            sink=sink,
            dry_run=dry_run,
            clock=wall,
        )
        h = Harness(sim, store, venue, sink, metrics)
        await nursery.start(venue.run)
        if ready:
            with trio.fail_after(60):
                await venue.wait_ready()
        yield h
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- URL


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://api.1inch.com/fusion-plus/ws", "wss://api.1inch.com/fusion-plus/ws/v1.2"),
        ("wss://api.1inch.com/fusion-plus/ws/", "wss://api.1inch.com/fusion-plus/ws/v1.2"),
        ("wss://api.1inch.com/fusion-plus/ws/v1.2", "wss://api.1inch.com/fusion-plus/ws/v1.2"),
        ("wss://api.1inch.com/fusion-plus/ws/v1.2/v1.2", "wss://api.1inch.com/fusion-plus/ws/v1.2"),
        ("https://api.1inch.com/fusion-plus/ws", "wss://api.1inch.com/fusion-plus/ws/v1.2"),
        ("ws://127.0.0.1:9/ws/v1.0", "ws://127.0.0.1:9/ws/v1.0"),
    ],
)
def test_ws_url_gets_exactly_one_version_segment(url: str, expected: str) -> None:
    """The version is appended when missing, kept when present, and never doubled."""
    assert normalize_ws_url(url) == expected


# ---------------------------------------------------------------- connect and reseed


async def test_connects_with_bearer_and_reseeds_every_page(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Orders created before the connect arrive through getActiveOrders, all pages of it."""
    async with trio.open_nursery() as nursery:
        sim = await nursery.start(serve, SimulatorConfig(api_keys=(KEY,), clock=wall))
        hashes = [sim.create_order(announce=False).order_hash for _ in range(7)]
        store = StateStore(tmp_path / "state.db", commit_interval=0.01)
        await nursery.start(store.run)
        sink = Sink()
        venue = FusionPlusVenue(
            venue_config(sim, page_limit=3),
            store=store,
            metrics=Metrics(),
            risk=RiskGate(LimitsConfig()),
            sink=sink,
            dry_run=False,
            clock=wall,
        )
        await nursery.start(venue.run)
        with trio.fail_after(60):
            await venue.wait_ready()
        pages = [r["param"] for r in sim.rpc_requests if r["method"] == "getActiveOrders"]
        assert pages == [{"page": 1, "limit": 3}, {"page": 2, "limit": 3}, {"page": 3, "limit": 3}]
        assert sorted(o.order_hash for o in venue.view.active_orders()) == sorted(hashes)
        assert sorted({o.order_hash for o, _ in sink.offers}) == sorted(hashes)
        assert venue.snapshot()["healthy"] is True
        assert venue.snapshot()["orders"] == {"active": 7}
        await store.flush()
        rows = await store.query(lambda c: c.execute("SELECT status FROM orders").fetchall())
        assert rows == [("active",)] * 7
        nursery.cancel_scope.cancel()


async def test_custom_transport_is_used(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A pluggable transport (the SDK's custom provider) carries the venue's socket."""

    class Counting:
        """A custom transport: wraps the default one and records every open."""

        opened: ClassVar[list[str]] = []

        def __init__(self) -> None:
            self._inner = WebSocketTransport()

        def open(
            self, url: str, headers: Sequence[tuple[str, str]], settings: ConnectionSettings
        ) -> contextlib.AbstractAsyncContextManager[Socket]:
            self.opened.append(url)
            return self._inner.open(url, headers, settings)

    async with trio.open_nursery() as nursery:
        sim = await nursery.start(serve, SimulatorConfig(api_keys=(KEY,), clock=wall))
        store = StateStore(tmp_path / "state.db", commit_interval=0.01)
        await nursery.start(store.run)
        venue = FusionPlusVenue(
            venue_config(sim),
            store=store,
            metrics=Metrics(),
            risk=RiskGate(LimitsConfig()),
            sink=Sink(),
            dry_run=False,
            transport=Counting(),
            clock=wall,
        )
        await nursery.start(venue.run)
        with trio.fail_after(60):
            await venue.wait_ready()
        assert Counting.opened == [sim.ws_url]
        nursery.cancel_scope.cancel()


async def test_bad_key_is_a_401_and_never_healthy(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A wrong key is refused at the upgrade; the error says 401 and never shows the key."""
    async with harness(tmp_path, ready=False, api_key=secret("wrong-key-abcdef")) as h:
        await until(lambda: h.venue.snapshot()["last_error"] is not None)
        snap = h.venue.snapshot()
        assert "401" in snap["last_error"]
        assert "wrong-key-abcdef" not in repr(snap)
        assert snap["healthy"] is False
        assert not h.venue.is_fresh()
        assert h.sim.connections_accepted == 0


# ---------------------------------------------------------------- events


async def test_every_event_type_reaches_the_book_and_the_state_table(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """All eight events update the book, the orders rows and the order_events rows."""
    async with harness(tmp_path) as h:
        sim, venue = h.sim, h.venue
        multi = sim.create_order(parts=3)
        cancelled = sim.create_order()
        invalid = sim.create_order()
        await until(lambda: len(venue.book) == 3)
        sim.change_balance(multi.order_hash, 60_000_000)
        sim.change_allowance(multi.order_hash, 0)
        fill = sim.fill_partially(multi.order_hash, 50_000_000)
        shared = sim.share_secret(multi.order_hash, fill)
        sim.fill(multi.order_hash)
        sim.cancel(cancelled.order_hash)
        sim.invalidate(invalid.order_hash)
        await until(lambda: venue.book.counts() == {"filled": 1, "cancelled": 1, "invalid": 1})

        order = venue.order(multi.order_hash)
        assert order is not None
        assert order.status == "filled"
        assert order.remaining_maker_amount == 0
        assert order.maker_balance == 60_000_000
        assert order.maker_allowance == 0
        assert [s.secret for s in order.secrets] == [shared.secret]
        assert venue.view.active_orders() == []

        events = await h.rows(
            "SELECT event FROM order_events WHERE order_hash = ? ORDER BY id", multi.order_hash
        )
        assert [e for (e,) in events] == [
            "order_created",
            "order_balance_change",
            "order_allowance_change",
            "order_filled_partially",
            "secret_shared",
            "order_filled",
        ]
        statuses = dict(await h.rows("SELECT order_hash, status FROM orders"))
        assert statuses == {
            multi.order_hash: "filled",
            cancelled.order_hash: "cancelled",
            invalid.order_hash: "invalid",
        }
        remaining = await h.rows(
            "SELECT remaining_maker_amount FROM orders WHERE order_hash = ?", cancelled.order_hash
        )
        assert remaining == [("100000000",)]
        # Every update was offered, in order, each an immutable snapshot of that moment.
        seen = [o.last_event for o in h.sink.of(multi.order_hash)]
        assert seen[0] == "order_created"
        assert seen[-1] == "order_filled"
        assert h.sink.of(multi.order_hash)[0].status == "active"
        assert h.metric("searcherd_fusion_orders", status="filled") == 1


async def test_secret_joins_its_order_and_an_unknown_orders_secret_is_kept(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """secret_shared joins through srcImmutables.orderHash; one for an unknown order is stored."""
    async with harness(tmp_path) as h:
        sim, venue = h.sim, h.venue
        a = sim.create_order(parts=3)
        b = sim.create_order(parts=3)
        await until(lambda: len(venue.book) == 2)
        unseen = sim.create_order(announce=False)  # created after the reseed, never announced
        sim.fill_partially(b.order_hash, 30_000_000)
        secret_b = sim.share_secret(b.order_hash)
        secret_u = sim.share_secret(unseen.order_hash, sim.fill(unseen.order_hash))
        sentinel = sim.create_order()  # frames are handled in order: once it is in, all are
        await until(lambda: venue.order(sentinel.order_hash) is not None)

        rows = await h.rows("SELECT order_hash, idx, secret FROM secrets")
        assert sorted(rows) == sorted(
            [
                (b.order_hash, secret_b.idx, secret_b.secret),
                (unseen.order_hash, secret_u.idx, secret_u.secret),
            ]
        )
        assert venue.order(unseen.order_hash) is None
        order_a = venue.order(a.order_hash)
        assert order_a is not None
        assert order_a.secrets == ()
        # The secret is the preimage of the hashlock of that fill.
        order_b = venue.order(b.order_hash)
        assert order_b is not None
        assert order_b.secrets == (secret_b,)
        assert order_b.secrets[0].src_immutables.hashlock == b.secret_hashes[secret_b.idx]


async def test_non_json_and_unknown_events_are_counted_and_the_feed_continues(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Garbage and unknown event types are counted and logged; later events still arrive."""
    async with harness(tmp_path) as h:
        with capture_logs() as logs:
            h.sim.send_raw("not json at all")
            h.sim.send_unknown_event("order_mystery")
            h.sim.send_raw("[1, 2, 3]")
            order = h.sim.create_order()
            await until(lambda: h.venue.order(order.order_hash) is not None)
        assert h.metric("searcherd_decode_errors_total", venue="fusion_plus", kind="not_json") == 1
        assert h.metric("searcherd_decode_errors_total", venue="fusion_plus", kind="invalid") == 1
        assert h.metric("searcherd_unknown_messages_total", venue="fusion_plus", kind="event") == 1
        assert h.venue.snapshot()["healthy"] is True
        names = [e["event"] for e in logs]
        assert "fusion_decode_error" in names
        assert "fusion_unknown_event" in names
        assert h.venue.snapshot()["reconnects"] == 0


# ---------------------------------------------------------------- outage


async def test_orders_finished_during_an_outage_are_resolved_over_rest(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Events missed while away: reseed drops them from the active set, REST says what became
    of them, and their final status lands in the book and the state table."""
    async with harness(tmp_path, backoff_max=2.0) as h:
        sim, venue = h.sim, h.venue
        filled = sim.create_order()
        cancelled = sim.create_order()
        expired = sim.create_order()
        alive = sim.create_order()
        await until(lambda: len(venue.book) == 4)

        sim.refuse_connections(503)
        sim.drop_clients()
        await until(lambda: not venue.snapshot()["connected"])
        sim.fill(filled.order_hash)
        sim.cancel(cancelled.order_hash)
        sim.expire(expired.order_hash)
        sim.change_balance(alive.order_hash, 5)
        created = sim.create_order()
        assert sim.missed_events == 4
        await trio.sleep(5)
        sim.refuse_connections(None)

        await until(lambda: venue.snapshot()["healthy"] and venue.snapshot()["reconnects"] >= 1)
        vanished = (filled.order_hash, cancelled.order_hash, expired.order_hash)
        assert {h_: venue.order(h_).status for h_ in vanished} == {  # type: ignore[union-attr]
            filled.order_hash: "filled",
            cancelled.order_hash: "cancelled",
            expired.order_hash: "expired",
        }
        # Only the orders that vanished were asked about over REST.
        asked = {p.rsplit("/", 1)[-1] for p in sim.http_requests if "/order/status/" in p}
        assert asked == set(vanished)
        alive_now = venue.order(alive.order_hash)
        assert alive_now is not None
        assert alive_now.status == "active"
        assert alive_now.maker_balance == 5  # the reseed carries what the missed event said
        assert venue.order(created.order_hash) is not None
        assert any(p.endswith(f"/order/status/{filled.order_hash}") for p in sim.http_requests)
        statuses = dict(await h.rows("SELECT order_hash, status FROM orders"))
        assert statuses[filled.order_hash] == "filled"
        assert statuses[cancelled.order_hash] == "cancelled"
        assert statuses[expired.order_hash] == "expired"
        assert statuses[created.order_hash] == "active"
        rest_rows = await h.rows("SELECT order_hash FROM order_events WHERE event = 'rest_status'")
        assert len(rest_rows) == 3
        assert h.metric("searcherd_reconnects_total", venue="fusion_plus") == 1


async def test_a_stalled_server_is_left_and_the_venue_reconnects(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A server that stops sending (no pongs, no answers) is detected and replaced."""
    async with harness(tmp_path, ping_interval=5.0, ping_timeout=3.0, backoff_max=2.0) as h:
        h.sim.stall()
        await until(lambda: h.venue.snapshot()["reconnects"] >= 1 and h.venue.snapshot()["healthy"])
        order = h.sim.create_order()
        await until(lambda: h.venue.order(order.order_hash) is not None)
        assert h.sim.connections_accepted >= 2


# ---------------------------------------------------------------- pricing, ours, alarms, expiry


async def test_auction_price_over_time_is_offered_to_strategies(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The offered snapshot prices the Dutch auction: highest at the start, the order's own
    taking amount at the end, falling in between."""
    async with harness(tmp_path) as h:
        order = h.sim.create_order(taking_amount=99_000_000, duration=180)
        await until(lambda: bool(h.sink.of(order.order_hash)))
        offered = h.sink.of(order.order_hash)[0]
        start = order.extension.auction.start_time
        assert offered.extension is not None
        assert offered.extension.auction.start_time == start
        assert offered.rate_bump_at(start) == 50_000
        assert offered.taking_amount_at(start) == 99_000_000 * 10_050_000 // 10_000_000
        assert offered.taking_amount_at(start + 180) == 99_000_000
        prices = [offered.taking_amount_at(start + t) for t in range(0, 181, 30)]
        assert prices == sorted(prices, reverse=True)
        assert offered.deadline == start + 180 + 12


async def test_our_fill_is_flagged_and_the_window_alarm_fires(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A secret naming our resolver flags the order `ours`; as a private window nears its end
    the alarm is logged and counted, once per window."""
    async with harness(tmp_path, window_alarm=300.0) as h:
        with capture_logs() as logs:
            order = h.sim.create_order(parts=3)
            other = h.sim.create_order()
            await until(lambda: len(h.venue.book) == 2)
            fill = h.sim.fill_partially(order.order_hash, 50_000_000, taker=RESOLVER)
            h.sim.share_secret(order.order_hash, fill)
            h.sim.fill(other.order_hash)  # someone else's fill
            h.sim.share_secret(other.order_hash)
            await until(lambda: bool(h.venue.order(other.order_hash).secrets))  # type: ignore[union-attr]
            mine = h.venue.order(order.order_hash)
            assert mine is not None
            assert mine.ours
            assert not h.venue.order(other.order_hash).ours  # type: ignore[union-attr]
            # dst private withdrawal ends at dst deployedAt + 452 s (462 s after the fill),
            # src private withdrawal at src deployedAt + 512 s: neither within 300 s yet.
            assert h.venue.alarms == 0
            await trio.sleep(200)
            assert h.metric("searcherd_fusion_window_alarms_total", window="dst_withdrawal") == 1
            assert h.metric("searcherd_fusion_window_alarms_total", window="src_withdrawal") == 0
            await trio.sleep(60)
            assert h.metric("searcherd_fusion_window_alarms_total", window="dst_withdrawal") == 1
            assert h.metric("searcherd_fusion_window_alarms_total", window="src_withdrawal") == 1
        alarms = [e for e in logs if e["event"] == "fusion_window_alarm"]
        assert [a["window"] for a in alarms] == ["dst_withdrawal", "src_withdrawal"]
        assert {a["order_hash"] for a in alarms} == {order.order_hash}
        assert all(0 < a["closes_in"] <= 300 for a in alarms)
        ours = await h.rows("SELECT order_hash FROM orders WHERE ours = 1")
        assert ours == [(order.order_hash,)]


async def test_orders_past_their_deadline_expire(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No event announces expiry: the deadline does, lazily and through the sweep."""
    async with harness(tmp_path) as h:
        order = h.sim.create_order(duration=60)
        await until(lambda: h.venue.order(order.order_hash) is not None)
        await trio.sleep(60 + 12 + 1)
        assert h.venue.view.active_orders() == []
        await trio.sleep(6)
        snapshot = h.venue.order(order.order_hash)
        assert snapshot is not None
        assert snapshot.status == "expired"
        assert await h.rows("SELECT status FROM orders") == [("expired",)]
        assert h.sink.of(order.order_hash)[-1].status == "expired"


# ---------------------------------------------------------------- fills


async def test_fill_intents_pass_the_gate_are_recorded_and_executed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A valid intent is recorded and executed; bad ones are refused with a reason."""
    async with harness(tmp_path) as h:
        order = h.sim.create_order()
        await until(lambda: h.venue.order(order.order_hash) is not None)
        good = FillIntent(order_hash=order.order_hash, src_chain_id=1, making_amount=10_000_000)
        h.venue.submit("s1", good, trio.current_time())
        too_big = attrs.evolve(good, making_amount=10**12)
        h.venue.submit("s1", too_big, trio.current_time())
        unknown = attrs.evolve(good, order_hash="0x" + "11" * 32)
        h.venue.submit("s1", unknown, trio.current_time())
        await h.venue.drain()
        assert h.venue.executor.executed == [good]  # type: ignore[attr-defined]
        assert [(u.status, u.reason) for u in h.sink.updates] == [
            ("submitted", None),
            ("invalid", "making_amount is not within the remaining amount"),
            ("invalid", "order is not active"),
        ]
        rows = await h.rows("SELECT order_hash, strategy, amount FROM fill_intents ORDER BY id")
        assert rows[0] == (order.order_hash, "s1", "10000000")
        assert len(rows) == 3


async def test_dry_run_records_without_executing_and_the_gate_blocks(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Dry run records the intent and never executes; the kill switch blocks at the gate."""
    async with harness(tmp_path, dry_run=True) as h:
        order = h.sim.create_order()
        await until(lambda: h.venue.order(order.order_hash) is not None)
        intent = FillIntent(order_hash=order.order_hash, src_chain_id=1, making_amount=1)
        h.venue.submit("s1", intent, trio.current_time())
        await h.venue.drain()
        assert h.venue.executor.executed == []  # type: ignore[attr-defined]
        assert [u.status for u in h.sink.updates] == ["dry_run"]
        h.venue._risk.limits = LimitsConfig(kill_switch=True)
        h.venue.submit("s1", intent, trio.current_time())
        assert h.sink.updates[-1].status == "blocked"
        assert h.sink.updates[-1].reason == "kill_switch"
        details = await h.rows("SELECT detail FROM fill_intents ORDER BY id")
        assert ['"dry_run"' in d and '"blocked"' not in d for (d,) in details] == [True, False]


async def test_an_executor_error_is_reported_not_fatal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An executor that raises marks the intent failed; the next intent still executes."""

    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def execute(self, intent: FillIntent, order: FusionOrder) -> None:
            await trio.lowlevel.checkpoint()
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")

    async with harness(tmp_path) as h:
        flaky = Flaky()
        h.venue.executor = flaky
        order = h.sim.create_order()
        await until(lambda: h.venue.order(order.order_hash) is not None)
        intent = FillIntent(order_hash=order.order_hash, src_chain_id=1, making_amount=1)
        h.venue.submit("s1", intent, trio.current_time())
        h.venue.submit("s1", intent, trio.current_time())
        await h.venue.drain()
        assert flaky.calls == 2
        assert [u.status for u in h.sink.updates] == ["submitted", "submitted", "failed"]
        assert h.venue._risk.in_flight("s1") == 0


# ---------------------------------------------------------------- RPC and REST clients


@contextlib.asynccontextmanager
async def rpc_session(
    sim: FusionPlusSimulator, key: str, rpc_timeout: float = 5.0
) -> AsyncIterator[tuple[RpcClient, Callable[[bytes], Any]]]:
    """An RpcClient on a raw socket to `sim`, with a reader feeding it."""
    rpc = RpcClient(rpc_timeout)
    headers = [(b"Authorization", f"Bearer {key}".encode())]
    async with (
        open_websocket_url(sim.ws_url, extra_headers=headers) as ws,
        trio.open_nursery() as n,
    ):

        async def reader() -> None:
            with contextlib.suppress(Exception):
                while True:
                    msg = decode_frame(await ws.get_message())
                    if isinstance(msg, RpcResponse):
                        rpc.deliver(msg)
            rpc.fail_all("closed")

        n.start_soon(reader)
        yield rpc, ws.send_message
        n.cancel_scope.cancel()


async def test_rpc_methods_and_the_getsecrets_error_shape(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """ping, getAllowedMethods, paginated getActiveOrders; getSecrets answers both shapes."""
    sim = await nursery.start(
        serve, SimulatorConfig(api_keys=(KEY, "vip-key-000000"), secrets_keys=("vip-key-000000",))
    )
    for _ in range(5):
        sim.create_order(announce=False)
    async with rpc_session(sim, KEY) as (rpc, send):
        assert await rpc.ping(send) == "pong"
        assert "getSecrets" not in await rpc.allowed_methods(send)
        pages: list[ActiveOrdersPage] = []
        assert await rpc.all_active_orders(send, 2, pages.append) == 5
        assert [p.meta.current_page for p in pages] == [1, 2, 3]
        assert pages[0].meta.total_items == 5
        assert await rpc.secrets(send) == SecretsError("not allowed")
        with pytest.raises(ValueError, match="limit"):
            await rpc.call(send, "getActiveOrders", {"limit": 501})
    order = next(iter(sim.orders.values()))
    sim.fill(order.order_hash)
    shared = sim.share_secret(order.order_hash)
    async with rpc_session(sim, "vip-key-000000") as (rpc, send):
        assert "getSecrets" in await rpc.allowed_methods(send)
        result = await rpc.secrets(send)
        assert isinstance(result, SecretsResult)
        assert result.secrets == (shared,)


async def test_rpc_times_out_and_fails_at_once_when_the_socket_dies(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An unanswered request times out; a dead socket fails the waiter without waiting."""
    sim = await nursery.start(serve, SimulatorConfig(api_keys=(KEY,)))
    async with rpc_session(sim, KEY, rpc_timeout=3.0) as (rpc, send):
        sim.stall()
        with pytest.raises(RpcTimeout):
            await rpc.ping(send)
        start = trio.current_time()

        async def kill() -> None:
            await trio.sleep(0.5)
            rpc.fail_all("socket lost")

        async with trio.open_nursery() as n:
            n.start_soon(kill)
            with pytest.raises(RpcError, match="socket lost"):
                await rpc.call(send, "getAllowedMethods")
        assert trio.current_time() - start < 1.0
        sim.resume()


async def test_rest_client_reads_status_and_secrets_and_reports_errors(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """REST order status and secrets decode; 401 and 404 become RestError with the status."""
    sim = await nursery.start(serve, SimulatorConfig(api_keys=(KEY,)))
    order = sim.create_order(parts=3)
    fill = sim.fill_partially(order.order_hash, 40_000_000, taker=RESOLVER)
    shared = sim.share_secret(order.order_hash, fill)
    async with httpx.AsyncClient() as http:
        rest = FusionRestClient(sim.http_url, secret(KEY), http, timeout=5)
        status = await rest.order_status(order.order_hash)
        assert status.status == "pending"
        assert status.fills[0].filled_maker_amount == 40_000_000
        secrets = await rest.secrets(order.order_hash)
        assert secrets.order_type == "MultipleFills"
        assert secrets.secrets == (shared,)
        with pytest.raises(RestError) as missing:
            await rest.order_status("0x" + "22" * 32)
        assert missing.value.status == 404
        bad = FusionRestClient(sim.http_url, secret("nope-nope-nope"), http, timeout=5)
        with pytest.raises(RestError) as denied:
            await bad.secrets(order.order_hash)
        assert denied.value.status == 401
        assert "nope-nope-nope" not in str(denied.value)


async def test_running_auctions_are_offered_again_as_their_price_falls(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An order whose Dutch auction is running is offered again by the periodic sweep, with
    no event: a strategy waiting for a price threshold sees the price move; an order whose
    auction has ended is not offered again as a live one."""
    async with harness(tmp_path) as h:
        running = h.sim.create_order(auction_start=int(wall()), duration=180).order_hash
        ended = h.sim.create_order(auction_start=int(wall()) - 1000, duration=180).order_hash
        await until(lambda: bool(h.sink.of(running)) and bool(h.sink.of(ended)))
        before_running, before_ended = len(h.sink.of(running)), len(h.sink.of(ended))
        h.venue.sweep()
        assert len(h.sink.of(running)) == before_running + 1
        # The ended one is at most reported expired by the sweep, never re-offered as live.
        assert all(not o.is_active for o in h.sink.of(ended)[before_ended:])
        # The offered snapshot prices the auction at the time it is evaluated.
        order = h.sink.of(running)[-1]
        assert order.taking_amount_at(int(wall()) + 170) < order.taking_amount_at(int(wall()))
