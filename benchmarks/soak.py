"""Soak: the real daemon against a misbehaving auction server, then a count of what was lost.

``python -m benchmarks.soak [--seconds 180] [--rate 5] [--faults-every 10] [--seed 1]`` runs,
all on loopback:

- the Express Relay simulator in its own process (``tests/_er_simproc.py``), publishing swap
  opportunities at ``--rate`` per second and injecting a random fault of the fault matrix about
  every ``--faults-every`` seconds (drops, going-away closes, half-open stalls, restarts on the
  same port, oversized, malformed and unknown frames, unknown statuses, reordered, duplicated
  and late responses, ``id: null`` errors, 401/429 upgrades, status changes while away, the
  1000-events-behind drop);
- ``python -m searcherd run`` with one strategy bidding on every swap opportunity and an API key.

After ``--seconds`` the publishing and the faults stop, every auction is given time to end, and
the daemon's state table is compared with the simulator's record of every bid. It prints the
faults injected, reconnects, bid rows in the state table, bids accepted, bids missing from the
state table, final statuses that disagree with the simulator, and the daemon's RSS at start and
end, and exits 1 when anything is missing or disagrees (or 2 when the run itself broke). It
stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any, Final

import tomli_w

from benchmarks._proc import rss_kb

_ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_ROOT / "tests"))
from _nothing_lost import StateDiff, compare_state, fetch_record  # noqa: E402
from _real_time import EVERY_SWAP_STRATEGY, SIM_SCRIPT  # noqa: E402

_KEY_ENV: Final = "SOAK_ER_KEY"
_REQUEST_TIMEOUT: Final = 2.0
_START_WAIT: Final = 30.0
_SETTLE_WAIT: Final = 180.0  # seconds for every auction to end and the table to agree
_POLL: Final = 0.5


class SoakError(Exception):
    """The soak could not run (a child died or never got ready)."""


class _Lines:
    """A child's stdout read by a thread: every line kept, each JSON one parsed."""

    def __init__(self, stream: IO[str], copy: IO[str] | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self._copy = copy
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if self._copy is not None:
                self._copy.write(line)
                self._copy.flush()
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                self.records.append(record)  # list.append is atomic

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every parsed line whose ``event`` is ``name``, so far."""
        return [r for r in list(self.records) if r.get("event") == name]

    def wait_for(self, name: str, timeout: float, proc: subprocess.Popen[str]) -> dict[str, Any]:
        """The first line with ``event`` ``name``; SoakError if the child dies or is late."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events(name)
            if found:
                return found[0]
            if proc.poll() is not None:
                raise SoakError(f"child exited ({proc.returncode}) before {name!r}")
            time.sleep(0.05)
        raise SoakError(f"no {name!r} within {timeout}s")


def _daemon_config(folder: Path, ready: dict[str, Any]) -> Path:
    strategies = folder / "strategies"
    strategies.mkdir()
    (strategies / "every_swap.py").write_text(EVERY_SWAP_STRATEGY, encoding="utf-8")
    tables = {
        "daemon": {"strategies_dir": "strategies", "shutdown_grace": 2.0},
        "log": {"level": "info", "format": "json"},
        "state": {"path": "state/searcherd.db"},
        "health": {"listen": ""},
        "limits": {"max_in_flight": 100_000, "max_bids_per_second": 100_000},
        "evaluator": {"max_opportunity_age": 10.0},
        "express_relay": {
            "enabled": True,
            "ws_url": ready["ws_url"],
            "http_url": ready["http_url"],
            "api_key": f"env:{_KEY_ENV}",
            "chains": ready["chains"],
            "relayer_signer": ready["relayer_signer"],
            "fee_receiver_relayer": ready["fee_receiver_relayer"],
            "request_timeout": _REQUEST_TIMEOUT,
            "backoff_max": 5.0,
            "liveness_window": 10.0,
            "ping_interval": 3.0,
            "ping_timeout": 2.0,
            "reconcile_interval": 0.5,
            "swap_auction_window": 5.0,
        },
        "fusion_plus": {"enabled": False},
        "strategies": {"every_swap": {"enabled": True}},
    }
    path = folder / "searcher.toml"
    path.write_text(tomli_w.dumps(tables), encoding="utf-8")
    return path


def _stop(proc: subprocess.Popen[str], signum: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=15)


def _check_alive(**children: subprocess.Popen[str]) -> None:
    for name, child in children.items():
        if child.poll() is not None:
            raise SoakError(f"the {name} exited during the soak (exit {child.returncode})")


def soak(seconds: float, rate: float, faults_every: float, seed: int) -> int:
    """Run one soak (see the module docstring); return the exit code."""
    key = secrets.token_hex(16)
    env = {**os.environ, _KEY_ENV: key}
    with tempfile.TemporaryDirectory(prefix="searcherd-soak-") as tmp:
        folder = Path(tmp)
        sim = subprocess.Popen(
            [sys.executable, str(SIM_SCRIPT), "--api-key-env", _KEY_ENV, "--seed", str(seed),
             "--fault-seed", str(seed), "--publish-every", str(1.0 / rate),
             "--faults-every", str(faults_every), "--request-timeout", str(_REQUEST_TIMEOUT)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        daemon: subprocess.Popen[str] | None = None
        try:
            assert sim.stdout is not None
            sim_lines = _Lines(sim.stdout)
            ready = sim_lines.wait_for("ready", _START_WAIT, sim)
            config = _daemon_config(folder, ready)
            with (folder / "daemon.log").open("w", encoding="utf-8") as log:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "searcherd", "run", "-c", str(config)],
                    cwd=folder, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                )  # fmt: skip
                assert daemon.stdout is not None
                lines = _Lines(daemon.stdout, log)
                lines.wait_for("daemon_ready", _START_WAIT, daemon)
                rss_start = rss_kb(daemon.pid)
                print(f"soak: {seconds:g} s, {rate:g} opportunities/s, a fault every "
                      f"~{faults_every:g} s, seed {seed}", flush=True)  # fmt: skip
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    _check_alive(daemon=daemon, simulator=sim)
                    time.sleep(_POLL)
                rss_end = rss_kb(daemon.pid)
                sim.send_signal(signal.SIGUSR2)  # quiet: no more opportunities, no more faults
                sim_lines.wait_for("quiet", _START_WAIT, sim)
                state = folder / "state" / "searcherd.db"
                frozen = {i for f in sim_lines.events("fault") for i in f.get("frozen", ())}
                diff = _settle(ready["http_url"], key, state, frozen)
                code = _stop(daemon)
        except SoakError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
        finally:
            if daemon is not None:
                _stop(daemon, signal.SIGKILL)
            _stop(sim)
    faults = Counter(f["name"] for f in sim_lines.events("fault"))
    ready_links = len(lines.events("connection_ready"))
    figures = {
        "faults injected": sum(faults.values()),
        "reconnects": max(0, ready_links - 1),
        "bid rows in the state table": diff.table_rows,
        "bids accepted": diff.sim_bids,
        "bids missing from the state table": len(diff.missing),
        "statuses that disagree with the simulator": len(diff.disagree),
        "server ids the simulator never gave": len(diff.invented),
        "daemon RSS at start (KiB)": rss_start,
        "daemon RSS at end (KiB)": rss_end,
        "daemon exit code": code,
    }
    for name, value in figures.items():
        print(f"{name:>42}: {value}")
    for name, count in sorted(faults.items()):
        print(f"{'fault ' + name:>42}: {count}")
    if not diff.ok:
        print(f"soak: FAILED: {diff.describe()}", file=sys.stderr)
        return 1
    print("soak: nothing lost")
    return 0


def _settle(http_url: str, key: str, state: Path, frozen: set[str]) -> StateDiff:
    """Wait until every auction ended (but the ``frozen`` ones a restart left open for good)
    and the table agrees with the simulator; return the last comparison either way."""
    deadline = time.monotonic() + _SETTLE_WAIT
    while True:
        record = fetch_record(http_url, key)
        diff = compare_state(state, record)
        ended = all(bid.final or bid.bid_id in frozen for bid in record.values())
        if (ended and diff.ok) or time.monotonic() > deadline:
            return diff
        time.sleep(_POLL)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m benchmarks.soak``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the faulty run")
    parser.add_argument("--rate", type=float, default=5.0, help="swap opportunities per second")
    parser.add_argument(
        "--faults-every", type=float, default=10.0, help="mean seconds between faults"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.faults_every <= 0:
        parser.error("--seconds, --rate and --faults-every must be positive")
    sys.exit(soak(args.seconds, args.rate, args.faults_every, args.seed))


if __name__ == "__main__":
    main()
