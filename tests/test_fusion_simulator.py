"""Tests for the Fusion+ simulator, driven by plain WebSocket and HTTP clients on loopback."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from searcherd.fusion_plus._abi import keccak256
from searcherd.fusion_plus.extension import decode_extension, salt_matches_extension
from searcherd.fusion_plus.messages import (
    ActiveOrdersPage,
    FusionDecodeError,
    OrderCreated,
    OrderFilled,
    OrderFilledPartially,
    RpcResponse,
    SecretShared,
    decode_frame,
)
from searcherd.fusion_plus.simulator import (
    FusionPlusSimulator,
    SimulatorConfig,
    serve,
    venue_overrides,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_websocket import WebSocketConnection

KEY = "test-key-123456"
AUTH = [(b"Authorization", f"Bearer {KEY}".encode())]


@asynccontextmanager
async def client(sim: FusionPlusSimulator) -> AsyncIterator[WebSocketConnection]:
    """An authenticated WebSocket client on the simulator."""
    async with open_websocket_url(sim.ws_url, extra_headers=AUTH) as ws:
        yield ws


async def start(nursery: trio.Nursery, **kw: object) -> FusionPlusSimulator:
    """Start a simulator with `KEY` accepted."""
    sim: FusionPlusSimulator = await nursery.start(
        serve,
        SimulatorConfig(api_keys=(KEY,), **kw),  # type: ignore[arg-type]
    )
    return sim


async def test_bad_or_missing_key_is_rejected_with_401(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The upgrade is refused with 401 for a wrong key and for none."""
    sim = await start(nursery)
    for headers in ([(b"Authorization", b"Bearer nope")], []):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(sim.ws_url, extra_headers=headers):
                pass
        assert rejected.value.status_code == 401
    assert sim.connections_accepted == 0


async def test_only_the_versioned_path_is_served(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The socket lives on /ws/v1.2; a doubled version is a 404."""
    sim = await start(nursery)
    assert sim.ws_url.endswith("/ws/v1.2")
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(sim.ws_url + "/v1.2", extra_headers=AUTH):
            pass
    assert rejected.value.status_code == 404


async def test_generated_orders_are_real(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Pushed orders decode (v1.2 and v1.1), bind their extension, and carry keccak hashes."""
    sim = await start(nursery)
    async with client(sim) as ws:
        single = sim.create_order(version="1.2")
        multi = sim.create_order(version="1.1", parts=3)
        for expected in (single, multi):
            event = decode_frame(await ws.get_message())
            assert isinstance(event, OrderCreated)
            assert event.order_hash == expected.order_hash
            assert len(event.order_hash) == 66
            assert event.order is not None
            assert event.extension is not None
            ext = decode_extension(event.extension)
            assert ext.version == expected.version
            assert salt_matches_extension(event.order.salt, event.extension)
            assert ext.auction.end_time + 12 == expected.deadline
            assert (event.order.maker_traits >> 80) & ((1 << 40) - 1) == expected.deadline
    assert single.extension.hashlock == "0x" + keccak256(bytes.fromhex(single.secrets[0][2:])).hex()
    assert len(multi.secrets) == 4
    assert int(multi.extension.hashlock, 16) >> 240 == 3
    for s, h in zip(multi.secrets, multi.secret_hashes, strict=True):
        assert "0x" + keccak256(bytes.fromhex(s[2:])).hex() == h


async def test_fills_and_secrets_are_consistent(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A partial fill uses the right secret index; the shared secret hashes to its hashlock
    and its immutables carry the taker and the deployment time."""
    sim = await start(nursery, resolver_address="0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc")
    order = sim.create_order(parts=3, announce=False)
    async with client(sim) as ws:
        fill = sim.fill_partially(order.order_hash, 50_000_000, taker=sim.config.resolver_address)
        shared = sim.share_secret(order.order_hash)
        sim.fill(order.order_hash)
        first = decode_frame(await ws.get_message())
        second = decode_frame(await ws.get_message())
        third = decode_frame(await ws.get_message())
    assert first == OrderFilledPartially(order.order_hash, 50_000_000)
    assert isinstance(second, SecretShared)
    assert second.secret == shared
    assert third == OrderFilled(order.order_hash)
    assert fill.idx == 1  # a 50% fill of a 3-part order
    assert (
        "0x" + keccak256(bytes.fromhex(shared.secret[2:])).hex() == shared.src_immutables.hashlock
    )
    assert shared.src_immutables.taker == sim.config.resolver_address
    assert shared.src_immutables.decoded_timelocks.deployed_at == fill.src_deployed_at
    assert shared.src_immutables.amount == 50_000_000


async def test_rpc_answers_paginated_active_orders_and_getsecrets_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """getActiveOrders pages with meta; getSecrets without the right gives the error shape."""
    sim = await start(nursery)
    for _ in range(5):
        sim.create_order(announce=False)
    async with client(sim) as ws:
        await ws.send_message('{"method":"getActiveOrders","param":{"page":3,"limit":2}}')
        answer = decode_frame(await ws.get_message())
        assert isinstance(answer, RpcResponse)
        assert isinstance(answer.result, ActiveOrdersPage)
        assert len(answer.result.items) == 1
        assert answer.result.meta.total_pages == 3
        assert answer.result.meta.total_items == 5
        await ws.send_message('{"method":"getSecrets","param":{}}')
        assert await ws.get_message() == '{"method":"getSecrets","result":{"error":"not allowed"}}'
        await ws.send_message('{"method":"ping"}')
        assert await ws.get_message() == '{"method":"ping","result":"pong"}'


async def test_rest_endpoints_answer_and_check_the_key(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Order status, secrets and active orders over REST; a bad key is a 401."""
    sim = await start(nursery)
    order = sim.create_order()
    sim.cancel(order.order_hash)
    base = f"{sim.http_url}/orders/v1.2/order"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        status = (await http.get(f"{base}/status/{order.order_hash}")).json()
        assert status["status"] == "cancelled"
        assert status["cancelTx"] is not None
        secrets = (await http.get(f"{base}/secrets/{order.order_hash}")).json()
        assert secrets == {
            "orderType": "SingleFill",
            "secrets": [],
            "secretHashes": secrets["secretHashes"],
        }
        active = (await http.get(f"{base}/active/", params={"page": 1, "limit": 10})).json()
        assert active["items"] == []
        assert (await http.get(f"{base}/status/0x00")).status_code == 404
        denied = await http.get(
            f"{base}/status/{order.order_hash}", headers={"Authorization": "Bearer x"}
        )
        assert denied.status_code == 401


async def test_fault_switches(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Non-JSON and unknown frames go out; an abrupt close ends the socket; a refused server
    lets events go missed."""
    sim = await start(nursery)
    async with client(sim) as ws:
        sim.send_raw("not json")
        sim.send_unknown_event()
        with pytest.raises(FusionDecodeError) as bad:
            decode_frame(await ws.get_message())
        assert bad.value.kind == "not_json"
        with pytest.raises(FusionDecodeError) as unknown:
            decode_frame(await ws.get_message())
        assert unknown.value.kind == "unknown_event"
        sim.drop_clients()
        with pytest.raises(ConnectionClosed):
            await ws.get_message()
    sim.refuse_connections(503)
    with pytest.raises(ConnectionRejected) as refused:
        async with client(sim):
            pass
    assert refused.value.status_code == 503
    order = sim.create_order()
    assert sim.missed_events == 1
    sim.refuse_connections(None)
    async with client(sim) as ws:
        await ws.send_message('{"method":"getActiveOrders","param":{"page":1,"limit":10}}')
        answer = decode_frame(await ws.get_message())
        assert isinstance(answer, RpcResponse)
        assert isinstance(answer.result, ActiveOrdersPage)
        assert [o.order_hash for o in answer.result.items] == [order.order_hash]


async def test_stall_stops_answers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A stalled server answers neither RPC nor protocol pings; resume brings it back."""
    sim = await start(nursery)
    async with client(sim) as ws:
        sim.stall()
        await ws.send_message('{"method":"ping"}')
        with trio.move_on_after(5) as timed_out:
            await ws.ping()
        assert timed_out.cancelled_caught
        sim.resume()
        await ws.send_message('{"method":"ping"}')
        assert await ws.get_message() == '{"method":"ping","result":"pong"}'


async def test_generated_flow_runs_by_itself(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """With a flow interval the simulator creates orders and events on its own (seeded)."""
    sim = await start(
        nursery, flow_interval=1.0, seed=3, clock=lambda: 1_767_225_600 + trio.current_time()
    )
    await trio.sleep(120)
    names = {type(e).__name__ for e in sim.events}
    assert {"OrderCreated", "OrderFilled", "SecretShared"} <= names
    assert sim.internal_errors == []
    overrides = venue_overrides(sim)
    assert overrides["ws_url"] == sim.ws_url
    assert overrides["http_url"] == sim.http_url
