"""Tests for the Express Relay simulator, driven by real WebSocket and HTTP clients on loopback.

Rules: every server runs on 127.0.0.1 port 0; time-dependent tests use ``autojump_clock``; every
networked test is bounded by ``trio.fail_after`` on the trio clock.
"""

from __future__ import annotations

import base64
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
import trio
import trio.testing
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from searcherd.express_relay.messages import (
    BidStatus,
    BidStatusUpdate,
    EvmBidWire,
    EvmOpportunity,
    ExpressRelayDecodeError,
    LimoOpportunity,
    OnChainBidWire,
    OpportunityDelete,
    PostBidResult,
    Response,
    SvmChainUpdate,
    SwapBidWire,
    SwapOpportunity,
    decode_bid_status_http,
    decode_opportunities_http,
    decode_server_frame,
    encode_cancel_bid,
    encode_post_bid,
    encode_subscribe,
    encode_unsubscribe,
)
from searcherd.express_relay.simulator import (
    ExpressRelaySimulator,
    SimulatorConfig,
    Timings,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T = TypeVar("T")
PROGRAM = Pubkey(bytes([7]) * 32)


def make_tx(n: int, extra: str | None = None) -> str:
    """A real, signed v0 transaction (base64), unique per ``n``; ``extra`` is an added account."""
    kp = Keypair.from_seed(n.to_bytes(32, "big"))
    accounts = [AccountMeta(Pubkey.from_string(extra), False, False)] if extra else []
    ix = Instruction(PROGRAM, f"bid-{n}".encode(), accounts)
    msg = MessageV0.try_compile(kp.pubkey(), [ix], [], Hash(bytes(32)))
    return base64.b64encode(bytes(VersionedTransaction(msg, [kp]))).decode()


def tx_signature(tx_b64: str) -> str:
    """The fee payer signature of a base64 transaction."""
    return str(VersionedTransaction.from_bytes(base64.b64decode(tx_b64)).signatures[0])


async def start(nursery: trio.Nursery, **kw: Any) -> ExpressRelaySimulator:
    """A simulator with one API key and no automatic opportunities unless asked."""
    kw.setdefault("api_keys", ("k",))
    kw.setdefault("opportunity_interval", 0)
    kw.setdefault("check_svm_bids", False)  # these tests post placeholder transactions
    sim: ExpressRelaySimulator = await nursery.start(serve, SimulatorConfig(**kw))
    return sim


@asynccontextmanager
async def connect(
    sim: ExpressRelaySimulator,
    key: str | None = "k",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """A client connection (bearer auth unless ``key`` is None)."""
    extra = list(headers or [])
    if key is not None:
        extra.append((b"authorization", f"Bearer {key}".encode()))
    async with open_websocket_url(
        sim.ws_url,
        extra_headers=extra,
        message_queue_size=2048,
        connect_timeout=5,
        disconnect_timeout=1,
    ) as ws:
        yield ws


async def recv_type(ws: WebSocketConnection, cls: type[T]) -> T:
    """The next message of type ``cls``, skipping others (chain updates, ...)."""
    while True:
        msg = decode_server_frame(await ws.get_message())
        if isinstance(msg, cls):
            return msg


async def request(ws: WebSocketConnection, frame: bytes) -> Response:
    """Send a request and return the next response."""
    await ws.send_message(frame)
    return await recv_type(ws, Response)


async def post(ws: WebSocketConnection, rid: str, bid: Any) -> Response:
    """Post a bid and return its response."""
    return await request(ws, encode_post_bid(rid, bid))


async def wait_no_connections(sim: ExpressRelaySimulator) -> None:
    """Wait (on the trio clock) until the simulator has cleaned up every connection."""
    for _ in range(500):
        if not sim.connections:
            return
        await trio.sleep(0.01)
    assert not sim.connections


async def drain(ws: WebSocketConnection) -> None:
    """Read and discard messages until the connection closes (raises ConnectionClosed)."""
    while True:
        await ws.get_message()


def close_code(exc: ConnectionClosed) -> int | None:
    """The close code a client saw."""
    return exc.reason.code if exc.reason is not None else None


async def statuses_until_final(ws: WebSocketConnection, bid_id: str) -> list[BidStatus]:
    """Every pushed status of ``bid_id`` up to the final one."""
    seen: list[BidStatus] = []
    while not seen or not seen[-1].is_final:
        upd = await recv_type(ws, BidStatusUpdate)
        if upd.bid_id == bid_id:
            seen.append(upd.status)
    return seen


class TestProtocol:
    async def test_subscribe_and_unknown_chain(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Subscribe succeeds with ``null``; an unknown chain fails with the server's text."""
        sim = await start(nursery)
        with trio.fail_after(10):
            async with connect(sim) as ws:
                assert await request(ws, encode_subscribe("1", ["solana"])) == Response(
                    "1", True, None
                )
                err = await request(ws, encode_subscribe("2", ["solana", "op_sepolia"]))
                assert err == Response(
                    "2", False, 'Chain id(s) with id(s) ["op_sepolia"] not found'
                )
                assert await request(ws, encode_unsubscribe("3", ["nope"])) == Response(
                    "3", True, None
                )

    @pytest.mark.parametrize(
        ("frame", "prefix"),
        [
            ("garbage", "expected value at line 1 column 1"),
            (
                '{"id": 5, "method": "subscribe", "params": {"chain_ids": []}}',
                "invalid type: integer `5`",
            ),
            (
                '{"id": "1", "method": "post_opportunity_bid", "params": {}}',
                "unknown variant `post_opportunity_bid`",
            ),
            (
                '{"id": "1", "method": "post_bid", "params": {"bid": {"chain_id": "solana", "transaction": "AAAA"}}}',
                "data did not match any variant of untagged enum BidCreate",
            ),
        ],
    )
    async def test_parse_errors_answer_with_null_id(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, frame: str, prefix: str
    ) -> None:
        """Unparseable frames (including undecodable transactions) get an ``id: null`` error."""
        sim = await start(nursery)
        with trio.fail_after(10):
            async with connect(sim) as ws:
                resp = await request(ws, frame.encode())
                assert (resp.id, resp.ok) == (None, False)
                assert isinstance(resp.result, str)
                assert resp.result.startswith(prefix)
                # The connection stays usable after a parse error.
                assert (await request(ws, encode_subscribe("9", ["solana"]))).ok

    async def test_pushes_and_chain_updates_only_for_subscribed_chains(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Subscribers get opportunities and a chain update every ~5 s; others get nothing."""
        sim = await start(nursery, evm_chains=("op_sepolia",))
        with trio.fail_after(30):
            async with connect(sim) as ws, connect(sim, key=None) as other:
                await request(ws, encode_subscribe("1", ["solana"]))
                await request(other, encode_subscribe("1", ["op_sepolia"]))
                t0 = trio.current_time()
                upd = await recv_type(ws, SvmChainUpdate)
                assert upd == sim.latest_chain_update["solana"]
                assert 0 < trio.current_time() - t0 <= 5
                opp = sim.push_opportunity(program="limo")
                assert await recv_type(ws, LimoOpportunity) == opp
                evm = sim.push_opportunity(program="evm")
                assert await recv_type(other, EvmOpportunity) == evm

    async def test_limo_removal_and_silent_swap_expiry(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Limo opportunities end with ``remove_opportunities``; swaps vanish silently."""
        sim = await start(nursery, limo_lifetime=3.0, swap_lifetime=0.25)
        with trio.fail_after(30):
            async with connect(sim) as ws:
                await request(ws, encode_subscribe("1", ["solana"]))
                limo = sim.push_opportunity(program="limo")
                swap = sim.push_opportunity(program="swap")
                assert isinstance(limo, LimoOpportunity)
                assert len(limo.order) == 424
                await trio.sleep(1)
                assert set(sim.opportunities) == {limo.opportunity_id}
                delete = await recv_type(ws, OpportunityDelete)
                assert (delete.chain_type, delete.permission_account, delete.program) == (
                    "svm",
                    limo.order_address,
                    "limo",
                )
                assert swap.opportunity_id not in sim.opportunities
                assert not sim.opportunities


class TestAuth:
    async def test_bad_token_gets_401_on_upgrade_and_http(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An unknown bearer token is rejected with 401 and the server's JSON body everywhere."""
        sim = await start(nursery)
        with trio.fail_after(10):
            with pytest.raises(ConnectionRejected) as e:
                async with connect(sim, key="wrong"):
                    pass
            assert e.value.status_code == 401
            assert e.value.body == b'{"error":"Invalid authorization token"}'
            async with httpx.AsyncClient() as http:
                r = await http.get(
                    f"{sim.http_url}/v1/opportunities", headers={"Authorization": "Bearer x"}
                )
            assert (r.status_code, r.json()) == (401, {"error": "Invalid authorization token"})

    async def test_anonymous_can_bid_but_not_cancel(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Anonymous connections may subscribe and bid, but cancel gets ``Unauthorized``."""
        sim = await start(nursery)
        with trio.fail_after(10):
            async with connect(sim, key=None) as ws:
                opp = sim.push_opportunity()
                resp = await post(ws, "1", SwapBidWire("solana", make_tx(1), opp.opportunity_id))
                assert isinstance(resp.result, PostBidResult)
                cancel = await request(ws, encode_cancel_bid("2", "solana", resp.result.bid_id))
                assert cancel == Response("2", False, "Unauthorized")
                assert sim.bids[resp.result.bid_id].profile_id is None

    async def test_connection_limit_per_forwarded_ip(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """With X-Forwarded-For, the upgrade past the per-IP limit gets 429."""
        sim = await start(nursery, max_connections_per_ip=1)
        xff = [(b"x-forwarded-for", b"10.0.0.1, 10.0.0.2")]
        with trio.fail_after(10):
            async with connect(sim, headers=xff):
                with pytest.raises(ConnectionRejected) as e:
                    async with connect(sim, headers=xff):
                        pass
                assert e.value.status_code == 429
                assert e.value.body == b'{"error":"Too many open websocket connections"}'

    async def test_revoked_key_drops_at_next_ping_tick(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A connection whose API key is revoked is dropped at the next ping tick."""
        sim = await start(nursery)
        with trio.fail_after(100):
            async with connect(sim) as ws:
                sim.revoke_api_key("k")
                with pytest.raises(ConnectionClosed):
                    await drain(ws)
        await wait_no_connections(sim)


class TestBids:
    async def test_cancellable_swap_bid_wins(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A won cancellable swap bid goes awaiting_signature -> submitted -> won, as recorded."""
        sim = await start(nursery, outcomes={"won": 1.0})
        with trio.fail_after(30):
            async with connect(sim) as ws:
                opp = sim.push_opportunity(cancellable=True)
                tx = make_tx(1)
                resp = await post(ws, "b1", SwapBidWire("solana", tx, opp.opportunity_id))
                assert isinstance(resp.result, PostBidResult)
                bid_id = resp.result.bid_id
                seen = await statuses_until_final(ws, bid_id)
                sig = tx_signature(tx)
                assert seen == [
                    BidStatus("awaiting_signature", sig),
                    BidStatus("submitted", sig),
                    BidStatus("won", sig),
                ]
                record = sim.bids[bid_id]
                assert record.history == [BidStatus("pending"), *seen]
                assert (record.kind, record.opportunity_id, record.final_status) == (
                    "swap",
                    opp.opportunity_id,
                    seen[-1],
                )

    @pytest.mark.parametrize(
        ("outcome", "cancellable", "program", "types"),
        [
            ("won", False, "swap", ["sent_to_user_for_submission", "won"]),
            ("expired", True, "swap", ["awaiting_signature", "expired"]),
            ("submission_failed", True, "swap", ["awaiting_signature", "submission_failed"]),
            ("failed", True, "limo", ["submitted", "failed"]),
            ("lost", True, "limo", ["lost"]),
            ("cancelled", False, "limo", ["lost"]),
        ],
    )
    async def test_outcome_progressions(
        self,
        nursery: trio.Nursery,
        autojump_clock: trio.testing.MockClock,
        outcome: str,
        cancellable: bool,
        program: str,
        types: list[str],
    ) -> None:
        """Each configured outcome follows the server's status flow for its kind of bid."""
        sim = await start(nursery, outcomes={outcome: 1.0})
        with trio.fail_after(300):
            async with connect(sim) as ws:
                opp = sim.push_opportunity(program=program, cancellable=cancellable)
                if isinstance(opp, LimoOpportunity):
                    bid: Any = OnChainBidWire(
                        "solana", make_tx(2, extra=opp.order_address), opp.slot
                    )
                else:
                    bid = SwapBidWire("solana", make_tx(2), opp.opportunity_id)
                resp = await post(ws, "1", bid)
                assert isinstance(resp.result, PostBidResult)
                seen = await statuses_until_final(ws, resp.result.bid_id)
                assert [s.type for s in seen] == types
                assert sim.bids[resp.result.bid_id].opportunity_id == opp.opportunity_id
                if outcome == "failed":
                    assert seen[-1].reason is not None

    async def test_owner_cancels_awaiting_signature_bid(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """The owner's cancel moves an awaiting_signature bid to cancelled; others get Forbidden."""
        sim = await start(nursery, api_keys=("k", "k2"), outcomes={"cancelled": 1.0})
        with trio.fail_after(30):
            async with connect(sim) as ws, connect(sim, key="k2") as intruder:
                opp = sim.push_opportunity(cancellable=True)
                resp = await post(ws, "1", SwapBidWire("solana", make_tx(3), opp.opportunity_id))
                assert isinstance(resp.result, PostBidResult)
                bid_id = resp.result.bid_id
                early = await request(ws, encode_cancel_bid("2", "solana", bid_id))
                assert (
                    early.error
                    == "Bad parameters: Bid is only cancellable in awaiting_signature state"
                )
                upd = await recv_type(ws, BidStatusUpdate)
                assert upd.status.type == "awaiting_signature"
                forbidden = await request(intruder, encode_cancel_bid("3", "solana", bid_id))
                assert forbidden.error == "Forbidden"
                await ws.send_message(encode_cancel_bid("4", "solana", bid_id))
                # The status push and the response may come in either order.
                got = {decode_server_frame(await ws.get_message()) for _ in range(2)}
                sig = tx_signature(make_tx(3))
                assert got == {
                    Response("4", True, None),
                    BidStatusUpdate(bid_id, BidStatus("cancelled", sig)),
                }
                assert sim.bids[bid_id].final_status == BidStatus(
                    "cancelled", tx_signature(make_tx(3))
                )

    async def test_bid_rejections(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Unknown or expired swap ids, duplicates and unknown chains get the server's texts."""
        sim = await start(nursery)
        with trio.fail_after(30):
            async with connect(sim) as ws:
                opp = sim.push_opportunity()
                ok = await post(ws, "1", SwapBidWire("solana", make_tx(4), opp.opportunity_id))
                assert ok.ok
                dup = await post(ws, "2", SwapBidWire("solana", make_tx(4), opp.opportunity_id))
                assert dup.error == "Duplicate bid"
                await trio.sleep(1)  # the swap auction is over
                late = await post(ws, "3", SwapBidWire("solana", make_tx(5), opp.opportunity_id))
                assert late.error == "No swap opportunity with the given id found"
                chain = await post(ws, "4", OnChainBidWire("mars", make_tx(6)))
                assert chain.error == "The chain id is not found"
        assert len(sim.bids) == 1

    async def test_svm_bid_check_hook_text_is_the_error(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """An exception from ``svm_bid_check`` becomes the error response of that bid."""
        calls: list[dict[str, Any]] = []

        def check(**kw: Any) -> None:
            calls.append(kw)
            raise ValueError("Transaction size is too large: 2000 > 1232")

        sim = await start(nursery, svm_bid_check=check)
        with trio.fail_after(10):
            async with connect(sim) as ws:
                resp = await post(ws, "1", OnChainBidWire("solana", make_tx(7), 5))
        assert resp == Response("1", False, "Transaction size is too large: 2000 > 1232")
        assert isinstance(calls[0]["transaction"], VersionedTransaction)
        assert not sim.bids

    async def test_status_pushed_only_to_posting_connection(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Status pushes go to the connection that posted the bid, not to others of the key."""
        sim = await start(nursery, outcomes={"lost": 1.0})
        with trio.fail_after(30):
            async with connect(sim) as ws, connect(sim) as other:
                opp = sim.push_opportunity(program="limo")
                assert isinstance(opp, LimoOpportunity)
                resp = await post(ws, "1", OnChainBidWire("solana", make_tx(8, opp.order_address)))
                assert isinstance(resp.result, PostBidResult)
                assert [s.type for s in await statuses_until_final(ws, resp.result.bid_id)] == [
                    "lost"
                ]
                await other.send_message(encode_subscribe("x", ["solana"]))
                assert (await recv_type(other, Response)).id == "x"
                with trio.move_on_after(2):
                    msg = await recv_type(other, BidStatusUpdate)
                    pytest.fail(f"unexpected push {msg}")

    async def test_responses_can_come_out_of_order(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Concurrent bids are answered in processing order, not request order."""
        sim = await start(nursery, timings=Timings(bid_processing=(0.0, 0.5)), seed=3)
        with trio.fail_after(30):
            async with connect(sim) as ws:
                opp = sim.push_opportunity(program="limo")
                assert isinstance(opp, LimoOpportunity)
                for i in range(8):
                    await ws.send_message(
                        encode_post_bid(str(i), OnChainBidWire("solana", make_tx(10 + i)))
                    )
                ids = [(await recv_type(ws, Response)).id for _ in range(8)]
        assert sorted(ids, key=lambda x: int(x or 0)) == [str(i) for i in range(8)]
        assert ids != sorted(ids, key=lambda x: int(x or 0))

    async def test_evm_bid_statuses_carry_index(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """EVM mode: raw bids are accepted and statuses carry ``index``."""
        sim = await start(nursery, svm_chains=(), evm_chains=("op_sepolia",), outcomes={"won": 1.0})
        with trio.fail_after(30):
            async with connect(sim) as ws:
                opp = sim.push_opportunity(program="evm")
                assert isinstance(opp, EvmOpportunity)
                bid = EvmBidWire(
                    10**16, "op_sepolia", opp.permission_key, "0xfa11", b"\x26\x08\xba\x81"
                )
                resp = await post(ws, "1", bid)
                assert isinstance(resp.result, PostBidResult)
                seen = await statuses_until_final(ws, resp.result.bid_id)
                assert [s.type for s in seen] == ["submitted", "won"]
                assert seen[0].index is not None
                assert seen[0].result is not None
                assert seen[0].result.startswith("0x")
                record = sim.bids[resp.result.bid_id]
                assert (record.amount, record.opportunity_id) == (10**16, opp.opportunity_id)
                await request(ws, encode_subscribe("2", ["op_sepolia"]))
                sim.remove_opportunity(opp.opportunity_id)
                delete = await recv_type(ws, OpportunityDelete)
                assert (delete.chain_type, delete.permission_key) == ("evm", opp.permission_key)


class TestHttp:
    async def test_bid_status_and_opportunity_endpoints(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """HTTP serves the live opportunity list, posts bids and reports bid status."""
        sim = await start(nursery, outcomes={"won": 1.0})
        limo = sim.push_opportunity(program="limo")
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=sim.http_url) as http:
                r = await http.get(
                    "/v1/opportunities", params={"mode": "live", "chain_id": "solana"}
                )
                assert decode_opportunities_http(r.content).opportunities == (limo,)
                body = {"chain_id": "solana", "transaction": make_tx(20)}
                r = await http.post("/v1/bids", json=body, headers={"Authorization": "Bearer k"})
                bid_id = r.json()["id"]
                assert r.json()["status"] == "OK"
                r = await http.get(f"/v1/solana/bids/{bid_id}")
                assert decode_bid_status_http(r.content) == BidStatus("pending")
                await trio.sleep(5)
                r = await http.get(f"/v1/solana/bids/{bid_id}")
                assert decode_bid_status_http(r.content) == sim.bids[bid_id].final_status
                r = await http.get("/v1/solana/bids/0f8e2e61-3a7c-4d58-9b0e-6f1c2d9a4b77")
                assert r.status_code == 404
                r = await http.post(f"/v1/solana/bids/{bid_id}/cancel")
                assert (r.status_code, r.text) == (401, "Forbidden")


class TestFaults:
    async def test_drop_and_close_1001(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A TCP drop surfaces as 1006 and a going-away close as 1001."""
        sim = await start(nursery)
        with trio.fail_after(30):
            async with connect(sim) as ws:
                await trio.testing.wait_all_tasks_blocked()
                sim.drop_all_connections()
                with pytest.raises(ConnectionClosed) as e:
                    await ws.get_message()
                assert close_code(e.value) == 1006
            async with connect(sim) as ws:
                await trio.testing.wait_all_tasks_blocked()
                sim.close_all_connections(1001)
                with pytest.raises(ConnectionClosed) as e:
                    await ws.get_message()
                assert close_code(e.value) == 1001
        assert not sim.internal_errors

    async def test_stall_stops_pongs(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A stalled server answers no pings and sends nothing until resumed."""
        sim = await start(nursery)
        with trio.fail_after(60):
            async with connect(sim) as ws:
                await ws.ping(b"a")
                sim.stall_connections()
                with trio.move_on_after(10) as cs:
                    await ws.ping(b"b")
                assert cs.cancelled_caught
                sim.resume_connections()
                await ws.ping(b"c")

    async def test_bad_frames(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Malformed, unknown-shape and oversized frames arrive as such."""
        sim = await start(nursery)
        with trio.fail_after(10):
            async with connect(sim) as ws:
                await trio.testing.wait_all_tasks_blocked()
                sim.send_malformed()
                sim.send_unknown_shape()
                kinds = []
                for _ in range(2):
                    with pytest.raises(ExpressRelayDecodeError) as e:
                        decode_server_frame(await ws.get_message())
                    kinds.append(e.value.kind)
                assert kinds == ["not_json", "unknown_type"]
                sim.send_oversized()
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.get_message()
                assert close_code(closed.value) == 1009

    async def test_unknown_status_and_change_while_disconnected(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Unknown statuses are pushed and recorded; forced statuses show up over HTTP later."""
        sim = await start(nursery, outcomes={"expired": 1.0})
        with trio.fail_after(30):
            async with connect(sim) as ws:
                opp = sim.push_opportunity(program="limo")
                resp = await post(ws, "1", OnChainBidWire("solana", make_tx(30)))
                assert isinstance(resp.result, PostBidResult)
                bid_id = resp.result.bid_id
                sim.send_unknown_status(bid_id)
                upd = await recv_type(ws, BidStatusUpdate)
                assert (upd.status.type, upd.status.is_known) == ("simulation_failed", False)
            sim.set_bid_status(bid_id, BidStatus("won", "sig"))
            async with httpx.AsyncClient(base_url=sim.http_url) as http:
                r = await http.get(f"/v1/solana/bids/{bid_id}")
        assert decode_bid_status_http(r.content) == BidStatus("won", "sig")
        assert [s.type for s in sim.bids[bid_id].history] == ["pending", "simulation_failed", "won"]
        assert opp.opportunity_id in sim.opportunities

    async def test_response_faults(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Responses can be delayed, sent late once, duplicated and reordered."""
        sim = await start(nursery)
        with trio.fail_after(60):
            async with connect(sim) as ws:
                sim.respond_late(7)
                t0 = trio.current_time()
                assert (await request(ws, encode_subscribe("1", ["solana"]))).id == "1"
                assert trio.current_time() - t0 >= 7
                t1 = trio.current_time()
                await request(ws, encode_subscribe("2", ["solana"]))
                assert trio.current_time() - t1 < 1
                sim.duplicate_responses()
                await ws.send_message(encode_subscribe("3", ["solana"]))
                assert [(await recv_type(ws, Response)).id for _ in range(2)] == ["3", "3"]
                sim.duplicate_responses(False)
                sim.reorder_responses(2)
                await ws.send_message(encode_subscribe("4", ["solana"]))
                await ws.send_message(encode_subscribe("5", ["solana"]))
                assert [(await recv_type(ws, Response)).id for _ in range(2)] == ["5", "4"]

    @pytest.mark.parametrize("status", [401, 429])
    async def test_rejected_upgrades(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, status: int
    ) -> None:
        """Forced upgrade rejections use the given status once, then connections work again."""
        sim = await start(nursery)
        sim.reject_upgrades(status)
        with trio.fail_after(10):
            with pytest.raises(ConnectionRejected) as e:
                async with connect(sim):
                    pass
            assert e.value.status_code == status
            async with connect(sim) as ws:
                assert (await request(ws, encode_subscribe("1", ["solana"]))).ok

    async def test_lagging_connection_is_dropped(
        self, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
    ) -> None:
        """A connection that falls more than the event buffer behind is dropped."""
        sim = await start(nursery, event_buffer=50)
        with trio.fail_after(10):
            async with connect(sim) as ws:
                await trio.testing.wait_all_tasks_blocked()
                sim.flood_events()
                with pytest.raises(ConnectionClosed):
                    await drain(ws)
        await wait_no_connections(sim)


async def read_until_closed(stream: trio.SocketStream) -> str:
    """Read until the peer goes away: ``"reset"`` for an RST, ``"eof"`` for a clean FIN."""
    try:
        while await stream.receive_some():
            pass
    except trio.BrokenResourceError:
        return "reset"
    return "eof"


async def test_ping_after_upgrade_and_drop_without_pong(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The server pings right after the upgrade and drops a client that never pongs."""
    sim = await start(nursery)
    port = int(sim.ws_url.split(":")[2].split("/")[0])
    with trio.fail_after(100):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some()
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        while len(rest) < 2:
            rest += await stream.receive_some()
        assert rest[0] == 0x89  # FIN + ping opcode, right after the upgrade
        t0 = trio.current_time()
        assert await read_until_closed(stream) == "reset"
        assert 29 <= trio.current_time() - t0 <= 31
        await stream.aclose()
    await wait_no_connections(sim)


async def test_same_seed_same_opportunities(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Two simulators with one seed publish identical opportunity streams."""
    now = 1_745_500_000.0
    sims = [
        await start(nursery, opportunity_interval=0.5, seed=42, wall_clock=lambda: now)
        for _ in range(2)
    ]
    await trio.sleep(10)
    a, b = (s.published for s in sims)
    assert a == b
    assert len(a) > 5
    assert {type(o) for o in sims[0].published} == {SwapOpportunity, LimoOpportunity}
