"""Tests for the Express Relay simulator's Solana side: real Limo orders, consistent swap quotes,
the simulated deployment (program id, relayer) and the server's checks on every SVM bid.

Bids are built with the daemon's own svm builders from what a client sees (pushed opportunities,
the latest ``svm_chain_update``) and posted over a real WebSocket to a simulator on 127.0.0.1
port 0. Time-dependent tests use ``autojump_clock``; networked ones are bounded by
``trio.fail_after``.
"""

from __future__ import annotations

import base64
import random
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
import trio
import trio.testing
from solders.hash import Hash
from solders.pubkey import Pubkey
from trio_websocket import WebSocketConnection, open_websocket_url

from searcherd.express_relay import _sim_state as st
from searcherd.express_relay._sim_codec import opportunity_to_json
from searcherd.express_relay._sim_svm import FEE_WINDOW, SimSvm
from searcherd.express_relay.messages import (
    LimoOpportunity,
    OnChainBidWire,
    OpportunityDelete,
    PostBidResult,
    Response,
    SvmChainUpdate,
    SwapBidWire,
    SwapOpportunity,
    TokensUserSpecified,
    decode_server_frame,
    encode_post_bid,
    encode_subscribe,
)
from searcherd.express_relay.simulator import ExpressRelaySimulator, SimulatorConfig, serve
from searcherd.svm import (
    ExpressRelayConstants,
    LimoBidParams,
    SwapBidParams,
    SwapQuote,
    build_limo_bid_transaction,
    build_swap_bid_transaction,
    decode_order,
    encode_transaction,
    limo_router,
    take_order_instructions,
    throwaway_keypair,
)
from searcherd.svm.limo import OrderStatus
from searcherd.svm.programs import (
    LIMO_PROGRAM_ID,
    MAINNET_PROGRAM_ID,
    STAGING_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
)
from searcherd.svm.rules import format_server_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from solders.transaction import VersionedTransaction

    from searcherd.svm.keys import SearcherKey

CHAIN = "solana"
T0 = 1_745_500_000.0  # a fixed simulator wall clock where a test needs exact deadlines
# One chain update every 20 s: when the client sees its first pushed update, the start-up one
# has left the 15 s fee window, so the minimum fee is exactly the fee the client saw.
QUIET = {"chain_update_interval": 20.0, "swap_lifetime": 60.0}


async def start(nursery: trio.Nursery, **kw: Any) -> ExpressRelaySimulator:
    """A simulator with one API key, no generated opportunities and long-lived swap quotes."""
    options: dict[str, Any] = {"api_keys": ("k",), "opportunity_interval": 0, **QUIET, **kw}
    sim: ExpressRelaySimulator = await nursery.start(serve, SimulatorConfig(**options))
    return sim


@asynccontextmanager
async def subscribed(sim: ExpressRelaySimulator) -> AsyncIterator[WebSocketConnection]:
    """An authenticated client connection subscribed to ``solana``."""
    async with open_websocket_url(
        sim.ws_url,
        extra_headers=[(b"authorization", b"Bearer k")],
        message_queue_size=2048,
        connect_timeout=5,
        disconnect_timeout=1,
    ) as ws:
        await ws.send_message(encode_subscribe("sub", [CHAIN]))
        assert (await next_frame(ws, "response"))["status"] == "success"
        yield ws


async def next_frame(ws: WebSocketConnection, wanted: str) -> dict[str, Any]:
    """The next raw frame of JSON ``type`` ``wanted`` (``"response"`` = a frame with an ``id``)."""
    while True:
        frame = orjson.loads(await ws.get_message())
        kind = "response" if "id" in frame else frame.get("type")
        if kind == wanted:
            return frame  # type: ignore[no-any-return]


async def chain_update(ws: WebSocketConnection) -> SvmChainUpdate:
    """The next ``svm_chain_update`` the client receives."""
    msg = decode_server_frame(orjson.dumps(await next_frame(ws, "svm_chain_update")))
    assert isinstance(msg, SvmChainUpdate)
    return msg


async def post(ws: WebSocketConnection, request_id: str, bid: Any) -> Response:
    """Post one bid and return the next response."""
    await ws.send_message(encode_post_bid(request_id, bid))
    msg = decode_server_frame(orjson.dumps(await next_frame(ws, "response")))
    assert isinstance(msg, Response)
    return msg


def bid_id(resp: Response) -> str:
    """The server bid id of a successful ``post_bid`` response."""
    assert isinstance(resp.result, PostBidResult), resp.result
    return resp.result.bid_id


def constants(sim: ExpressRelaySimulator, **override: Pubkey) -> ExpressRelayConstants:
    """The simulator's deployment, as a daemon would be configured with it."""
    values = {
        "program_id": sim.program_id[CHAIN],
        "relayer_signer": sim.relayer_signer,
        "fee_receiver_relayer": sim.fee_receiver_relayer,
        **override,
    }
    return ExpressRelayConstants(**values)


def limo_bid(
    opp: LimoOpportunity,
    update: SvmChainUpdate,
    consts: ExpressRelayConstants,
    key: SearcherKey,
    *,
    now: float,
    deadline: int | None = None,
    priority_fee: int | None = None,
) -> VersionedTransaction:
    """A limo bid filling the whole order, built with the svm builders."""
    order = decode_order(opp.order)
    address = Pubkey.from_string(opp.order_address)
    output = order.output_for_input(order.remaining_input_amount)
    instructions = take_order_instructions(
        taker=key.pubkey(),
        order=order,
        order_address=address,
        input_amount=order.remaining_input_amount,
        output_amount=output,
        express_relay_program_id=consts.program_id,
    )
    params = LimoBidParams.for_order(
        order_address=address,
        order=order,
        amount=1_000_000,
        deadline=int(now) + 20 if deadline is None else deadline,
        instructions=instructions,
        slot=opp.slot,
    )
    return build_limo_bid_transaction(
        params,
        searcher=key,
        constants=consts,
        blockhash=Hash.from_string(update.blockhash),
        priority_fee=update.latest_prioritization_fee if priority_fee is None else priority_fee,
        now=now,
    )


async def receive_limo(sim: ExpressRelaySimulator, ws: WebSocketConnection) -> LimoOpportunity:
    """Push a limo opportunity and return it as the client decodes it."""
    sim.push_opportunity(program="limo")
    msg = decode_server_frame(orjson.dumps(await next_frame(ws, "new_opportunity")))
    assert isinstance(msg, LimoOpportunity)
    return msg


# --------------------------------------------------------------------------- generated values


def test_limo_orders_are_real_consistent_order_accounts() -> None:
    """Generated limo opportunities carry ``Order`` bytes that ``decode_order`` reads back into
    an active order of the chain's global config, with real mints and consistent amounts."""
    programs = {TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID}
    for i in range(200):
        opp = st.make_limo(random.Random(i), CHAIN, T0, 400_000_000)
        order = decode_order(opp.order)
        assert order.global_config == st.limo_global_config(CHAIN)
        assert order.is_active
        assert order.status == OrderStatus.ACTIVE
        assert order.input_mint != order.output_mint
        assert {order.input_mint_program_id, order.output_mint_program_id} <= programs
        assert 0 < order.remaining_input_amount <= order.initial_input_amount
        taken = order.initial_input_amount - order.remaining_input_amount
        assert (order.number_of_fills == 0) == (taken == 0)
        assert order.filled_output_amount == order.expected_output_amount * taken // (
            order.initial_input_amount
        )
        assert order.last_updated_timestamp <= T0


def test_swap_quotes_are_consistent_and_buildable() -> None:
    """Generated swap opportunities have matching ppm/bps fees, a covering user balance, fees
    taken from ``user_amount`` only when paid in the user token, a near deadline, and every one
    of them can be built into a ``swap_v2`` bid that passes the rules."""
    sim_svm = SimSvm(0, [CHAIN])
    key = throwaway_keypair()
    memos, programs = set(), set()
    for i in range(150):
        rng = random.Random(i)
        opp = st.make_swap(rng, CHAIN, T0, cancellable=False)
        assert opp.referral_fee_ppm == opp.referral_fee_bps * 100
        assert opp.platform_fee_ppm == opp.platform_fee_bps * 100
        assert T0 < opp.minimum_deadline < T0 + 45
        tokens = opp.tokens
        assert tokens.searcher_token != tokens.user_token
        programs |= {tokens.token_program_searcher, tokens.token_program_user}
        memos.add(opp.memo)
        if isinstance(tokens, TokensUserSpecified):
            paid = tokens.user_amount_including_fees
            assert opp.user_mint_user_balance >= paid
            fees = (
                paid * opp.referral_fee_ppm // 1_000_000 + paid * opp.platform_fee_ppm // 1_000_000
            )
            expected = paid - fees if opp.fee_token == "user_token" else paid
            assert tokens.user_amount == expected
        quote = SwapQuote.from_opportunity(opportunity_to_json(opp))
        params = SwapBidParams(quote, rng.randrange(1, 10**12), opp.minimum_deadline)
        build_swap_bid_transaction(
            params,
            searcher=key,
            constants=sim_svm.constants(CHAIN),
            blockhash=Hash.default(),
            priority_fee=5_000,
            now=T0,
        )
    assert memos == {None, "er-sim"}
    assert programs == {str(TOKEN_PROGRAM_ID), str(TOKEN_2022_PROGRAM_ID)}


def test_deployment_is_seeded_and_keeps_its_key() -> None:
    """Program ids follow the SDK per chain; the relayer is fixed by the seed, signs as itself,
    and neither repr shows anything but public keys."""
    a, b, other = SimSvm(7, [CHAIN, "development-solana"]), SimSvm(7, [CHAIN]), SimSvm(8, [CHAIN])
    assert a.program_id == {CHAIN: MAINNET_PROGRAM_ID, "development-solana": STAGING_PROGRAM_ID}
    assert (a.relayer_signer, a.fee_receiver_relayer) == (b.relayer_signer, b.fee_receiver_relayer)
    assert a.relayer_signer != other.relayer_signer
    assert a.relayer_sign(b"message").verify(a.relayer_signer, b"message")
    assert (
        repr(a)
        == f"<SimSvm relayer_signer={a.relayer_signer} chains=['development-solana', 'solana']>"
    )
    assert a.limo_router(CHAIN) == limo_router(st.limo_global_config(CHAIN))


async def test_min_priority_fee_is_the_lowest_of_the_last_15_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The minimum fee covers every sample of the window and forgets older ones, but the latest
    sample always counts."""
    svm = SimSvm(0, [CHAIN])
    assert svm.min_priority_fee(CHAIN) == 0
    svm.note_fee(CHAIN, 100)
    await trio.sleep(5)
    svm.note_fee(CHAIN, 50)
    await trio.sleep(5)
    svm.note_fee(CHAIN, 200)
    assert svm.min_priority_fee(CHAIN) == 50
    await trio.sleep(FEE_WINDOW - 4)  # the 50 sample is now 16 s old
    assert svm.min_priority_fee(CHAIN) == 200
    await trio.sleep(1000)
    assert svm.min_priority_fee(CHAIN) == 200


# --------------------------------------------------------------------------- bids over the wire


async def test_limo_bid_built_with_the_svm_builders_is_accepted(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A limo bid from the decoded order, the simulator's constants and the latest chain update
    is accepted and attached to the opportunity whose order is its permission account; the
    order's removal names the Limo router of its global config."""
    sim = await start(nursery)
    key = throwaway_keypair()
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            opp = await receive_limo(sim, ws)
            tx = limo_bid(opp, update, constants(sim), key, now=time.time())
            resp = await post(ws, "1", OnChainBidWire(CHAIN, encode_transaction(tx), opp.slot))
            assert resp.ok, resp.result
            record = sim.bids[bid_id(resp)]
            assert (record.kind, record.opportunity_id) == ("on_chain", opp.opportunity_id)
            sim.remove_opportunity(opp.opportunity_id)
            delete = decode_server_frame(orjson.dumps(await next_frame(ws, "remove_opportunities")))
    assert isinstance(delete, OpportunityDelete)
    assert delete.permission_account == opp.order_address
    assert delete.router == str(limo_router(decode_order(opp.order).global_config))


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_swap_bid_built_with_the_svm_builders_is_accepted(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    """A swap bid built from the pushed quote's JSON (``SwapQuote.from_opportunity``) with the
    simulator's constants and the latest chain update is accepted as that quote's bid."""
    sim = await start(nursery, seed=seed)
    key = throwaway_keypair()
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            sim.push_opportunity(program="swap", cancellable=seed % 2 == 0)
            raw = (await next_frame(ws, "new_opportunity"))["opportunity"]
            quote = SwapQuote.from_opportunity(raw)
            tx = build_swap_bid_transaction(
                SwapBidParams(quote, 123_456_789, quote.minimum_deadline),
                searcher=key,
                constants=constants(sim),
                blockhash=Hash.from_string(update.blockhash),
                priority_fee=update.latest_prioritization_fee,
                now=time.time(),
            )
            bid = SwapBidWire(CHAIN, encode_transaction(tx), quote.opportunity_id)
            resp = await post(ws, "1", bid)
    assert resp.ok, resp.result
    record = sim.bids[bid_id(resp)]
    assert (record.kind, record.opportunity_id) == ("swap", quote.opportunity_id)
    assert isinstance(sim.opportunities[quote.opportunity_id], SwapOpportunity)


async def test_too_low_compute_price_is_rejected(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A compute unit price one below the chain's fee gets the server's text."""
    sim = await start(nursery)
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            opp = await receive_limo(sim, ws)
            fee = update.latest_prioritization_fee
            tx = limo_bid(
                opp,
                update,
                constants(sim),
                throwaway_keypair(),
                now=time.time(),
                priority_fee=fee - 1,
            )
            resp = await post(ws, "1", OnChainBidWire(CHAIN, encode_transaction(tx), None))
    assert resp == Response(
        "1", False, f"Compute budget is too low. Minimum compute budget is {fee}"
    )
    assert not sim.bids


async def test_late_deadline_is_rejected(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A deadline past the simulator's clock + 45 s gets the server's text with its times."""
    sim = await start(nursery, wall_clock=lambda: T0)
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            opp = await receive_limo(sim, ws)
            # Built by a client whose clock runs a minute ahead of the server's.
            deadline = int(T0) + 90
            tx = limo_bid(
                opp, update, constants(sim), throwaway_keypair(), now=T0 + 60, deadline=deadline
            )
            resp = await post(ws, "1", OnChainBidWire(CHAIN, encode_transaction(tx), None))
    text = (
        f"Bid deadline {format_server_time(deadline)} is too late; "
        f"it must be less than {format_server_time(T0 + 45)}"
    )
    assert resp == Response("1", False, text)


async def test_bid_without_the_relayer_signer_is_rejected(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A bid built for another relayer does not list the simulator's relayer as a signer."""
    sim = await start(nursery)
    wrong = constants(sim, relayer_signer=Pubkey.new_unique())
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            opp = await receive_limo(sim, ws)
            tx = limo_bid(opp, update, wrong, throwaway_keypair(), now=time.time())
            resp = await post(ws, "1", OnChainBidWire(CHAIN, encode_transaction(tx), None))
    text = f"Relayer account {sim.relayer_signer} is not a signer in the transaction"
    assert resp == Response("1", False, text)


async def test_undecodable_transaction_is_a_parse_error(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Transaction bytes that are not a Solana transaction match no bid schema: ``id: null``."""
    sim = await start(nursery)
    junk = base64.b64encode(b"\x01not a transaction").decode()
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            resp = await post(ws, "1", OnChainBidWire(CHAIN, junk, None))
    assert (resp.id, resp.ok) == (None, False)
    assert isinstance(resp.result, str)
    assert resp.result.startswith(
        "data did not match any variant of untagged enum BidCreate at line 1 column "
    )


@pytest.mark.parametrize(
    ("options", "accepted"),
    [({}, False), ({"check_svm_bids": False}, True), ({"svm_bid_check": lambda **_: None}, True)],
)
async def test_hook_or_flag_turns_the_check_off(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    options: dict[str, Any],
    accepted: bool,
) -> None:
    """A swap "bid" that is not an Express Relay transaction at all is rejected by default, and
    accepted when ``check_svm_bids`` is off or an ``svm_bid_check`` hook replaces the check."""
    sim = await start(nursery, **options)
    opp = sim.push_opportunity(program="swap")
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            tx = limo_bid(
                await receive_limo(sim, ws),
                update,
                constants(sim),
                throwaway_keypair(),
                now=time.time(),
            )
            resp = await post(
                ws, "1", SwapBidWire(CHAIN, encode_transaction(tx), opp.opportunity_id)
            )
    if accepted:
        assert resp.ok
    else:
        # The server's (confusing) text for an on-chain transaction sent as a swap bid.
        assert (resp.id, resp.ok) == ("1", False)
        assert isinstance(resp.result, str)
        assert resp.result.startswith("Invalid instruction at index ")
        assert resp.result.endswith(f": Unsupported program {LIMO_PROGRAM_ID}")
        assert not sim.bids


async def test_http_bid_gets_the_same_check(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """``POST /v1/bids`` runs the same check: a too-low compute price is a 400 with the text,
    the same bid at the chain's fee is accepted."""
    sim = await start(nursery)
    key = throwaway_keypair()
    with trio.fail_after(60):
        async with subscribed(sim) as ws:
            update = await chain_update(ws)
            opp = await receive_limo(sim, ws)
        fee = update.latest_prioritization_fee
        now = time.time()
        low = limo_bid(opp, update, constants(sim), key, now=now, priority_fee=fee - 1)
        good = limo_bid(opp, update, constants(sim), key, now=now)
        async with httpx.AsyncClient(base_url=sim.http_url) as client:
            bodies = [
                {"chain_id": CHAIN, "transaction": encode_transaction(t)} for t in (low, good)
            ]
            rejected = await client.post("/v1/bids", json=bodies[0])
            accepted = await client.post("/v1/bids", json=bodies[1])
    assert rejected.status_code == 400
    assert rejected.json() == {
        "error": f"Compute budget is too low. Minimum compute budget is {fee}"
    }
    assert accepted.status_code == 200
    assert sim.bids[accepted.json()["id"]].opportunity_id == opp.opportunity_id
