"""Smoke tests of the benchmarks: they run end to end and print their figures.

Both benchmarks are programs (``python -m benchmarks.tick_to_bid``, ``python -m
benchmarks.decode``) run from the repository root, so they are run here the same way, as
subprocesses, with tiny counts. Nothing is asserted about the timings themselves: they depend on
the machine and on whatever else runs on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
_NUMBER: Final = r"[0-9][0-9,]*(?:\.[0-9]+)?"


def _run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_tick_to_bid_measures_floor_and_daemon() -> None:
    """A small run measures both clients twice each, pooled: every opportunity of both runs gets
    its bid, and the report has the latency percentiles, burst throughput, RSS, CPU, ratios and
    one verdict per goal."""
    proc = _run("benchmarks.tick_to_bid", "--opportunities", "300", "--burst", "100",
                "--rate", "500", "--repeat", "2")  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for client in ("floor", "daemon"):
        row = re.search(rf"^{client}\s+({_NUMBER}\s+){{4}}600/600\s+\d+$", out, flags=re.MULTILINE)
        assert row, f"no open-loop row for {client}:\n{out}"
        burst = re.search(rf"^{client}\s+({_NUMBER}\s+){{4}}200/200\s+{_NUMBER}$", out, re.M)
        assert burst, f"no burst row for {client}:\n{out}"
        assert re.search(rf"^{client} RSS: peak {_NUMBER} MB; after 30: ", out, re.M), out
        assert re.search(rf"^{client} CPU while measured: client {_NUMBER} s", out, re.M), out
    assert "2 run(s) per client, samples pooled" in out
    assert re.search(r"^daemon/floor: p50 [0-9.]+x, .*burst bids/s [0-9.]+x", out, re.M), out
    verdicts = re.findall(r"^  (PASS|FAIL|SKIP)  ", out, re.M)
    assert len(verdicts) == 5, out
    # With 300 opportunities the RSS goals cannot be judged and must say so.
    assert out.count("SKIP  ") >= 2
    assert "--opportunities 100000" in out


def test_tick_to_bid_floor_only_skips_the_comparisons() -> None:
    """With only the floor measured, the daemon goals are skipped, not failed."""
    proc = _run("benchmarks.tick_to_bid", "--clients", "floor", "--opportunities", "100",
                "--burst", "0", "--repeat", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^floor\s+.*100/100", proc.stdout, re.M), proc.stdout
    assert "FAIL" not in proc.stdout
    assert proc.stdout.count("SKIP  ") == 5


def test_tick_to_bid_rejects_unknown_client() -> None:
    """A client name that is neither floor nor daemon is a usage error (exit 2), not a run."""
    proc = _run("benchmarks.tick_to_bid", "--clients", "floor,nope", timeout=60)
    assert proc.returncode == 2
    assert "nope" in proc.stderr


def test_decode_prints_a_row_per_message_type() -> None:
    """The decode micro-benchmark prints frames/s for every Express Relay and Fusion+ type."""
    proc = _run("benchmarks.decode", "--iterations", "20", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {
        (m.group(1), m.group(2).strip())
        for m in re.finditer(
            rf"^(express_relay|fusion_plus)\s+(.+?)\s+{_NUMBER}\s+{_NUMBER}\s+\d+$",
            proc.stdout,
            re.M,
        )
    }
    er = {name for venue, name in rows if venue == "express_relay"}
    fp = {name for venue, name in rows if venue == "fusion_plus"}
    assert {"new_opportunity swap", "new_opportunity limo", "new_opportunity evm",
            "svm_chain_update", "bid_status_update", "remove_opportunities svm",
            "response post_bid"} <= er  # fmt: skip
    assert {"order_created", "order_invalid", "order_balance_change", "order_allowance_change",
            "order_filled", "order_filled_partially", "order_cancelled", "secret_shared",
            "rpc ping", "rpc getAllowedMethods", "rpc getSecrets"} <= fp  # fmt: skip
    assert any(name.startswith("rpc getActiveOrders") for name in fp)
