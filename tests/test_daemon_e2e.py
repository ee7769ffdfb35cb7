"""End to end: a real `searcherd run` process against an Express Relay simulator process.

Each test starts `_er_simproc.py` (the simulator in a process of its own, random flow off, every
bid won, driven through its control endpoint) and `python -m searcherd run -c <config>` pointed at it,
then watches what an operator's tools see: the systemd notify datagrams (on an AF_UNIX datagram
socket in `tmp_path` named by `NOTIFY_SOCKET`), `/healthz`, `searcherd status` and `/metrics`.

Real time is unavoidable across processes, so every wait is event-driven with a deadline: for a
log line, a datagram or an HTTP answer. Windows are short (liveness 2 s, watchdog 1 s) to keep
the file fast.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from _real_time import SIM_SCRIPT, free_port, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import Child

_LIVENESS = 2.0  # [express_relay] liveness_window of the daemon under test
_WATCHDOG_USEC = 1_000_000  # so the daemon pings every 0.5 s
_WAIT = 15.0  # deadline of any single wait: generous, yet a hang fails quickly
_POLL = 0.05
_SYNC = "X_TEST_SYNC=1"  # our own marker datagram (see NotifySocket.sync)

# A strategy that bids on every swap opportunity, so the bid count is the swap count.
_STRATEGY = '''
import trio

from searcherd import NoParams, Strategy, SwapBid, SwapOpportunity


class BidEverySwap(Strategy[NoParams]):
    """Bid 1000 on every swap quote request."""

    name = "bid_every_swap"
    venues = ("express_relay",)

    async def on_opportunity(self, opportunity):
        if not isinstance(opportunity, SwapOpportunity):
            return None
        # The submitter needs a blockhash; the simulator sends one every 0.1 s.
        with trio.move_on_after(0.3):
            while self.context.express_relay.chain(opportunity.chain_id) is None:
                await trio.sleep(0.01)
        return SwapBid(opportunity=opportunity, amount=1000)
'''


# -- helpers --------------------------------------------------------------------------------


class NotifySocket:
    """The systemd side of `NOTIFY_SOCKET`: an AF_UNIX datagram socket that records datagrams.

    A reader thread receives continuously, so each datagram in `received` (its list of
    `KEY=VALUE` lines) carries the true `time.monotonic()` of its arrival.
    """

    def __init__(self, directory: Path) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path = directory / "notify.sock"
        if len(str(path)) < 100:
            self.address = str(path)
            self._sock.bind(self.address)
        else:  # sun_path holds 108 bytes; a very long tmp_path falls back to an abstract name
            self.address = f"@searcherd-e2e-{uuid.uuid4().hex}"
            self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(_POLL)
        self.received: list[tuple[float, list[str]]] = []
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            # list.append is atomic: the test thread only ever reads a prefix of the list.
            self.received.append((time.monotonic(), data.decode().split("\n")))

    def close(self) -> None:
        """Stop the reader and close the socket."""
        self._closing.set()
        self._reader.join(timeout=_WAIT)
        self._sock.close()

    def wait_for(self, field: str, *, after: int = 0, timeout: float = _WAIT) -> int:
        """Index in `received` of the first datagram from index `after` on carrying `field`
        (`READY=1`, or a `KEY=` prefix such as `STATUS=`); waits for it with a deadline."""

        def find() -> int | None:
            for index in range(after, len(self.received)):
                if _has(self.received[index][1], field):
                    return index + 1  # truthy even for index 0
            return None

        return int(wait_until(find, f"{field} after datagram {after}", timeout)) - 1

    def sync(self) -> None:
        """Wait until every datagram sent so far has been read: datagrams on one AF_UNIX socket
        arrive in order, so once our own marker is read, all earlier ones are too."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            address = self.address if self.address.startswith("/") else "\0" + self.address[1:]
            sender.sendto(_SYNC.encode(), address)
        self.wait_for(_SYNC)

    def pings_after(self, moment: float) -> int:
        """How many WATCHDOG=1 pings arrived after `moment` (a `time.monotonic()` value)."""
        return sum(1 for at, fields in self.received if at > moment and fields == ["WATCHDOG=1"])

    def kinds(self, start: int = 0) -> list[str]:
        """The first field of each datagram from `start` on, `WATCHDOG=1` pings left out."""
        return [
            fields[0]
            for _, fields in self.received[start:]
            if fields not in (["WATCHDOG=1"], [_SYNC])
        ]


def _has(fields: list[str], field: str) -> bool:
    return any(f == field or (field.endswith("=") and f.startswith(field)) for f in fields)


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """A notify socket; processes spawned afterwards get `NOTIFY_SOCKET` and `WATCHDOG_USEC`."""
    sock = NotifySocket(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", sock.address)
    monkeypatch.setenv("WATCHDOG_USEC", str(_WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


class Sim:
    """The simulator process and its control endpoint."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.info: dict[str, Any] = json.loads(child.readline())
        self._http = httpx.Client(base_url=self.info["control_url"], timeout=5.0, trust_env=False)

    def call(self, method: str, path: str) -> dict[str, Any]:
        """One control request; its JSON answer."""
        response = self._http.request(method, path)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def state(self) -> dict[str, Any]:
        """Opportunities published, bids accepted (and final), connections, stalled."""
        return self.call("GET", "/state")

    def stop(self) -> None:
        """Stop the simulator process (SIGTERM) and wait for it."""
        self._http.close()
        self.child.send_signal(signal.SIGTERM)
        self.child.wait()


@pytest.fixture
def start_sim(spawn: Callable[..., Child]) -> Callable[..., Sim]:
    """A function `(*args) -> Sim` starting `_er_simproc.py` with those arguments (and
    every bid won, chain updates every 0.1 s)."""

    def start(*args: str) -> Sim:
        return Sim(spawn(str(SIM_SCRIPT), "--won-only", "--chain-update-interval", "0.1", *args))

    return start


def _write_daemon_config(
    write_config: Callable[..., Path], tmp_path: Path, sim: Sim, health_port: int
) -> Path:
    """The daemon's config: Express Relay at the simulator, short windows, one strategy."""
    strategies = tmp_path / "strategies"
    strategies.mkdir(exist_ok=True)
    (strategies / "bid_every_swap.py").write_text(_STRATEGY, encoding="utf-8")
    info = sim.info
    return write_config(
        daemon={"strategies_dir": "strategies", "shutdown_grace": 1.0},
        log={"format": "json"},
        health={"listen": f"127.0.0.1:{health_port}"},
        express_relay={
            "enabled": True,
            "ws_url": info["ws_url"],
            "http_url": info["http_url"],
            "chains": info["chains"],
            "relayer_signer": info["relayer_signer"],
            "fee_receiver_relayer": info["fee_receiver_relayer"],
            "liveness_window": _LIVENESS,
            # Pings slower than the liveness window: a stalled feed is caught by the window.
            "ping_interval": 10.0,
            "request_timeout": 1.0,
            "backoff_max": 0.5,
        },
        strategies={"bid_every_swap": {"enabled": True}},
    )


class Daemon:
    """A running `searcherd run` child with its health port and config."""

    def __init__(self, child: Child, config: Path, health_port: int) -> None:
        self.child = child
        self.config = config
        self.base = f"http://127.0.0.1:{health_port}"
        self._http = httpx.Client(timeout=5.0, trust_env=False)

    def get(self, path: str) -> httpx.Response:
        """GET one of the health listener's paths."""
        return self._http.get(self.base + path)

    def health_code(self) -> int | None:
        """The /healthz status code, or None while nothing answers."""
        try:
            return self.get("/healthz").status_code
        except httpx.TransportError:
            return None

    def wait_health(self, code: int) -> dict[str, Any]:
        """Wait until /healthz answers `code`; return its JSON body."""
        wait_until(lambda: self.health_code() == code, f"/healthz {code}", _WAIT)
        body: dict[str, Any] = self.get("/healthz").json()
        return body

    def status(self) -> int:
        """`searcherd status -c <config>`: its exit code."""
        done = subprocess.run(
            [sys.executable, "-m", "searcherd", "status", "-c", str(self.config)],
            cwd=self.config.parent,
            capture_output=True,
            timeout=_WAIT,
            check=False,
        )
        return done.returncode

    def metrics(self) -> dict[str, float]:
        """/metrics parsed: the sum over labels of every sample, by sample name."""
        response = self.get("/metrics")
        assert response.status_code == 200
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            assert family.name.startswith("searcherd_"), family.name
            for sample in family.samples:
                assert sample.name.startswith("searcherd_"), sample.name
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def close(self) -> None:
        """Release the HTTP client."""
        self._http.close()


@pytest.fixture
def start_daemon(
    spawn: Callable[..., Child], write_config: Callable[..., Path], tmp_path: Path
) -> Iterator[Callable[[Sim], Daemon]]:
    """A function `(sim) -> Daemon`: start `searcherd run` against `sim`, wait until ready."""
    daemons: list[Daemon] = []

    def start(sim: Sim) -> Daemon:
        port = free_port()
        config = _write_daemon_config(write_config, tmp_path, sim, port)
        child = spawn("-m", "searcherd", "run", "-c", str(config))
        child.wait_for_event("daemon_ready")
        daemon = Daemon(child, config, port)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.close()


# -- tests ------------------------------------------------------------------------------------


def test_notify_ready_reload_and_stop_in_order(
    notify: NotifySocket, start_sim: Callable[..., Sim], start_daemon: Callable[[Sim], Daemon]
) -> None:
    """READY=1 (with STATUS=) once the venue is up, WATCHDOG=1 pings, RELOADING=1 with
    MONOTONIC_USEC then READY=1 around a SIGHUP, and STOPPING=1 on SIGTERM, in that order."""
    sim = start_sim()
    daemon = start_daemon(sim)
    ready = notify.wait_for("READY=1")
    assert _has(notify.received[ready][1], "STATUS=")
    assert "STATUS=venues up 1/1 | bids in flight 0" in notify.received[ready][1]
    notify.wait_for("WATCHDOG=1", after=ready + 1)

    before_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    daemon.child.send_signal(signal.SIGHUP)
    reloading = notify.wait_for("RELOADING=1", after=ready + 1)
    after_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    (usec,) = [f for f in notify.received[reloading][1] if f.startswith("MONOTONIC_USEC=")]
    # The same CLOCK_MONOTONIC as ours: the value falls between our two readings.
    assert before_usec <= int(usec.removeprefix("MONOTONIC_USEC=")) <= after_usec
    reloaded = notify.wait_for("READY=1", after=reloading + 1)
    daemon.child.wait_for_event("reload_done")

    daemon.child.send_signal(signal.SIGTERM)
    stopping = notify.wait_for("STOPPING=1", after=reloaded + 1)
    assert daemon.child.wait() == 0
    notify.sync()  # every datagram the daemon sent is read now
    assert notify.kinds() == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    assert ready < reloading < reloaded < stopping
    assert "Traceback" not in daemon.child.stderr()


def test_stalled_feed_withholds_watchdog_and_fails_health_until_it_recovers(
    notify: NotifySocket, start_sim: Callable[..., Sim], start_daemon: Callable[[Sim], Daemon]
) -> None:
    """A stalled feed: WATCHDOG=1 goes on within the liveness window, then stops; /healthz is
    503 and `searcherd status` exits 3. After the feed resumes: pings again, 200, exit 0."""
    sim = start_sim()
    daemon = start_daemon(sim)
    assert daemon.wait_health(200)["healthy"] is True
    assert daemon.status() == 0
    notify.wait_for("WATCHDOG=1", after=notify.wait_for("READY=1") + 1)

    sim.call("POST", "/stall")
    stalled_at = time.monotonic()
    daemon.child.wait_for_event("watchdog_withheld")
    withheld_at = time.monotonic()
    # Pings went on until the feed had been quiet for the liveness window (chain updates come
    # every 0.1 s, so the last frame was at most that long before the stall).
    assert withheld_at - stalled_at >= _LIVENESS - 0.5
    assert notify.pings_after(stalled_at) >= 1

    body = daemon.wait_health(503)
    assert body["healthy"] is False
    assert body["venues"]["express_relay"]["healthy"] is False
    assert daemon.status() == 3
    # Still withheld: no ping for at least three watchdog intervals (1.5 s) past the withholding
    # (the health checks above usually take that long already; otherwise wait out the rest).
    wait_until(lambda: time.monotonic() > withheld_at + 1.5, "three watchdog intervals", _WAIT)
    assert notify.pings_after(withheld_at) == 0

    mark = len(notify.received)
    sim.call("POST", "/resume")
    notify.wait_for("WATCHDOG=1", after=mark)
    daemon.child.wait_for_event("watchdog_resumed")
    assert daemon.wait_health(200)["venues"]["express_relay"]["healthy"] is True
    assert daemon.status() == 0


def test_health_and_status_follow_a_stopped_simulator_and_a_stopped_daemon(
    start_sim: Callable[..., Sim], start_daemon: Callable[[Sim], Daemon]
) -> None:
    """Simulator stopped: /healthz 503, status 3. Simulator back on the same ports: 200,
    status 0. Daemon stopped: status 4 (nothing answers)."""
    sim = start_sim()
    daemon = start_daemon(sim)
    daemon.wait_health(200)
    assert daemon.status() == 0

    ports = (str(sim.info["ws_port"]), str(sim.info["http_port"]))
    sim.stop()
    body = daemon.wait_health(503)
    assert body["venues"]["express_relay"]["connected"] is False
    assert body["last_error"]
    assert daemon.status() == 3

    again = start_sim("--ws-port", ports[0], "--http-port", ports[1])
    # Same seed, same deployment: the relayer accounts in the daemon's config still hold.
    assert again.info["relayer_signer"] == sim.info["relayer_signer"]
    daemon.wait_health(200)
    assert daemon.status() == 0
    assert daemon.get("/healthz").json()["venues"]["express_relay"]["reconnects"] >= 1

    daemon.child.send_signal(signal.SIGTERM)
    assert daemon.child.wait() == 0
    assert daemon.health_code() is None
    assert daemon.status() == 4


def test_metrics_count_what_the_simulator_sent_and_received(
    start_sim: Callable[..., Sim], start_daemon: Callable[[Sim], Daemon]
) -> None:
    """/metrics parses, every series is `searcherd_...`, and its counters equal the
    simulator's: opportunities pushed = received, bids it accepted = submitted = won."""
    sim = start_sim()
    daemon = start_daemon(sim)
    pushed = 6
    sim.call("POST", f"/push?count={pushed}&program=swap")

    wait_until(lambda: sim.state()["bids"] >= pushed, "the simulator to receive every bid", _WAIT)
    state = wait_until(
        lambda: (s := sim.state())["final"].get("won") == pushed and s,
        "every bid to be won",
        _WAIT,
    )
    metrics = wait_until(
        lambda: (m := daemon.metrics()).get("searcherd_bids_final_total") == pushed and m,
        "the daemon to see every bid won",
        _WAIT,
    )
    assert state["published"] == pushed
    assert state["bids"] == pushed
    assert metrics["searcherd_opportunities_received_total"] == state["published"]
    assert metrics["searcherd_opportunities_evaluated_total"] == pushed
    assert metrics["searcherd_bids_built_total"] == pushed
    assert metrics["searcherd_bids_submitted_total"] == state["bids"]
    assert metrics["searcherd_bids_final_total"] == state["final"]["won"]
    assert metrics["searcherd_bids_in_flight"] == 0
    assert metrics["searcherd_venue_connected"] == 1
    assert metrics.get("searcherd_drops_total", 0) == 0
    assert metrics.get("searcherd_decode_errors_total", 0) == 0
    # The latency histograms saw every bid once.
    assert metrics["searcherd_frame_to_bid_seconds_count"] == pushed
