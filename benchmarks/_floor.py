"""The floor of the tick-to-bid benchmark: the least a client can do to answer an opportunity.

``python -m benchmarks._floor --ws-url URL --program-id P --relayer-signer R
--fee-receiver-relayer F`` connects with bare trio-websocket, subscribes to
the chain and then, in one loop: receive a frame -> decode it -> for a swap opportunity build
and sign the bid (the very builders the daemon's submitter uses, with the same amount rule as
the benchmark strategy) -> send ``post_bid``. Nothing else: no evaluator, no risk gate, no
state table, no request tracking, no logging. Chain updates are kept for their blockhash;
responses and status pushes are decoded and dropped.

Building and signing stay in the floor on purpose: every bid needs them, so a floor without
them would measure the cost of a valid bid as daemon overhead.

So does the server's cap of 150 ``post_bid`` requests in flight per connection: the real server
stops reading the socket at the cap, and with it stops forwarding opportunities and answering
pings, so any client fit for it keeps below the cap. The floor counts a bid in flight from its
send to its response and holds further bids back (in order) at the cap, as the daemon does.
The simulator does not stall its feed at the cap, so a floor that ignored it would be faster
here than it could be against the real server (``--ignore-in-flight-cap`` measures that).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Final

import trio
from solders.keypair import Keypair
from trio_websocket import ConnectionClosed, open_websocket_url

from benchmarks._daemon_config import STRATEGIES_DIR
from searcherd.bids import SwapBid
from searcherd.config import ExpressRelayConfig, HttpUrl
from searcherd.express_relay._wire_bids import BuildError, ConstantsCache, build_wire_bid
from searcherd.express_relay.messages import (
    ExpressRelayDecodeError,
    Response,
    SvmChainUpdate,
    SwapOpportunity,
    decode_server_frame,
    encode_post_bid,
    encode_subscribe,
)
from searcherd.strategy import ChainState
from searcherd.svm.keys import SearcherKey

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FloorClient", "load_amount_rule", "main"]

CHAIN: Final = "solana"
MAX_IN_FLIGHT: Final = 150  # the server's per-connection cap on post_bid requests
_SUBSCRIBE_ID: Final = "sub"


def load_amount_rule() -> Callable[[SwapOpportunity], int]:
    """``bench_amount`` from the benchmark strategy file (a plain file, not a package)."""
    path = STRATEGIES_DIR / "bench_swap.py"
    spec = importlib.util.spec_from_file_location("bench_swap_rule", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rule: Callable[[SwapOpportunity], int] = module.bench_amount
    return rule


class FloorClient:
    """Decode, build, sign and encode; the websocket loop is in :meth:`run`."""

    def __init__(
        self,
        program_id: str,
        relayer_signer: str,
        fee_receiver_relayer: str,
        *,
        max_in_flight: int | None = MAX_IN_FLIGHT,
    ) -> None:
        self._key = SearcherKey(Keypair(), "throwaway")
        config = ExpressRelayConfig(
            http_url=HttpUrl("http://127.0.0.1"),
            program_id=program_id,
            relayer_signer=relayer_signer,
            fee_receiver_relayer=fee_receiver_relayer,
        )
        self._constants = ConstantsCache(config, None)
        self._chain: ChainState | None = None
        self._amount = load_amount_rule()
        self._ids = 0
        self._max_in_flight = max_in_flight  # None: no cap
        self._in_flight = 0
        self._held: deque[str] = deque()  # bids waiting for a free slot, oldest first
        self.bids = 0
        self.errors = 0

    def answer(self, frame: str | bytes) -> list[str]:
        """The ``post_bid`` frames to send after ``frame`` (often none or one), in order."""
        try:
            msg = decode_server_frame(frame)
        except ExpressRelayDecodeError:
            self.errors += 1
            return []
        if isinstance(msg, Response):
            if msg.id != _SUBSCRIBE_ID and self._in_flight > 0:
                self._in_flight -= 1  # a post_bid answered: its slot is free
            return self._release()
        if isinstance(msg, SvmChainUpdate):
            self._chain = ChainState(
                msg.chain_id, msg.blockhash, msg.latest_prioritization_fee, time.monotonic()
            )
            return []
        if not isinstance(msg, SwapOpportunity):
            return []
        try:
            built = build_wire_bid(
                SwapBid(opportunity=msg, amount=self._amount(msg)),
                chain=self._chain,
                signer=self._key,
                constants=self._constants,
                now=time.time(),
            )
        except BuildError:
            self.errors += 1
            return []
        self._ids += 1
        self.bids += 1
        self._held.append(encode_post_bid(str(self._ids), built.wire).decode())
        return self._release()

    def _release(self) -> list[str]:
        out: list[str] = []
        cap = self._max_in_flight
        while self._held and (cap is None or self._in_flight < cap):
            out.append(self._held.popleft())
            self._in_flight += 1
        return out

    async def run(self, ws_url: str) -> None:
        """Connect, subscribe, and answer every opportunity until the server goes away."""
        async with open_websocket_url(ws_url, disconnect_timeout=2) as ws:
            await ws.send_message(encode_subscribe(_SUBSCRIBE_ID, [CHAIN]).decode())
            try:
                while True:
                    for reply in self.answer(await ws.get_message()):
                        await ws.send_message(reply)
            except ConnectionClosed:
                return


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks._floor``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws-url", required=True)
    parser.add_argument("--program-id", required=True)
    parser.add_argument("--relayer-signer", required=True)
    parser.add_argument("--fee-receiver-relayer", required=True)
    parser.add_argument(
        "--ignore-in-flight-cap",
        action="store_true",
        help="send every bid at once, beyond the server's cap of 150 in flight",
    )
    args = parser.parse_args(argv)
    client = FloorClient(
        args.program_id,
        args.relayer_signer,
        args.fee_receiver_relayer,
        max_in_flight=None if args.ignore_in_flight_cap else MAX_IN_FLIGHT,
    )
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT is how the benchmark stops us
        trio.run(client.run, args.ws_url)
    print(f"floor: {client.bids} bids, {client.errors} errors", file=sys.stderr)


if __name__ == "__main__":
    main()
