"""Tick-to-bid benchmark: from an opportunity frame leaving the server to our bid arriving back.

Run ``python -m benchmarks.tick_to_bid`` (``make bench``). Each client runs ``--repeat`` times
(default 3), the clients taking turns, and its samples are pooled. Each run:

1. a fresh Express Relay simulator starts in its own process (``benchmarks._simproc``), with
   its random opportunity flow off;
2. the client starts in its own process: the **floor** (``benchmarks._floor``: bare
   trio-websocket, receive -> decode -> build/sign -> send, at most 150 bids in flight as the
   server requires) or the **daemon** (``searcherd run``
   with one strategy bidding on every swap, logs at info level to a file, state table on);
3. once the client bids steadily (warm-up), the simulator pushes ``--opportunities`` swap
   opportunities open loop (one every ``1/--rate`` seconds, whatever the client does), then a
   burst of ``--burst`` at once;
4. the simulator times each opportunity from just before it is sent to the moment the
   ``post_bid`` naming it is read off the socket, all with ``perf_counter_ns`` in its own
   process (no clock crosses a process boundary).

It prints p50/p90/p99/max latency per phase (over every pooled sample), burst throughput (bids/s
from the first send to the last bid), each client's peak RSS and the daemon's RSS after 10% of
the opportunities (or after 10,000) and at the end, the daemon/floor ratios, and PASS/FAIL/SKIP
per goal. The RSS goals need ``--opportunities 100000``. Exit code 0 when every requested client
was measured, 1 otherwise; goals never change the exit code (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

from benchmarks._daemon_config import write_daemon_config
from benchmarks._proc import (
    BenchError,
    Child,
    SimProcess,
    cpu_seconds,
    peak_rss_kb,
    python_argv,
    rss_kb,
)
from benchmarks._report import (
    RSS_EARLY_COUNT,
    RSS_GOAL_COUNT,
    ClientRun,
    Phase,
    evaluate_goals,
    format_report,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BenchOptions", "checkpoints", "main", "measure"]

ROOT: Final = Path(__file__).resolve().parent.parent
CLIENTS: Final = ("floor", "daemon")
_CONNECT_TIMEOUT: Final = 60.0
_WARMUP_NEED: Final = 20
_BUSY_LOAD: Final = 0.5  # 1-minute load average above which the report warns


class BenchOptions(argparse.Namespace):
    """Parsed command line (attribute names match the options)."""

    opportunities: int
    burst: int
    rate: float
    clients: list[str]
    seed: int
    keep: bool
    profile: Path | None
    task_cpu: Path | None
    check_bids: bool
    floor_ignores_cap: bool
    repeat: int


def checkpoints(count: int) -> list[int]:
    """Cumulative counts after which the client's RSS is read during the open loop.

    10,000 and the end for long runs (the RSS goal compares the two), else 10% and the end.
    """
    early = RSS_EARLY_COUNT if count >= RSS_GOAL_COUNT else count // 10
    return [c for c in (early, count) if c > 0] if early < count else [count]


def _start_client(name: str, sim: SimProcess, folder: Path, opts: BenchOptions) -> Child:
    log = (folder / f"{name}.log").open("wb")
    profile = opts.profile / f"{name}.prof" if opts.profile else None
    task_cpu = opts.task_cpu / f"{folder.name}.txt" if opts.task_cpu else None  # floor-1.txt, ...
    python = python_argv(profile, task_cpu)
    try:
        if name == "floor":
            argv = [*python, "-m", "benchmarks._floor", "--ws-url", sim.ws_url]
            for key, value in sim.deployment.items():
                argv += [f"--{key.replace('_', '-')}", value]
            if opts.floor_ignores_cap:
                argv.append("--ignore-in-flight-cap")
        else:
            config = write_daemon_config(
                folder, sim.ws_url, sim.http_url, sim.deployment, burst=opts.burst
            )
            argv = [*python, "-m", "searcherd", "run", "-c", str(config)]
        return Child(name, argv, cwd=ROOT, stdout=log, stderr=log)
    finally:
        log.close()  # the child holds its own descriptor


def measure(name: str, opts: BenchOptions, folder: Path) -> ClientRun:
    """Run one client against a fresh simulator and return what was measured."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"simulator-{name}.log").open("wb") as sim_log:
        sim_profile = opts.profile / f"simulator-{name}.prof" if opts.profile else None
        sim = SimProcess(
            seed=opts.seed, stderr=sim_log, profile=sim_profile, check_bids=opts.check_bids
        )
    client: Child | None = None
    try:
        client = _start_client(name, sim, folder, opts)
        sim.command(_CONNECT_TIMEOUT + 10, cmd="wait_client", timeout=_CONNECT_TIMEOUT)
        client.check_alive()
        sim.command(
            _CONNECT_TIMEOUT + 10, cmd="warmup", need=_WARMUP_NEED, timeout=_CONNECT_TIMEOUT
        )
        cpu_start = cpu_seconds(client.pid), cpu_seconds(sim.pid)
        replies = []
        rss_at: dict[int, int] = {}
        done = 0
        interval = 1.0 / opts.rate
        for mark in checkpoints(opts.opportunities):
            count = mark - done
            budget = count * interval * 3 + 60  # the simulator answers after settling
            replies.append(
                sim.command(budget, cmd="open_loop", count=count, interval=interval, settle=5.0)
            )
            client.check_alive()
            done = mark
            rss_at[mark] = rss_kb(client.pid)
        burst = None
        if opts.burst > 0:
            settle = max(10.0, opts.burst * 0.01)
            reply = sim.command(settle + 60, cmd="burst", count=opts.burst, settle=settle)
            client.check_alive()
            burst = Phase.merge([reply])
        cpu = (cpu_seconds(client.pid) - cpu_start[0], cpu_seconds(sim.pid) - cpu_start[1])
        return ClientRun(
            name, Phase.merge(replies), burst, peak_rss_kb(client.pid), rss_at, cpu_s=cpu
        )
    finally:
        if client is not None:
            client.stop()
        sim.quit()


def _parse(argv: Sequence[str] | None) -> BenchOptions:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tick_to_bid", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--opportunities",
        type=int,
        default=5000,
        help="open-loop opportunities (default 5000; 100000 for the RSS goals)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=1000,
        help="opportunities sent at once after the open loop (default 1000; 0 = none)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="open-loop opportunities per second (default 1000)",
    )
    parser.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="comma-separated subset of: floor,daemon (default both)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per client, the clients taking turns; their samples are pooled (default 3: "
        "on a shared machine one run's p99 moves by 2x from noise alone)",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulator seed")
    parser.add_argument(
        "--check-bids",
        action="store_true",
        help="the simulator checks every bid's transaction as the server does "
        "(off by default: same answers for valid bids, ~150 us of simulator CPU each)",
    )
    parser.add_argument(
        "--floor-ignores-cap",
        action="store_true",
        help="let the floor send beyond the server's 150 post_bid in flight per connection "
        "(the simulator tolerates it; the real server stops forwarding the feed at the cap)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run folder (configs, logs, state) and print its path",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every process under cProfile, writing DIR/<process>.prof "
        "(for finding hot spots; the timings themselves are then meaningless)",
    )
    parser.add_argument(
        "--task-cpu",
        type=Path,
        metavar="DIR",
        help="write each client run's event-loop CPU by trio task to DIR/<client>-<run>.txt "
        "(two clock reads a task step: the timings stay meaningful)",
    )
    opts = parser.parse_args(argv, namespace=BenchOptions())
    if opts.profile is not None and opts.task_cpu is not None:
        parser.error("--profile and --task-cpu each wrap the clients: use one at a time")
    for option in ("profile", "task_cpu"):
        where: Path | None = getattr(opts, option)
        if where is not None:
            where.mkdir(parents=True, exist_ok=True)
            setattr(opts, option, where.resolve())
    clients = [c.strip() for c in str(opts.clients).split(",") if c.strip()]
    unknown = sorted(set(clients) - set(CLIENTS))
    if unknown or not clients:
        parser.error(f"--clients: unknown {', '.join(unknown) or '(empty)'}; use floor,daemon")
    if opts.opportunities < 1 or opts.burst < 0 or opts.rate <= 0 or opts.repeat < 1:
        parser.error("--opportunities must be >= 1, --burst >= 0, --rate > 0 and --repeat >= 1")
    opts.clients = clients
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; return the exit code."""
    opts = _parse(argv)
    load_before = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="searcherd-bench-"))
    measured: dict[str, list[ClientRun]] = {name: [] for name in opts.clients}
    failures: list[str] = []
    try:
        # The clients take turns (floor, daemon, floor, ...): a slow spell of the machine then
        # lands on both, not on whichever happened to run during it.
        for turn in range(opts.repeat):
            for name in opts.clients:
                print(f"measuring {name} ({turn + 1}/{opts.repeat}) ...", file=sys.stderr,
                      flush=True)  # fmt: skip
                try:
                    measured[name].append(measure(name, opts, folder / f"{name}-{turn + 1}"))
                except BenchError as exc:
                    where = folder if opts.keep else "use --keep"
                    failures.append(f"{name} run {turn + 1}: {exc} (logs: {where})")
        runs = [ClientRun.pool(r) for r in measured.values() if r]
        by_name = {r.name: r for r in runs}
        header = (
            f"tick-to-bid: {opts.opportunities:,} opportunities open loop at {opts.rate:,.0f}/s, "
            f"burst of {opts.burst:,}; {opts.repeat} run(s) per client, samples pooled; "
            f"{os.cpu_count()} CPUs; latency = opportunity sent -> bid received, on the "
            "simulator's clock"
        )
        if load_before > _BUSY_LOAD:
            header += (
                f"\nwarning: load average was {load_before:.2f} before the run; other work on "
                "this machine skews every figure (rerun on an idle machine)"
            )
        goals = evaluate_goals(by_name.get("floor"), by_name.get("daemon"))
        print(format_report(runs, goals, header=header, failures=failures), flush=True)
    finally:
        if opts.keep:
            print(f"run folder: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
