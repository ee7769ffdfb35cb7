"""Crash recovery: ``searcherd run`` killed with SIGKILL in the middle of bidding, then started
again, finds every bid the auction server accepted, with the server's final status.

The simulator runs in a process of its own (``_er_simproc.py``) so it outlives the daemon, and it
is the judge: its logged-in ``GET /v1/{chain}/bids`` listing is its record of every bid. The
daemon has an API key, so after the restart its reconciler can find the bids that never got
their answer (no server id in the table) in that same listing, by transaction signature.

Real processes mean real time: every wait is for a log line, a listing or a table row, with a
deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import pytest

from searcherd.queries import list_bids

sys.path.insert(0, str(Path(__file__).parent))
from _nothing_lost import assert_state_matches_simulator, compare_state, fetch_record
from _real_time import EVERY_SWAP_STRATEGY, SIM_SCRIPT, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from _nothing_lost import SimBid
    from conftest import Child

_KEY_ENV: Final = "ER_SIM_KEY"
_KEY: Final = "crash-test-key-0123456789"
_WAIT: Final = 30.0  # deadline of any single wait


class _Sim:
    """The simulator process: its URLs and its record."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.info: dict[str, Any] = orjson.loads(child.readline())
        assert self.info["event"] == "ready", self.info

    def record(self) -> dict[str, SimBid]:
        """Every bid it accepted from our key, with its current status."""
        return fetch_record(self.info["http_url"], _KEY)

    def toggle(self, signum: int, event: str, on: bool) -> None:
        """Flip one of its switches by signal and wait until it says it flipped."""
        self.child.send_signal(signum)
        line = orjson.loads(self.child.readline())
        assert line == {"event": event, "on": on}, line

    def all_final(self) -> dict[str, SimBid] | None:
        """Its record once every bid in it is final (None before)."""
        record = self.record()
        return record if all(bid.final for bid in record.values()) else None


def _daemon_config(write_config: Callable[..., Path], tmp_path: Path, sim: _Sim) -> Path:
    strategies = tmp_path / "strategies"
    strategies.mkdir(exist_ok=True)
    (strategies / "every_swap.py").write_text(EVERY_SWAP_STRATEGY, encoding="utf-8")
    info = sim.info
    return write_config(
        daemon={"strategies_dir": "strategies", "shutdown_grace": 1.0},
        log={"format": "json", "level": "debug"},  # for `bid_sent`, a debug line
        limits={"max_in_flight": 10_000, "max_bids_per_second": 10_000},
        evaluator={"max_opportunity_age": 10.0},
        express_relay={
            "enabled": True,
            "ws_url": info["ws_url"],
            "http_url": info["http_url"],
            "api_key": f"env:{_KEY_ENV}",
            "chains": info["chains"],
            "relayer_signer": info["relayer_signer"],
            "fee_receiver_relayer": info["fee_receiver_relayer"],
            "request_timeout": 1.0,
            "backoff_max": 0.5,
            "reconcile_interval": 0.2,
            "swap_auction_window": 5.0,
        },
        strategies={"every_swap": {"enabled": True}},
    )


@pytest.fixture
def sim(spawn: Callable[..., Child], monkeypatch: pytest.MonkeyPatch) -> _Sim:
    """The simulator process, publishing a swap opportunity every 0.1 s."""
    monkeypatch.setenv(_KEY_ENV, _KEY)
    return _Sim(spawn(str(SIM_SCRIPT), "--api-key-env", _KEY_ENV, "--publish-every", "0.1"))


def _sent_rows(state: Path) -> list[dict[str, Any]]:
    """Rows of bids that went on the wire: with a server id, or still waiting for one."""
    return [
        row
        for row in list_bids(state, limit=100_000)
        if row["server_bid_id"] is not None or row["status"] in ("submitting", "unconfirmed")
    ]


def _wait_for_bids_sent(daemon: Child, count: int) -> None:
    for _ in range(count):
        daemon.wait_for_event("bid_sent", timeout=_WAIT)


def test_sigkill_mid_bidding_then_restart_recovers_every_bid(
    sim: _Sim,
    spawn: Callable[..., Child],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """SIGKILL while bids are in flight (accepted, answers held back) and others are still in
    their auctions; after a restart the database opens, every bid the simulator accepted is in
    the state table under its server id, and every one has the simulator's final status."""
    config = _daemon_config(write_config, tmp_path, sim)
    state = tmp_path / "state" / "searcherd.db"
    daemon = spawn("-m", "searcherd", "run", "-c", str(config))
    daemon.wait_for_event("daemon_ready", timeout=_WAIT)
    _wait_for_bids_sent(daemon, 5)
    # From here the simulator accepts bids but never answers them on this connection.
    sim.toggle(signal.SIGUSR1, "held", on=True)
    _wait_for_bids_sent(daemon, 3)
    sim.toggle(signal.SIGUSR2, "quiet", on=True)
    # Every bid the simulator accepted reaches the table before the kill here; a bid sent
    # within the store's last commit window is the case tested below.
    wait_until(
        lambda: len(_sent_rows(state)) >= len(sim.record()) >= 8,
        "the accepted bids in the table",
        _WAIT,
    )
    in_flight = [row for row in list_bids(state, limit=100_000) if row["server_bid_id"] is None]
    assert in_flight, "no bid was awaiting its answer at the kill"
    daemon.proc.kill()
    assert daemon.wait() == -signal.SIGKILL

    sim.toggle(signal.SIGUSR1, "held", on=False)
    restarted = spawn("-m", "searcherd", "run", "-c", str(config))
    restored = restarted.wait_for_event("bids_restored", timeout=_WAIT)
    assert restored["count"] >= len(in_flight)
    restarted.wait_for_event("daemon_ready", timeout=_WAIT)
    final = wait_until(sim.all_final, "every auction to end", _WAIT)

    def agrees() -> bool:
        return compare_state(state, final).ok

    # The last statuses come by the reconciler's polling; wait until the table agrees.
    wait_until(agrees, f"the table to agree: {compare_state(state, final).describe()}", _WAIT)
    diff = assert_state_matches_simulator(state, final)
    assert diff.sim_bids == diff.sim_final >= 8
    assert "reconcile_matched_by_signature" in restarted.events()
    restarted.send_signal(signal.SIGTERM)
    assert restarted.wait() == 0


def test_bid_sent_in_the_last_commit_window_is_recovered(
    sim: _Sim,
    spawn: Callable[..., Child],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> None:
    """A bid whose row was still in the store's queue when the daemon was killed is found
    again after the restart (the commit window is made long here, so the kill lands in it)."""
    config = _daemon_config(write_config, tmp_path, sim)
    text = config.read_text(encoding="utf-8").replace(
        "commit_interval = 0.01", "commit_interval = 60.0\nbatch_max = 100000"
    )
    assert "commit_interval = 60.0" in text
    config.write_text(text, encoding="utf-8")
    daemon = spawn("-m", "searcherd", "run", "-c", str(config))
    daemon.wait_for_event("daemon_ready", timeout=_WAIT)
    _wait_for_bids_sent(daemon, 3)
    sim.toggle(signal.SIGUSR2, "quiet", on=True)
    wait_until(lambda: len(sim.record()) >= 3, "the simulator to accept the bids", _WAIT)
    daemon.proc.kill()
    daemon.wait()
    restarted = spawn("-m", "searcherd", "run", "-c", str(config))
    restarted.wait_for_event("daemon_ready", timeout=_WAIT)
    record = wait_until(sim.all_final, "every auction to end", _WAIT)
    # Ready means the restart's reconciliation has run: whatever it recovers is there now.
    diff = compare_state(tmp_path / "state" / "searcherd.db", record)
    assert not diff.missing, diff.describe()
