"""Helper process: an Express Relay simulator that outlives the daemon, for crash tests and the soak.

Usage: ``python tests/_er_simproc.py [--seed N] [--api-key-env NAME] [--publish-every S]
[--faults-every S] [--fault-seed N] [--request-timeout S]``

It serves the simulator on loopback with a fixed seed, accepting the API key found in the
environment variable ``--api-key-env`` (so the daemon can list its own bids, and so can the
test: ``GET /v1/{chain}/bids`` is the simulator's record of every bid), publishes one swap
opportunity every ``--publish-every`` seconds, and prints JSON lines on stdout (logs go to
stderr):

- first ``{"event": "ready", "ws_url", "http_url", "ws_port", "http_port", "relayer_signer",
  "fee_receiver_relayer", "chains"}``;
- with ``--faults-every S`` > 0, a random fault of the fault matrix about every S seconds, each
  announced as ``{"event": "fault", "name": ..., "frozen": [bid ids]}`` (``frozen``: bids a
  simulated server restart left open for good);
- ``{"event": "held", "on": bool}`` and ``{"event": "quiet", "on": bool}`` after the signals.

Signals: SIGUSR1 toggles holding every response back (accepted bids stay unanswered); SIGUSR2
toggles quiet (no publishing, no faults); SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import orjson
import structlog
import trio

from searcherd.express_relay.messages import BidStatus
from searcherd.express_relay.simulator import ExpressRelaySimulator, SimulatorConfig, Timings, serve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _nothing_lost import open_bids, restart_simulator

if TYPE_CHECKING:
    from collections.abc import Sequence

CHAIN: Final = "solana"
_HOLD: Final = 24 * 3600.0  # "for ever": a held response never comes on that connection
_CLIENT_LIMIT: Final = 16 * 2**20  # the daemon's default WebSocket message size limit
_SETTLE: Final = 3.0  # seconds after a fault before the next may come


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.buffer.flush()


class _Driver:
    """Publishing, the hold and quiet switches, and the random faults, over one simulator."""

    def __init__(self, sim: ExpressRelaySimulator, nursery: trio.Nursery, args: Any) -> None:
        self.sim = sim
        self.nursery = nursery
        self.args = args
        self.held = False
        self.quiet = False
        self.frozen: set[str] = set()
        self.rng = random.Random(args.fault_seed)

    async def publish(self) -> None:
        """One swap opportunity every ``--publish-every`` seconds unless quiet."""
        while True:
            if not self.quiet:
                self.sim.push_opportunity(program="swap")
            await trio.sleep(self.args.publish_every)

    def toggle_hold(self) -> None:
        """Hold every response back (bids accepted, never answered), or stop holding."""
        self.held = not self.held
        self.sim.delay_responses(_HOLD if self.held else 0.0)
        _emit({"event": "held", "on": self.held})

    def toggle_quiet(self) -> None:
        """Stop publishing and injecting faults, or start again."""
        self.quiet = not self.quiet
        _emit({"event": "quiet", "on": self.quiet})

    async def faults(self) -> None:
        """A random fault about every ``--faults-every`` seconds (never two at once)."""
        names = sorted(_FAULTS)
        while True:
            await trio.sleep(max(_SETTLE, self.rng.expovariate(1.0 / self.args.faults_every)))
            if self.quiet:
                continue
            name = self.rng.choice(names)
            frozen = await _FAULTS[name](self)
            self.frozen |= frozen
            _emit({"event": "fault", "name": name, "frozen": sorted(frozen)})

    # -- the faults (each returns the bids it froze) ------------------------------------------

    async def _tcp_reset(self) -> set[str]:
        self.sim.drop_all_connections()
        return set()

    async def _close_1001(self) -> set[str]:
        self.sim.close_all_connections(1001)
        return set()

    async def _half_open(self) -> set[str]:
        self.sim.stall_connections()
        return set()

    async def _restart(self) -> set[str]:
        self.sim, frozen = await restart_simulator(self.nursery, self.sim)
        return frozen

    async def _oversized(self) -> set[str]:
        self.sim.send_oversized(_CLIENT_LIMIT + 1024)
        return set()

    async def _upgrade_401(self) -> set[str]:
        self.sim.reject_upgrades(401)
        self.sim.drop_all_connections()
        return set()

    async def _upgrade_429(self) -> set[str]:
        self.sim.reject_upgrades(429)
        self.sim.drop_all_connections()
        return set()

    async def _status_while_away(self) -> set[str]:
        self.sim.drop_all_connections()
        for bid_id in open_bids(self.sim, self.frozen):
            self.sim.set_bid_status(bid_id, BidStatus("won", self.sim.bids[bid_id].signature))
        return set()

    async def _flood(self) -> set[str]:
        self.sim.flood_events()
        return set()

    async def _malformed(self) -> set[str]:
        self.sim.send_malformed()
        return set()

    async def _unknown_shape(self) -> set[str]:
        self.sim.send_unknown_shape()
        return set()

    async def _unknown_status(self) -> set[str]:
        bids = open_bids(self.sim, self.frozen)
        if bids:
            self.sim.send_unknown_status(bids[0])
            await trio.sleep(1.0)
            if self.sim.bids.get(bids[0]) is not None:
                self.sim.set_bid_status(bids[0], BidStatus("lost", None))
        return set()

    async def _reorder(self) -> set[str]:
        self.sim.reorder_responses(3)
        return set()

    async def _duplicate(self) -> set[str]:
        self.sim.duplicate_responses(True)
        await trio.sleep(2.0)
        self.sim.duplicate_responses(False)
        return set()

    async def _late(self) -> set[str]:
        self.sim.respond_late(self.args.request_timeout + 1.0)
        return set()

    async def _id_null(self) -> set[str]:
        # Only honest when no request of the client is in flight (then it blames nothing):
        # stop publishing long enough for every bid to be answered first.
        self.quiet = True
        await trio.sleep(2.0)
        self.sim.send_raw('{"id": null, "status": "error", "result": "EOF while parsing"}')
        self.quiet = False
        return set()


_FAULTS: Final = {
    "abrupt_tcp_close": _Driver._tcp_reset,
    "close_1001": _Driver._close_1001,
    "half_open": _Driver._half_open,
    "server_restart_same_port": _Driver._restart,
    "frame_over_size_limit": _Driver._oversized,
    "upgrade_401": _Driver._upgrade_401,
    "upgrade_429": _Driver._upgrade_429,
    "status_change_while_away": _Driver._status_while_away,
    "1000_events_behind": _Driver._flood,
    "malformed_json": _Driver._malformed,
    "json_of_unknown_shape": _Driver._unknown_shape,
    "unknown_status": _Driver._unknown_status,
    "out_of_order_responses": _Driver._reorder,
    "duplicated_responses": _Driver._duplicate,
    "response_after_timeout": _Driver._late,
    "id_null_error": _Driver._id_null,
}


async def _main(args: argparse.Namespace) -> None:
    key = os.environ.get(args.api_key_env, "")
    if not key:
        raise SystemExit(f"set {args.api_key_env} to the API key the simulator should accept")
    config = SimulatorConfig(
        svm_chains=(CHAIN,),
        api_keys=(key,),
        seed=args.seed,
        opportunity_interval=0.0,  # the driver publishes (and can stop publishing)
        chain_update_interval=0.5,
        swap_lifetime=5.0,  # a loaded machine still bids in time
        # Every final status, quickly: tests and the soak wait for every auction to end.
        timings=Timings(
            auction=0.1, step=0.3, awaiting_signature=0.5, cancel_window=1.0, expire=4.0
        ),
    )
    signals = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            sim: ExpressRelaySimulator = await nursery.start(serve, config)
            driver = _Driver(sim, nursery, args)
            _emit(
                {
                    "event": "ready",
                    "ws_url": sim.ws_url,
                    "http_url": sim.http_url,
                    "ws_port": urlsplit(sim.ws_url).port,
                    "http_port": urlsplit(sim.http_url).port,
                    "relayer_signer": str(sim.relayer_signer),
                    "fee_receiver_relayer": str(sim.fee_receiver_relayer),
                    "chains": [CHAIN],
                }
            )
            if args.publish_every > 0:
                nursery.start_soon(driver.publish)
            if args.faults_every > 0:
                nursery.start_soon(driver.faults)
            async for signum in received:
                if signum == signal.SIGUSR1:
                    driver.toggle_hold()
                elif signum == signal.SIGUSR2:
                    driver.toggle_quiet()
                else:
                    nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, send logs to stderr, run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--api-key-env", default="ER_SIM_KEY")
    parser.add_argument("--publish-every", type=float, default=0.2)
    parser.add_argument("--faults-every", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    # stdout carries only the JSON protocol lines: the simulator's logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    trio.run(_main, args)


if __name__ == "__main__":
    main()
