"""Tests for searcherd._bid_summary: one info line an interval sums up the bids, read off the
metrics, and nothing the interval brought is left out."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from searcherd._bid_summary import log_bid_summaries
from searcherd.metrics import Metrics

EVERY = 60.0

pytestmark = pytest.mark.usefixtures("plain_structlog")


def _bid(metrics: Metrics, strategy: str, venue: str, final: str | None = None) -> None:
    """Count a bid as the venues do: sent, and then (if given) its final status."""
    metrics.bids_submitted.labels(strategy, venue).inc()
    if final is not None:
        metrics.bids_final.labels(strategy, venue, final).inc()


async def test_each_interval_logs_what_it_brought_and_a_quiet_one_logs_nothing(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Counts from before the start are not reported; each line has only its own interval's
    bids, by strategy and venue; an interval without bids writes no line."""
    metrics = Metrics()
    _bid(metrics, "old", "express_relay", "won")  # before the start: not news
    with capture_logs() as logs:
        nursery.start_soon(log_bid_summaries, metrics, EVERY)
        await trio.sleep(1)
        for _ in range(3):
            _bid(metrics, "margin", "express_relay", "lost")
        _bid(metrics, "margin", "express_relay")  # sent, not final yet
        metrics.bids_final.labels("margin", "express_relay", "blocked").inc()  # never sent
        _bid(metrics, "fills", "fusion_plus", "won")
        await trio.sleep(EVERY)  # first line at 60 s
        await trio.sleep(EVERY)  # nothing happened: no line at 120 s
        _bid(metrics, "margin", "express_relay", "won")
        await trio.sleep(EVERY)  # second line at 180 s
    summaries = [log for log in logs if log["event"] == "bids_summary"]
    assert [(s["log_level"], s["seconds"]) for s in summaries] == [("info", EVERY), ("info", EVERY)]
    assert summaries[0]["bids"] == {
        "fills/fusion_plus": {"sent": 1, "won": 1},
        "margin/express_relay": {"blocked": 1, "lost": 3, "sent": 4},
    }
    assert summaries[1]["bids"] == {"margin/express_relay": {"sent": 1, "won": 1}}


async def test_stopping_logs_the_last_short_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelled mid-interval (the daemon stopping), it still reports what that part brought."""
    metrics = Metrics()
    with capture_logs() as logs:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log_bid_summaries, metrics, EVERY)
            await trio.sleep(10)
            _bid(metrics, "margin", "express_relay", "won")
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    (summary,) = [log for log in logs if log["event"] == "bids_summary"]
    assert summary["seconds"] == 15.0
    assert summary["bids"] == {"margin/express_relay": {"sent": 1, "won": 1}}
