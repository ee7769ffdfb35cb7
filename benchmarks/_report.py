"""Figures and goals of the tick-to-bid benchmark: percentiles, the table, PASS/FAIL lines.

Latency percentiles are nearest-rank over the matched opportunities of a phase (an opportunity
that never got its bid is reported as missing, not given an invented latency).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "RSS_GOAL_COUNT",
    "ClientRun",
    "Goal",
    "Latency",
    "Phase",
    "evaluate_goals",
    "format_report",
    "percentile",
]

LATENCY_RATIO_GOAL: Final = 1.25  # daemon p50 and p99 at most this times the floor's
THROUGHPUT_RATIO_GOAL: Final = 0.8  # daemon burst bids/s at least this times the floor's
RSS_LIMIT_MB: Final = 100.0
RSS_GROWTH_GOAL: Final = 0.10  # RSS after 100k within 10% of RSS after 10k
RSS_GOAL_COUNT: Final = 100_000
RSS_EARLY_COUNT: Final = 10_000


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@attrs.frozen
class Latency:
    """Latency figures of one phase, in nanoseconds."""

    p50: int
    p90: int
    p99: int
    max: int

    @classmethod
    def of(cls, latencies_ns: Sequence[int]) -> Latency | None:
        """The figures of ``latencies_ns`` (None when there are none)."""
        if not latencies_ns:
            return None
        ordered = sorted(latencies_ns)
        p50, p90, p99 = (percentile(ordered, q) for q in (50, 90, 99))
        return cls(p50, p90, p99, ordered[-1])


@attrs.frozen
class Phase:
    """One phase (open loop or burst) as the simulator measured it."""

    sent: int
    matched: int
    unmatched_bids: int
    latency: Latency | None
    span_ns: int  # first opportunity sent -> last bid received
    latencies_ns: tuple[int, ...] = attrs.field(default=(), repr=False)  # every sample

    @classmethod
    def merge(cls, replies: Sequence[dict[str, Any]]) -> Phase:
        """One phase from the simulator's answers for its segments (or for repeated runs)."""
        latencies = tuple(ns for r in replies for ns in r["latencies_ns"])
        return cls(
            sent=sum(r["sent"] for r in replies),
            matched=sum(r["matched"] for r in replies),
            unmatched_bids=sum(r["unmatched_bids"] for r in replies),
            latency=Latency.of(latencies),
            span_ns=sum(r["span_ns"] for r in replies),
            latencies_ns=latencies,
        )

    def as_reply(self) -> dict[str, Any]:
        """This phase in the simulator's reply shape (to pool repeated runs with `merge`)."""
        return {
            "sent": self.sent,
            "matched": self.matched,
            "unmatched_bids": self.unmatched_bids,
            "span_ns": self.span_ns,
            "latencies_ns": self.latencies_ns,
        }

    @property
    def bids_per_second(self) -> float:
        """Matched bids over the span from first send to last bid (0 when unknown)."""
        return self.matched / (self.span_ns / 1e9) if self.span_ns > 0 else 0.0


@attrs.frozen
class ClientRun:
    """Everything measured for one client (floor or daemon)."""

    name: str
    open_loop: Phase
    burst: Phase | None
    peak_rss_kb: int
    rss_at: dict[int, int]  # opportunities sent so far -> RSS in KiB after them
    cpu_s: tuple[float, float] = (0.0, 0.0)  # CPU seconds of (client, simulator) while measured
    runs: int = 1  # repeated runs pooled into this one

    @classmethod
    def pool(cls, runs: Sequence[ClientRun]) -> ClientRun:
        """Repeated runs of one client as one: every latency sample pooled (quantiles over all
        of them, so one noisy run moves the figures less), bids and spans summed, CPU summed,
        and the memory figures of the run that ended highest (the worst case, not a mix)."""
        worst = max(runs, key=lambda r: max(r.rss_at.values(), default=0))
        bursts = [r.burst for r in runs if r.burst is not None]
        return cls(
            runs[0].name,
            Phase.merge([r.open_loop.as_reply() for r in runs]),
            Phase.merge([b.as_reply() for b in bursts]) if bursts else None,
            max(r.peak_rss_kb for r in runs),
            worst.rss_at,
            cpu_s=(sum(r.cpu_s[0] for r in runs), sum(r.cpu_s[1] for r in runs)),
            runs=sum(r.runs for r in runs),
        )


@attrs.frozen
class Goal:
    """One goal: ``verdict`` is PASS, FAIL or SKIP; ``detail`` gives the figures."""

    name: str
    verdict: str
    detail: str


def _ratio_goal(name: str, daemon: float, floor: float, limit: float, *, most: bool) -> Goal:
    if floor <= 0 or daemon <= 0:
        return Goal(name, "SKIP", "no figure to compare")
    ratio = daemon / floor
    ok = ratio <= limit if most else ratio >= limit
    return Goal(name, "PASS" if ok else "FAIL", f"{ratio:.2f}x")


def evaluate_goals(floor: ClientRun | None, daemon: ClientRun | None) -> list[Goal]:
    """The issue's goals, each PASS, FAIL or SKIP (SKIP says what is missing)."""
    goals: list[Goal] = []
    names = (
        f"p50 latency <= {LATENCY_RATIO_GOAL}x floor",
        f"p99 latency <= {LATENCY_RATIO_GOAL}x floor",
        f"burst throughput >= {THROUGHPUT_RATIO_GOAL}x floor",
    )
    dl = daemon.open_loop.latency if daemon else None
    fl = floor.open_loop.latency if floor else None
    if dl is None or fl is None:
        goals += [Goal(n, "SKIP", "needs both the daemon and the floor") for n in names]
    else:
        goals.append(_ratio_goal(names[0], dl.p50, fl.p50, LATENCY_RATIO_GOAL, most=True))
        goals.append(_ratio_goal(names[1], dl.p99, fl.p99, LATENCY_RATIO_GOAL, most=True))
    if dl is not None and fl is not None:
        assert daemon is not None
        assert floor is not None
        if daemon.burst is None or floor.burst is None:
            goals.append(Goal(names[2], "SKIP", "no burst ran"))
        else:
            dt, ft = daemon.burst.bids_per_second, floor.burst.bids_per_second
            goals.append(_ratio_goal(names[2], dt, ft, THROUGHPUT_RATIO_GOAL, most=False))
    rss_names = (
        f"daemon RSS < {RSS_LIMIT_MB:.0f} MB after {RSS_GOAL_COUNT:,}",
        f"RSS after {RSS_GOAL_COUNT:,} within {RSS_GROWTH_GOAL:.0%} of after {RSS_EARLY_COUNT:,}",
    )
    late = daemon.rss_at.get(RSS_GOAL_COUNT) if daemon else None
    early = daemon.rss_at.get(RSS_EARLY_COUNT) if daemon else None
    if late is None or early is None or not late or not early:
        why = f"run with --opportunities {RSS_GOAL_COUNT}" if daemon else "needs the daemon"
        goals += [Goal(n, "SKIP", why) for n in rss_names]
    else:
        late_mb, early_mb = late / 1024, early / 1024
        goals.append(
            Goal(rss_names[0], "PASS" if late_mb < RSS_LIMIT_MB else "FAIL", f"{late_mb:.1f} MB")
        )
        growth = (late - early) / early
        ok = abs(growth) <= RSS_GROWTH_GOAL
        goals.append(
            Goal(
                rss_names[1],
                "PASS" if ok else "FAIL",
                f"{early_mb:.1f} -> {late_mb:.1f} MB ({growth:+.1%})",
            )
        )
    return goals


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f}"


def _latency_cells(phase: Phase | None) -> list[str]:
    lat = phase.latency if phase else None
    if lat is None:
        return ["-"] * 4
    return [_ms(lat.p50), _ms(lat.p90), _ms(lat.p99), _ms(lat.max)]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]


def format_report(
    runs: Sequence[ClientRun], goals: Sequence[Goal], *, header: str, failures: Sequence[str] = ()
) -> str:
    """The printed report: one table per phase, ratios, RSS, goals, and any failure."""
    lines = [header, ""]
    head = ["open loop", "p50 ms", "p90 ms", "p99 ms", "max ms", "bids/sent", "late bids"]
    rows = [head] + [
        [
            r.name,
            *_latency_cells(r.open_loop),
            f"{r.open_loop.matched}/{r.open_loop.sent}",
            str(r.open_loop.unmatched_bids),
        ]
        for r in runs
    ]
    lines += _table(rows)
    lines.append("")
    head = ["burst", "p50 ms", "p90 ms", "p99 ms", "max ms", "bids/sent", "bids/s"]
    rows = [head]
    for r in runs:
        b = r.burst
        sent = f"{b.matched}/{b.sent}" if b else "-"
        rows.append([r.name, *_latency_cells(b), sent, f"{b.bids_per_second:,.0f}" if b else "-"])
    lines += _table(rows)
    by_name = {r.name: r for r in runs}
    floor, daemon = by_name.get("floor"), by_name.get("daemon")
    if floor and daemon:
        lines.append("")
        lines.append("daemon/floor: " + _ratios(floor, daemon))
    lines.append("")
    for r in runs:
        marks = ", ".join(f"after {n:,}: {kb / 1024:.1f} MB" for n, kb in sorted(r.rss_at.items()))
        lines.append(f"{r.name} RSS: peak {r.peak_rss_kb / 1024:.1f} MB; {marks}")
    for r in runs:
        client, sim = r.cpu_s
        lines.append(f"{r.name} CPU while measured: client {client:.1f} s, simulator {sim:.1f} s")
    lines.append("")
    lines.append("goals:")
    lines += [f"  {g.verdict:4}  {g.name}  ({g.detail})" for g in goals]
    if failures:
        lines.append("")
        lines += [f"error: {f}" for f in failures]
    return "\n".join(lines)


def _ratios(floor: ClientRun, daemon: ClientRun) -> str:
    parts = []
    fl, dl = floor.open_loop.latency, daemon.open_loop.latency
    if fl and dl:
        for label, f, d in (
            ("p50", fl.p50, dl.p50),
            ("p90", fl.p90, dl.p90),
            ("p99", fl.p99, dl.p99),
            ("max", fl.max, dl.max),
        ):
            parts.append(f"{label} {d / f:.2f}x" if f else f"{label} -")
    if floor.burst and daemon.burst and floor.burst.bids_per_second:
        parts.append(
            f"burst bids/s {daemon.burst.bids_per_second / floor.burst.bids_per_second:.2f}x"
        )
    if floor.peak_rss_kb:
        parts.append(f"peak RSS {daemon.peak_rss_kb / floor.peak_rss_kb:.2f}x")
    return ", ".join(parts) if parts else "-"
