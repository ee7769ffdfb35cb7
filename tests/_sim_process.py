"""Helper process: an Express Relay simulator in a process of its own, for end-to-end tests.

Usage: `python _sim_process.py [--seed N] [--ws-port P] [--http-port P]
[--chain-update-interval S] [--swap-lifetime S]`

It starts the simulator on loopback with a fixed seed (so a restart on the same ports with the
same seed is the same deployment: same relayer accounts), with the random opportunity flow off
and every accepted bid bound to win within a few tenths of a second, then prints ONE JSON line on stdout and nothing else there (its logs go to stderr)::

    {"ws_url": ..., "http_url": ..., "control_url": ..., "ws_port": ..., "http_port": ...,
     "relayer_signer": ..., "fee_receiver_relayer": ..., "chains": [...]}

It is driven through a tiny control endpoint (`control_url`, plain HTTP/1.1, one request per
connection, JSON answers):

- `GET /state`: `{"published": n, "bids": n, "final": {STATUS: n}, "connections": n,
  "stalled": bool}` (`bids` counts the bids it accepted, `final` their final statuses);
- `POST /push?count=N&program=swap`: publish N opportunities now; answers their ids;
- `POST /stall`, `POST /resume`: stall the feed / let it flow again.

SIGUSR1 stalls and SIGUSR2 resumes too. A stall here is persistent: every open connection stops
sending (frames, pongs) and so does every connection opened while stalled, as soon as its
client sends its first frame (the subscribe), so a reconnecting client never gets a working
feed until `resume`. SIGTERM/SIGINT stop the process.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import orjson
import structlog
import trio

from searcherd.express_relay.simulator import (
    ExpressRelaySimulator,
    SimulatorConfig,
    Timings,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

_MAX_REQUEST = 16 * 1024
_MAX_PUSH = 10_000


class _Controller:
    """The stall switch and the control requests, over one running simulator."""

    def __init__(self, sim: ExpressRelaySimulator) -> None:
        self.sim = sim
        self.stalled = False

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
        return {
            "published": len(self.sim.published),
            "bids": len(self.sim.bids),
            "final": dict(
                Counter(
                    r.final_status.type
                    for r in self.sim.bids.values()
                    if r.final_status is not None
                )
            ),
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


async def _serve_control(
    controller: _Controller, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
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
                status, body = controller.handle(method, target)
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


async def _main(args: argparse.Namespace) -> None:
    config = SimulatorConfig(
        svm_chains=("solana",),
        seed=args.seed,
        ws_port=args.ws_port,
        http_port=args.http_port,
        opportunity_interval=0.0,  # no random flow: the test pushes every opportunity itself
        chain_update_interval=args.chain_update_interval,
        # Swap quotes live long enough for a loaded test machine to bid in time.
        swap_lifetime=args.swap_lifetime,
        outcomes={"won": 1.0},
        # A quick auction: tests wait for every bid's final status.
        timings=Timings(auction=0.05, step=0.1, awaiting_signature=0.2),
    )
    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM,
                                   signal.SIGINT) as signals:  # fmt: skip
        async with trio.open_nursery() as nursery:
            sim: ExpressRelaySimulator = await nursery.start(serve, config)
            controller = _Controller(sim)
            control_port = await nursery.start(_serve_control, controller)
            ws_port = int(urlsplit(sim.ws_url).port or 0)
            http_port = int(urlsplit(sim.http_url).port or 0)
            line = {
                "ws_url": sim.ws_url,
                "http_url": sim.http_url,
                "control_url": f"http://127.0.0.1:{control_port}",
                "ws_port": ws_port,
                "http_port": http_port,
                "relayer_signer": str(sim.relayer_signer),
                "fee_receiver_relayer": str(sim.fee_receiver_relayer),
                "chains": list(config.svm_chains),
            }
            print(orjson.dumps(line).decode(), flush=True)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    controller.stall()
                elif signum == signal.SIGUSR2:
                    controller.resume()
                else:
                    nursery.cancel_scope.cancel()
                    return


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, send logs to stderr, run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ws-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--chain-update-interval", type=float, default=0.1)
    parser.add_argument("--swap-lifetime", type=float, default=5.0)
    args = parser.parse_args(argv)
    # stdout carries exactly one JSON line: everything the simulator logs goes to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    trio.run(_main, args)


if __name__ == "__main__":
    main()
