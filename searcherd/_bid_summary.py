"""One info line an interval on the bids, instead of lines per bid.

At a thousand bids a second, lines per bid are thousands of journal entries a second: journald's
default rate limit (10,000 messages in 30 s per service) would drop them, warnings and errors
included, and each line costs the event loop about 10 us. So an Express Relay bid's own lines
(sent, each status, its outcome) are debug lines; the state table keeps every bid and status
(`searcherd bids`); and at info level this line says what the interval brought: per strategy
and venue, bids sent and the final statuses reached (`blocked`, `invalid` and `dry_run` bids
among them; a Fusion+ fill counts as sent). It is read off the counters the metrics keep
anyway, so it costs nothing per bid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import trio

if TYPE_CHECKING:
    from prometheus_client import Counter

    from searcherd.metrics import Metrics

__all__ = ["log_bid_summaries"]

_log = structlog.get_logger(__name__)

Counts = dict[tuple[str, str, str], float]
"""(strategy, venue, what) -> count so far; `what` is ``sent`` or a final status."""


async def log_bid_summaries(metrics: Metrics, every: float) -> None:
    """Log ``bids_summary`` every `every` seconds when bids moved, and once more on the way out
    (cancelled) for the last, shorter interval."""
    previous = _bid_counts(metrics)
    started = trio.current_time()
    try:
        while True:
            await trio.sleep(every)
            previous, started = _log_since(metrics, previous, started), trio.current_time()
    finally:
        _log_since(metrics, previous, started)


def _log_since(metrics: Metrics, previous: Counts, started: float) -> Counts:
    current = _bid_counts(metrics)
    changes = _counts_since(previous, current)
    if changes:
        seconds = round(trio.current_time() - started, 1)
        _log.info("bids_summary", seconds=seconds, bids=changes)
    return current


def _bid_counts(metrics: Metrics) -> Counts:
    """Bids sent and final statuses reached so far, by strategy and venue."""
    counts: Counts = {}
    _read(metrics.bids_submitted, None, counts)
    _read(metrics.bids_final, "status", counts)
    return counts


def _read(counter: Counter, what_label: str | None, into: Counts) -> None:
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):  # not the `_created` timestamps
                labels = sample.labels
                what = labels[what_label] if what_label is not None else "sent"
                into[(labels["strategy"], labels["venue"], what)] = sample.value


def _counts_since(previous: Counts, current: Counts) -> dict[str, dict[str, int]]:
    """What grew from `previous` to `current`, as ``{"strategy/venue": {what: count}}``;
    empty when nothing did."""
    changes: dict[str, dict[str, int]] = {}
    for (strategy, venue, what), value in sorted(current.items()):
        grown = int(value - previous.get((strategy, venue, what), 0.0))
        if grown > 0:
            changes.setdefault(f"{strategy}/{venue}", {})[what] = grown
    return changes
