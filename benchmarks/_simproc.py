"""The simulator side of the tick-to-bid benchmark, run as its own process.

``python -m benchmarks._simproc [--seed N] [--check-bids]`` starts the Express Relay simulator with its own
opportunity flow off, prints one JSON line ``{"event": "ready", "ws_url": ..., "http_url": ...,
"program_id": ..., "relayer_signer": ..., "fee_receiver_relayer": ...}`` on stdout, then answers one JSON command per stdin line with one JSON line on stdout:

- ``{"cmd": "wait_client", "timeout": s}``: wait until a client has subscribed to the chain;
- ``{"cmd": "warmup", "need": n, "timeout": s}``: push an opportunity every 20 ms until ``n`` in
  a row got their bid back (the client is connected, has a blockhash and bids);
- ``{"cmd": "open_loop", "count": n, "interval": s, "settle": s}``: push ``n`` opportunities on a
  fixed schedule (one every ``interval`` seconds, whatever the client does: open loop);
- ``{"cmd": "burst", "count": n, "settle": s}``: push ``n`` opportunities at once;
- ``{"cmd": "quit"}``.

Every timestamp is ``time.perf_counter_ns()`` in this process: taken just before an opportunity
is handed to the simulator, and when a ``post_bid`` frame naming it is read off the client's
socket (the simulator's ``on_client_frame`` hook). No clock crosses a process boundary.

Logs go to stderr at warning level, so stdout carries only the protocol.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import random
import sys
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog
import trio

from searcherd.express_relay import _sim_state as sim_state
from searcherd.express_relay.simulator import (
    ExpressRelaySimulator,
    SimulatorConfig,
    Timings,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from searcherd.express_relay.messages import SwapOpportunity

__all__ = ["BidClock", "main", "run"]

CHAIN: Final = "solana"
_WARMUP_GAP: Final = 0.02  # seconds between warm-up opportunities


class BidClock:
    """Send and receive timestamps of one benchmark phase, matched by opportunity id.

    ``on_frame`` is the simulator's client-frame hook: it runs in the simulator's read loop, so
    it takes its timestamp first and never raises (a bad frame is simply not a bid).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new phase: forget pending sends and collected latencies."""
        self.pending: dict[str, int] = {}
        self.latencies: list[int] = []
        self.first_send = 0
        self.last_recv = 0
        self.unmatched = 0  # post_bid frames for no pending opportunity of this phase
        self.done = trio.Event()  # set when nothing is pending after the last send
        self.closed = False  # True once the phase has sent everything it will send

    def sent(self, opportunity_id: str) -> None:
        """Record the send time of one opportunity (call just before publishing it)."""
        now = time.perf_counter_ns()
        if not self.pending and not self.latencies:
            self.first_send = now
        self.pending[opportunity_id] = now

    def finish_sending(self) -> None:
        """No more sends in this phase; ``done`` fires once every bid is back."""
        self.closed = True
        if not self.pending:
            self.done.set()

    def on_frame(self, frame: str | bytes) -> None:
        """Hook for every client frame: time ``post_bid`` arrivals by opportunity id."""
        now = time.perf_counter_ns()
        # Cheap filter first: most frames a benchmark client sends are bids anyway, but pings
        # and subscribes must not cost a JSON parse.
        if "post_bid" not in (
            frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        ):
            return
        try:
            doc = orjson.loads(frame)
            opportunity_id = doc["params"]["bid"]["opportunity_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        sent = self.pending.pop(opportunity_id, None) if isinstance(opportunity_id, str) else None
        if sent is None:
            self.unmatched += 1
            return
        self.latencies.append(now - sent)
        self.last_recv = now
        if self.closed and not self.pending:
            self.done.set()

    def result(self, sent: int) -> dict[str, Any]:
        """The phase's figures as a JSON-able dict."""
        return {
            "sent": sent,
            "matched": len(self.latencies),
            "unmatched_bids": self.unmatched,
            "latencies_ns": self.latencies,
            "span_ns": max(0, self.last_recv - self.first_send),
        }


class _Driver:
    """Executes the commands against one running simulator."""

    def __init__(self, sim: ExpressRelaySimulator, seed: int) -> None:
        self.sim = sim
        self.clock = BidClock()
        self._rng = random.Random(f"{seed}:bench")
        sim.on_client_frame = self.clock.on_frame

    def _make(self) -> SwapOpportunity:
        rng = self._rng
        return sim_state.make_swap(rng, CHAIN, time.time(), cancellable=rng.random() < 0.5)

    def _push(self, opp: SwapOpportunity) -> None:
        self.clock.sent(opp.opportunity_id)
        self.sim.push_opportunity(opp)

    def _trim(self) -> None:
        # The simulator keeps every opportunity and final bid for tests; a 100k run needs none
        # of it, and a growing simulator would slow down as it goes.
        self.sim.published.clear()
        for bid_id in [b for b, r in self.sim.bids.items() if r.final_status is not None]:
            del self.sim.bids[bid_id]
        # Whatever survived a trim is long-lived (open bids, the server's state): take it out
        # of the cyclic collector's sight. Otherwise every full collection walks it all, and
        # with thousands of open bids a pause of 100-250 ms stalls the simulator, which then
        # sends the overdue opportunities at once: a burst the client did not cause, in the
        # middle of the open loop.
        gc.freeze()

    async def wait_client(self, within: float) -> dict[str, Any]:
        """Wait until some connection subscribed to the benchmark chain."""
        with trio.move_on_after(within):
            # Polling: the simulator has no subscription event, and this runs once per client.
            while not any(CHAIN in c.subscriptions for c in self.sim.connections.values()):  # noqa: ASYNC110
                await trio.sleep(0.01)
            return {"ok": True}
        return {"ok": False, "error": f"no client subscribed within {within} s"}

    async def warmup(self, need: int, within: float) -> dict[str, Any]:
        """Push until ``need`` consecutive opportunities got a bid back."""
        streak = pushed = 0
        with trio.move_on_after(within):
            while streak < need:
                self.clock.reset()
                opp = self._make()
                self._push(opp)
                pushed += 1
                self.clock.finish_sending()
                with trio.move_on_after(1.0):
                    await self.clock.done.wait()
                streak = streak + 1 if self.clock.done.is_set() else 0
                await trio.sleep(_WARMUP_GAP)
            self.clock.reset()
            return {"ok": True, "pushed": pushed}
        self.clock.reset()
        return {"ok": False, "pushed": pushed, "error": f"no steady bids within {within} s"}

    async def open_loop(self, count: int, interval: float, settle: float) -> dict[str, Any]:
        """Push ``count`` opportunities, the i-th at ``start + i * interval``."""
        self.clock.reset()
        start = trio.current_time()
        pushed = 0
        while pushed < count:
            # Open loop: the schedule is absolute, so a late wake-up sends every overdue
            # opportunity at once instead of slowing the offered rate down.
            due = min(count, math.floor((trio.current_time() - start) / interval) + 1)
            while pushed < due:
                self._push(self._make())
                pushed += 1
                if pushed % 5000 == 0:
                    self._trim()
                elif pushed % 100 == 0:
                    # See _trim; this often, because every middle-generation collection walks
                    # all that came since the last freeze (every 1,000 opportunities: 20 pauses
                    # of 2-7 ms a run, which each client measured as its own latency).
                    gc.freeze()
            await trio.sleep_until(start + pushed * interval)
        send_s = trio.current_time() - start
        self.clock.finish_sending()
        with trio.move_on_after(settle):
            await self.clock.done.wait()
        self._trim()
        return {"ok": True, "send_s": send_s, **self.clock.result(count)}

    async def burst(self, count: int, settle: float) -> dict[str, Any]:
        """Push ``count`` opportunities back to back, without yielding in between."""
        self.clock.reset()
        batch = [self._make() for _ in range(count)]  # built first: only the sends are timed
        for opp in batch:
            self._push(opp)
        self.clock.finish_sending()
        with trio.move_on_after(settle):
            await self.clock.done.wait()
        self._trim()
        return {"ok": True, **self.clock.result(count)}


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.buffer.flush()


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
    buf = b""
    async for chunk in stream:
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line


async def run(seed: int = 0, *, check_bids: bool = False) -> None:
    """Serve the simulator and answer stdin commands until ``quit`` or end of input.

    ``check_bids`` turns on the simulator's server-side rule check of every SVM bid. It is off
    by default: both benchmark clients build bids with the same builders, which run the same
    rules locally, so the answers do not change, but the check costs the simulator ~150 us per
    bid on a core the client may need.
    """
    config = SimulatorConfig(
        seed=seed,
        check_svm_bids=check_bids,
        opportunity_interval=0,  # no random flow: the benchmark pushes every opportunity
        swap_lifetime=5.0,  # long enough that every bid of a burst still finds its quote
        chain_update_interval=1.0,  # a blockhash soon after connecting, then one frame a second
        event_buffer=1 << 20,  # a burst must not look like a lagging client
        # Real response shapes and status pushes, from a fast server, so its own 150 in-flight
        # cap never becomes what the benchmark measures.
        timings=Timings(bid_processing=(0.0, 0.002)),
    )
    async with trio.open_nursery() as nursery:
        sim: ExpressRelaySimulator = await nursery.start(serve, config)
        gc.freeze()  # see _Driver._trim
        driver = _Driver(sim, seed)
        _emit(
            {
                "event": "ready",
                "ws_url": sim.ws_url,
                "http_url": sim.http_url,
                # The simulated deployment: clients build bids for it, as for mainnet.
                "program_id": str(sim.program_id[CHAIN]),
                "relayer_signer": str(sim.relayer_signer),
                "fee_receiver_relayer": str(sim.fee_receiver_relayer),
            }
        )
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async for line in _lines(stdin):
            try:
                cmd = orjson.loads(line)
                name = cmd["cmd"]
                if name == "quit":
                    break
                if name == "wait_client":
                    reply = await driver.wait_client(float(cmd.get("timeout", 30)))
                elif name == "warmup":
                    reply = await driver.warmup(int(cmd["need"]), float(cmd.get("timeout", 60)))
                elif name == "open_loop":
                    reply = await driver.open_loop(
                        int(cmd["count"]), float(cmd["interval"]), float(cmd.get("settle", 5))
                    )
                elif name == "burst":
                    reply = await driver.burst(int(cmd["count"]), float(cmd.get("settle", 10)))
                else:
                    reply = {"ok": False, "error": f"unknown command {name!r}"}
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                reply = {"ok": False, "error": f"bad command: {exc}"}
            reply["internal_errors"] = len(sim.internal_errors)
            _emit(reply)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks._simproc``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-bids", action="store_true", help="check bids as the server does")
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    trio.run(partial(run, args.seed, check_bids=args.check_bids))


if __name__ == "__main__":
    main()
