"""Prometheus metrics: every series is named `searcherd_...`.

One `Metrics` object per daemon, on its own registry (tests run several daemons in one process).
The funnel reads top to bottom: opportunities received -> evaluated -> bids built -> submitted ->
final statuses, with drops by reason beside it. Label values are bounded sets (venue, chain,
strategy, status, reason), never ids.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

# Latency buckets from 50 µs to 5 s: the hot path is sub-millisecond, the venue is not.
_LATENCY = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
            1.0, 2.5, 5.0)  # fmt: skip


class Metrics:
    """The daemon's instruments, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[Any, ...], Any] = {}
        r = self.registry
        self.opportunities_received = Counter(
            "searcherd_opportunities_received",
            "Opportunities decoded from a venue feed.",
            ["venue", "chain", "kind"],
            registry=r,
        )
        self.opportunities_evaluated = Counter(
            "searcherd_opportunities_evaluated",
            "Opportunities a strategy was called with.",
            ["strategy"],
            registry=r,
        )
        self.bids_built = Counter(
            "searcherd_bids_built",
            "Bid intents returned by strategies.",
            ["strategy", "venue"],
            registry=r,
        )
        self.bids_submitted = Counter(
            "searcherd_bids_submitted", "Bids sent to a venue.", ["strategy", "venue"], registry=r
        )
        self.bids_final = Counter(
            "searcherd_bids_final",
            "Bids that reached a final status, by status.",
            ["strategy", "venue", "status"],
            registry=r,
        )
        self.bids_in_flight = Gauge(
            "searcherd_bids_in_flight", "Bids sent and not final yet.", ["venue"], registry=r
        )
        self.drops = Counter(
            "searcherd_drops",
            "Opportunities or bids dropped, by reason.",
            ["venue", "strategy", "reason"],
            registry=r,
        )
        self.risk_blocked = Counter(
            "searcherd_risk_blocked",
            "Bids refused by the risk gate, by limit.",
            ["strategy", "reason"],
            registry=r,
        )
        self.decode_errors = Counter(
            "searcherd_decode_errors",
            "Frames that could not be decoded, by kind.",
            ["venue", "kind"],
            registry=r,
        )
        self.unknown_messages = Counter(
            "searcherd_unknown_messages",
            "Messages of an unknown type, status, program or version (logged, skipped).",
            ["venue", "kind"],
            registry=r,
        )
        self.status_anomalies = Counter(
            "searcherd_status_anomalies",
            "Status updates after a final status (kept, not applied).",
            ["venue"],
            registry=r,
        )
        self.reconnects = Counter(
            "searcherd_reconnects", "Venue connections re-established.", ["venue"], registry=r
        )
        self.venue_connected = Gauge(
            "searcherd_venue_connected",
            "1 while the venue feed is connected and set up.",
            ["venue"],
            registry=r,
        )
        self.strategy_errors = Counter(
            "searcherd_strategy_errors", "Strategy calls that raised.", ["strategy"], registry=r
        )
        self.strategy_timeouts = Counter(
            "searcherd_strategy_timeouts",
            "Strategy calls cancelled at their deadline.",
            ["strategy"],
            registry=r,
        )
        self.strategy_quarantined = Gauge(
            "searcherd_strategy_quarantined",
            "1 while a strategy is quarantined.",
            ["strategy"],
            registry=r,
        )
        self.frame_to_bid = Histogram(
            "searcherd_frame_to_bid_seconds",
            "From an opportunity frame's arrival to its bid leaving.",
            ["venue"],
            buckets=_LATENCY,
            registry=r,
        )
        self.bid_response = Histogram(
            "searcherd_bid_response_seconds",
            "From a bid leaving to the venue's answer.",
            ["venue"],
            buckets=_LATENCY,
            registry=r,
        )
        self.fusion_orders = Gauge(
            "searcherd_fusion_orders",
            "Fusion+ orders in the book, by status.",
            ["status"],
            registry=r,
        )
        self.fusion_window_alarms = Counter(
            "searcherd_fusion_window_alarms",
            "Alarms: a private window of one of our fills is about to close.",
            ["window"],
            registry=r,
        )

    def child(self, metric: Counter, *labels: str) -> Counter:
        """`metric.labels(*labels)`, bound once and then reused.

        For the per-bid and per-frame paths: `.labels()` takes a lock and a lookup on every call.
        Label values are bounded sets (see the module docstring), so neither is this cache.
        """
        key = (metric, *labels)
        found: Counter | None = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
