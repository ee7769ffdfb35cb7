"""Helper process: an Express Relay simulator that outlives its clients, for the end-to-end
tests, the crash tests and the soak.

Usage: ``python tests/_er_simproc.py [--seed N] [--ws-port P] [--http-port P]
[--api-key-env NAME] [--won-only] [--chain-update-interval S] [--swap-lifetime S]
[--publish-every S] [--faults-every S] [--fault-seed N] [--request-timeout S]``

It serves the simulator on loopback with a fixed seed (so a restart on the same ports with the
same seed is the same deployment: same relayer accounts) and its random opportunity flow off.
With ``--api-key-env`` it accepts the API key found in that environment variable (so the daemon
can list its own bids, and so can a test: ``GET /v1/{chain}/bids`` is the simulator's record of
every bid). With ``--won-only`` every accepted bid wins within a few tenths of a second;
otherwise outcomes are drawn from the simulator's mix, every one final within seconds. With
``--publish-every S`` > 0 it publishes one swap opportunity every S seconds. It prints JSON lines
on stdout (logs go to stderr):

- first ``{"event": "ready", "ws_url", "http_url", "control_url", "ws_port", "http_port",
  "relayer_signer", "fee_receiver_relayer", "chains"}``;
- with ``--faults-every S`` > 0, a random fault of the fault matrix about every S seconds, each
  announced as ``{"event": "fault", "name": ..., "frozen": [bid ids]}`` (``frozen``: bids a
  simulated server restart left open for good);
- ``{"event": "held", "on": bool}`` and ``{"event": "quiet", "on": bool}`` after the signals.

Signals: SIGUSR1 toggles holding every response back (accepted bids stay unanswered); SIGUSR2
toggles quiet (no publishing, no faults); SIGTERM/SIGINT stop it.

It is also driven through a tiny control endpoint (``control_url``, plain HTTP/1.1, one request
per connection, JSON answers):

- ``GET /state``: ``{"published": n, "bids": n, "final": {STATUS: n}, "connections": n,
  "stalled": bool}`` (``bids`` counts the bids it accepted, ``final`` their final statuses);
- ``POST /push?count=N&program=swap``: publish N opportunities now; answers their ids;
- ``POST /stall``, ``POST /resume``: stall the feed / let it flow again. A stall is persistent:
  every open connection stops sending (frames, pongs) and so does every connection opened while
  stalled, as soon as its client sends its first frame (the subscribe), so a reconnecting client
  never gets a working feed until ``/resume``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

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
_MAX_REQUEST: Final = 16 * 1024  # bytes of a control request head
_MAX_PUSH: Final = 10_000


def _emit(doc: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.buffer.flush()


class _Driver:
    """Publishing, the hold, quiet and stall switches, the control requests and the random
    faults, over one simulator (a simulated restart replaces ``sim``)."""

    def __init__(self, sim: ExpressRelaySimulator, nursery: trio.Nursery, args: Any) -> None:
        self.sim = sim
        self.nursery = nursery
        self.args = args
        self.held = False
        self.quiet = False
        self.stalled = False
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

    def stall(self) -> None:
        """Stall every connection now and every new one at its first client frame."""
        self.stalled = True
        self.sim.stall_connections()
        # A connection is registered before its read loop starts, so stalling all connections
        # when any client frame arrives catches a new connection before it answers anything.
        self.sim.on_client_frame = lambda _frame: self.sim.stall_connections()

    def resume(self) -> None:
        """Undo `stall`: queued frames flow again and new connections work."""
        self.stalled = False
        self.sim.on_client_frame = None
        self.sim.resume_connections()

    def state(self) -> dict[str, Any]:
        """What a test compares the daemon's metrics with."""
        final = Counter(
            r.final_status.type for r in self.sim.bids.values() if r.final_status is not None
        )
        return {
            "published": len(self.sim.published),
            "bids": len(self.sim.bids),
            "final": dict(final),
            "connections": len(self.sim.connections),
            "stalled": self.stalled,
        }

    def handle(self, method: str, target: str) -> tuple[int, dict[str, Any]]:
        """Answer one control request: (HTTP status, JSON body)."""
        url = urlsplit(target)
        query = parse_qs(url.query)
        route = (method, url.path)
        if route == ("GET", "/state"):
            return 200, self.state()
        if route == ("POST", "/stall"):
            self.stall()
            return 200, self.state()
        if route == ("POST", "/resume"):
            self.resume()
            return 200, self.state()
        if route == ("POST", "/push"):
            try:
                count = int(query.get("count", ["1"])[0])
            except ValueError:
                return 400, {"error": "count must be an integer"}
            if not 0 < count <= _MAX_PUSH:
                return 400, {"error": f"count must be 1..{_MAX_PUSH}"}
            program = query.get("program", ["swap"])[0]
            if program not in ("swap", "limo"):
                return 400, {"error": "program must be swap or limo"}
            ids = [self.sim.push_opportunity(program=program).opportunity_id for _ in range(count)]
            return 200, {"pushed": ids, **self.state()}
        return 404, {"error": f"no route {method} {url.path}"}

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


async def _serve_control(
    driver: _Driver, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            # Read the request head; a body is never needed (parameters are in the query).
            while b"\r\n\r\n" not in data and len(data) < _MAX_REQUEST:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            # "METHOD TARGET HTTP/1.1"; a malformed line ends up as a 404 answer.
            method, _, rest = data.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            target = rest.partition(" ")[0]
            try:
                status, body = driver.handle(method, target)
            except Exception as exc:  # a helper bug must answer, not kill the simulator
                status, body = 500, {"error": repr(exc)}
            payload = orjson.dumps(body)
            head = (
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
            )
            await stream.send_all(head.encode() + payload)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, one, listeners)
        task_status.started(port)


def _config(args: argparse.Namespace) -> SimulatorConfig:
    keys: tuple[str, ...] = ()
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "")
        if not key:
            raise SystemExit(f"set {args.api_key_env} to the API key the simulator should accept")
        keys = (key,)
    if args.won_only:
        # Every bid wins within a few tenths of a second: tests wait for every final status.
        outcomes: dict[str, float] = {"won": 1.0}
        timings = Timings(auction=0.05, step=0.1, awaiting_signature=0.2)
    else:
        outcomes = SimulatorConfig().outcomes
        # Every final status, quickly: tests and the soak wait for every auction to end.
        timings = Timings(
            auction=0.1, step=0.3, awaiting_signature=0.5, cancel_window=1.0, expire=4.0
        )
    return SimulatorConfig(
        svm_chains=(CHAIN,),
        api_keys=keys,
        seed=args.seed,
        ws_port=args.ws_port,
        http_port=args.http_port,
        opportunity_interval=0.0,  # the driver and the control endpoint publish
        chain_update_interval=args.chain_update_interval,
        swap_lifetime=args.swap_lifetime,  # a loaded machine still bids in time
        outcomes=outcomes,
        timings=timings,
    )


async def _main(args: argparse.Namespace) -> None:
    config = _config(args)
    signals = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:
            sim: ExpressRelaySimulator = await nursery.start(serve, config)
            driver = _Driver(sim, nursery, args)
            control_port = await nursery.start(_serve_control, driver)
            _emit(
                {
                    "event": "ready",
                    "ws_url": sim.ws_url,
                    "http_url": sim.http_url,
                    "control_url": f"http://127.0.0.1:{control_port}",
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
    parser.add_argument("--ws-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--api-key-env", default="", help="accept the key in this variable")
    parser.add_argument("--won-only", action="store_true", help="every bid wins, quickly")
    parser.add_argument("--chain-update-interval", type=float, default=0.5)
    parser.add_argument("--swap-lifetime", type=float, default=5.0)
    parser.add_argument("--publish-every", type=float, default=0.0)
    parser.add_argument("--faults-every", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    # stdout carries only the JSON protocol lines: the simulator's logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    trio.run(_main, args)


if __name__ == "__main__":
    main()
