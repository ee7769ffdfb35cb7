"""Smoke tests of the benchmarks: they run end to end and print their figures.

Both benchmarks are programs (``python -m benchmarks.tick_to_bid``, ``python -m
benchmarks.decode``) run from the repository root, so they are run here the same way, as
subprocesses, with tiny counts. Nothing is asserted about the timings themselves: they depend on
the machine and on whatever else runs on it.
"""

from __future__ import annotations

import os
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


_BURNER: Final = """
import sys
import time

import trio


def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def busy():
    burn(0.2)


async def light():
    burn(0.02)
    if sys.argv[1:] == ["--fail"]:
        raise RuntimeError("ends by an exception")


async def main():
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, burn, 0.3)  # another thread: not counted
        nursery.start_soon(busy, name="busy")
        nursery.start_soon(light, name="light")


trio.run(main)
"""


def _task_cpu(tmp_path: Path, *module_args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    (tmp_path / "burner.py").write_text(_BURNER)
    out = tmp_path / "cpu.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._taskcpu", "-o", str(out), "-m", "burner",
         *module_args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    return proc, out.read_text() if out.exists() else ""


def _cpu_of(table: str, task: str) -> float:
    row = re.search(rf"^{task}\s+([0-9.]+)\s+([0-9.]+)%\s+[0-9,]+$", table, re.MULTILINE)
    assert row, f"no row for {task}:\n{table}"
    return float(row.group(1))


def test_task_cpu_charges_each_task_its_own_cpu(tmp_path: Path) -> None:
    """The table gives each task the CPU of its own steps, busiest first; work on another thread
    is not the loop's; the module gets its own options after ``-m MODULE``."""
    proc, table = _task_cpu(tmp_path, "--not-for-taskcpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    busy, light = _cpu_of(table, "busy"), _cpu_of(table, "light")
    assert 0.2 <= busy < 0.25, table
    assert 0.02 <= light < 0.07, table
    assert table.index("\nbusy ") < table.index("\nlight "), table
    heading = re.search(r"^event loop thread: ([0-9.]+) s of CPU$", table, re.M)
    assert heading, table
    total = float(heading.group(1))
    assert busy + light <= total < 0.3 + busy, table  # the 0.3 s of the thread is not in it
    assert re.search(r"^\(trio: scheduling, polling for I/O\)\s+[0-9.]+", table, re.M), table


def test_task_cpu_writes_its_table_when_the_program_fails(tmp_path: Path) -> None:
    """A program that ends by an exception (as the floor ends by SIGINT) still gets its table,
    and its exit status is its own."""
    proc, table = _task_cpu(tmp_path, "--fail")
    assert proc.returncode != 0
    assert "ends by an exception" in proc.stderr
    assert _cpu_of(table, "light") >= 0.02, table


def test_tick_to_bid_refuses_two_profilers_at_once(tmp_path: Path) -> None:
    """``--profile`` and ``--task-cpu`` both wrap the clients: together they are refused."""
    proc = _run("benchmarks.tick_to_bid", "--profile", str(tmp_path / "p"),
                "--task-cpu", str(tmp_path / "t"))  # fmt: skip
    assert proc.returncode == 2
    assert "use one at a time" in proc.stderr
