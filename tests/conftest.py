"""Shared fixtures for the searcherd test suite.

Keep this file to fixtures more than one test module needs; a fixture used by one module lives
in that module.

- `write_config`: write a `searcher.toml` that runs offline (no venue, no health listener),
  with per-test overrides merged in table by table.
- `offline_config`: that file with no overrides, in the test's `tmp_path`.
- `restore_logging`: put structlog and the stdlib root logger back after the test.
- `log_stream`: structlog configured by `configure_logging` to write JSON lines to a StringIO
  (restored afterwards).
- `spawn`: start a Python subprocess (`Child`) whose output lines are awaited with a deadline,
  never with a sleep; every child is killed at teardown.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import structlog
import tomli_w

from searcherd._logging import configure_logging

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

_OFFLINE: dict[str, dict[str, Any]] = {
    "daemon": {"shutdown_grace": 1.0},
    "state": {"path": "state/searcherd.db", "commit_interval": 0.01},
    "health": {"listen": ""},
    "express_relay": {"enabled": False},
    "fusion_plus": {"enabled": False},
}


def _write_offline_config(path: Path, **tables: dict[str, Any]) -> Path:
    """Write an offline config to `path`; each keyword is a table whose keys override ours."""
    merged: dict[str, Any] = {name: dict(table) for name, table in _OFFLINE.items()}
    for name, table in tables.items():
        merged.setdefault(name, {}).update(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(merged), encoding="utf-8")
    return path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """A function `(**tables) -> Path` writing `tmp_path/searcher.toml` (offline + overrides).

    Call it again to rewrite the same file, e.g. before a SIGHUP.
    """

    def write(**tables: dict[str, Any]) -> Path:
        return _write_offline_config(tmp_path / "searcher.toml", **tables)

    return write


@pytest.fixture
def offline_config(write_config: Callable[..., Path]) -> Path:
    """`tmp_path/searcher.toml`: valid, offline, state under `tmp_path/state/`."""
    return write_config()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put structlog, the root logger and the contextvars back as they were after the test.

    Use it in a test that calls `configure_logging` itself (say, with a fake TTY stream).
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def plain_structlog() -> None:
    """Let `structlog.testing.capture_logs` see every event, whatever other tests configured."""
    structlog.reset_defaults()


@pytest.fixture
def log_stream(restore_logging: None) -> io.StringIO:
    """A StringIO receiving the daemon's JSON log lines at debug level.

    Loggers are not cached (`cache=False`), so module-level loggers already handed out write
    here too. Everything is restored after the test (see `restore_logging`).
    """
    stream = io.StringIO()
    configure_logging("debug", "json", stream, cache=False)
    return stream


_LINE_TIMEOUT = 15.0
"""Seconds a child gets to print its next expected line: generous, yet a hang fails quickly."""


class Child:
    """A Python subprocess whose stdout is read line by line with a deadline.

    A reader thread feeds a queue, so waiting for a line never blocks past its timeout (a
    plain `readline` would block forever on a hung child). stderr goes to a file, so a chatty
    child can never fill a pipe and stall.
    """

    def __init__(self, args: Sequence[str], *, cwd: Path, stderr_path: Path) -> None:
        self._stderr_path = stderr_path
        with stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)  # end of output

    def readline(self, timeout: float = _LINE_TIMEOUT) -> str:
        """The next stdout line; fails the test on timeout or when the child's output ends."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout}s; so far: {self.lines}") from None
        if line is None:
            self._queue.put(None)  # stay at end of output for later calls
            raise AssertionError(
                f"output ended (exit {self.proc.poll()}); so far: {self.lines}; "
                f"stderr: {self.stderr()}"
            )
        self.lines.append(line)
        return line

    def wait_for_event(self, event: str, timeout: float = _LINE_TIMEOUT) -> dict[str, Any]:
        """Read JSON log lines until one has `"event": event`; return it parsed."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.0))
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("event") == event:
                return record

    def events(self) -> list[str]:
        """The `event` of every JSON line read so far, in order."""
        found = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "event" in record:
                found.append(str(record["event"]))
        return found

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the child."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float = _LINE_TIMEOUT) -> int:
        """Wait for the child to exit and for its output to be read; return the exit code."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        # Move the lines nobody waited for into `lines`, so a test can inspect all output.
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.lines.append(line)
        return code

    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        """Kill the child if it still runs and release its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=_LINE_TIMEOUT)
        self._reader.join(timeout=_LINE_TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """A function `(*args) -> Child` running `python *args` in `tmp_path`; all killed after."""
    children: list[Child] = []

    def start(*args: str) -> Child:
        child = Child(args, cwd=tmp_path, stderr_path=tmp_path / f"stderr-{len(children)}.txt")
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


# --------------------------------------------------------------------------------------------
# Express Relay venue harness (tests/test_express_relay_venue.py, _submitter.py, _reconcile.py):
# a real simulator, a real state store in tmp_path and a recording sink.

import attrs  # noqa: E402
import trio  # noqa: E402

from searcherd._secrets import Secret, parse_secret_ref  # noqa: E402
from searcherd.config import ExpressRelayConfig, LimitsConfig  # noqa: E402
from searcherd.express_relay.simulator import (  # noqa: E402
    ExpressRelaySimulator,
    SimulatorConfig,
    serve,
)
from searcherd.express_relay.venue import ExpressRelayVenue  # noqa: E402
from searcherd.metrics import Metrics  # noqa: E402
from searcherd.risk import RiskGate  # noqa: E402
from searcherd.store import StateStore  # noqa: E402
from searcherd.svm import throwaway_keypair  # noqa: E402

if TYPE_CHECKING:
    from searcherd.bids import BidUpdate

ER_API_KEY = "er-test-key-0123456789"


@attrs.define
class RecordingSink:
    """The evaluator's place in tests: records every offer and every bid status change."""

    offers: list[tuple[str, Any, float]] = attrs.field(factory=list)
    updates: list[BidUpdate] = attrs.field(factory=list)

    def offer(self, venue: str, opportunity: Any, received_at: float) -> None:
        """Record an offered opportunity."""
        self.offers.append((venue, opportunity, received_at))

    def bid_status(self, update: BidUpdate) -> None:
        """Record a bid status change."""
        self.updates.append(update)

    def statuses(self, local_id: str | None = None) -> list[str]:
        """Statuses seen (of one bid), in order."""
        return [u.status for u in self.updates if local_id is None or u.local_id == local_id]

    def last(self, local_id: str) -> BidUpdate | None:
        """The latest update of one bid."""
        found = [u for u in self.updates if u.local_id == local_id]
        return found[-1] if found else None


class ErHarness:
    """Starts the simulator, a state store and venues in the test's nursery."""

    def __init__(self, nursery: trio.Nursery, tmp_path: Path) -> None:
        self.nursery = nursery
        self.tmp_path = tmp_path
        self.metrics = Metrics()
        self.sink = RecordingSink()
        self.store = StateStore(tmp_path / "state.db", commit_interval=0.01)
        self.sim: ExpressRelaySimulator | None = None
        self.venue: ExpressRelayVenue | None = None
        self._venue_scope: trio.CancelScope | None = None
        self.signer = throwaway_keypair()

    async def start(self, **sim_options: Any) -> ExpressRelaySimulator:
        """Start the store and the simulator (no generated opportunities unless asked)."""
        await self.nursery.start(self.store.run)
        sim_options.setdefault("opportunity_interval", 0.0)
        self.sim = await self.nursery.start(serve, SimulatorConfig(**sim_options))
        return self.sim

    def config(self, **overrides: Any) -> ExpressRelayConfig:
        """A venue config pointing at the simulator (``api_key=True`` uses the test key)."""
        assert self.sim is not None
        if overrides.get("api_key") is True:
            overrides["api_key"] = Secret(parse_secret_ref("env:ER_KEY"), value=ER_API_KEY)
        values: dict[str, Any] = {
            "ws_url": self.sim.ws_url,
            "http_url": self.sim.http_url,
            "chains": tuple(self.sim.config.svm_chains + self.sim.config.evm_chains),
            # The simulator plays a whole deployment; bids must name its relayer accounts.
            "relayer_signer": str(self.sim.relayer_signer),
            "fee_receiver_relayer": str(self.sim.fee_receiver_relayer),
            "request_timeout": 2.0,
        }
        values.update(overrides)
        return ExpressRelayConfig(**values)

    async def start_venue(
        self,
        *,
        dry_run: bool = False,
        signer: Any = "default",
        limits: LimitsConfig | None = None,
        max_opportunity_age: float = 5.0,
        ready: bool = True,
        **overrides: Any,
    ) -> ExpressRelayVenue:
        """Run a venue (stopping the previous one); wait until it is ready unless told not to."""
        self.stop_venue()
        risk = RiskGate(limits or LimitsConfig())
        self.risk = risk
        venue = ExpressRelayVenue(
            self.config(**overrides),
            store=self.store,
            metrics=self.metrics,
            risk=risk,
            sink=self.sink,
            dry_run=dry_run,
            signer=self.signer if signer == "default" else signer,
            max_opportunity_age=max_opportunity_age,
        )
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await venue.run(task_status=task_status)

        await self.nursery.start(run)
        self.venue, self._venue_scope = venue, scope
        if ready:
            with trio.fail_after(120):
                await venue.wait_ready()
        return venue

    def stop_venue(self) -> None:
        """Cancel the running venue, if any."""
        if self._venue_scope is not None:
            self._venue_scope.cancel()
            self._venue_scope = None

    async def wait_until(self, predicate: Callable[[], bool], limit: float = 600.0) -> None:
        """Poll ``predicate`` on the (autojump) trio clock until it holds (``limit`` seconds)."""
        with trio.fail_after(limit):
            # Polling is the point: the state under test has no event to wait on.
            while not predicate():  # noqa: ASYNC110
                await trio.sleep(0.05)

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Flush the store and run a query on it."""
        await self.store.flush()
        return await self.store.query(lambda c: c.execute(sql, params).fetchall())


@pytest.fixture
def er(nursery: trio.Nursery, tmp_path: Path) -> ErHarness:
    """An Express Relay harness: ``await er.start(...)`` then ``await er.start_venue(...)``."""
    return ErHarness(nursery, tmp_path)
