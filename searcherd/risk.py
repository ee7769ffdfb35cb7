"""The risk gate every bid passes in the submitter, before it is built or sent.

Limits apply per strategy (one runaway strategy cannot starve the others): bids in flight, bids
per second (a token bucket, so a short burst up to the limit is fine) and the largest amount. The
kill switch (`[limits] kill_switch`, or the existence of `kill_file`) blocks every bid; the
file lets an operator stop bidding with `touch` and resume with `rm`, without a reload (it is
looked at every half second, not on every bid).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from searcherd.config import LimitsConfig

__all__ = ["RiskGate"]

_KILL_FILE_EVERY = 0.5  # seconds between looks at the kill file


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


class RiskGate:
    """Decides, per bid, whether it may go; counts bids in flight per strategy."""

    def __init__(
        self, limits: LimitsConfig, *, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._in_flight: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._kill_checked_at = -math.inf
        self._kill_present = False

    def blocked_reason(self, strategy: str, amount: int) -> str | None:
        """Why this bid may not go, or None when it may; takes a rate token when it may."""
        limits = self.limits
        if limits.kill_switch:
            return "kill_switch"
        if limits.kill_file and self._kill_file_present():
            return "kill_file"
        if limits.max_amount and amount > limits.max_amount:
            return "max_amount"
        if amount < 0:
            return "negative_amount"
        if self._in_flight.get(strategy, 0) >= limits.max_in_flight:
            return "max_in_flight"
        now = self._clock()
        rate = float(limits.max_bids_per_second)
        bucket = self._buckets.setdefault(strategy, _Bucket(rate, now))
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return "max_bids_per_second"
        bucket.tokens -= 1.0
        return None

    def refund(self, strategy: str) -> None:
        """Give back the rate token of a bid that passed the gate but was never sent."""
        bucket = self._buckets.get(strategy)
        if bucket is not None:
            bucket.tokens = min(float(self.limits.max_bids_per_second), bucket.tokens + 1.0)

    def _kill_file_present(self) -> bool:
        # A stat per bid is a disk access on the hot path: look at most once per interval.
        now = self._clock()
        if now - self._kill_checked_at >= _KILL_FILE_EVERY:
            self._kill_checked_at = now
            self._kill_present = os.path.exists(self.limits.kill_file)
        return self._kill_present

    def sent(self, strategy: str) -> None:
        """A bid of `strategy` is now in flight."""
        self._in_flight[strategy] = self._in_flight.get(strategy, 0) + 1

    def settled(self, strategy: str) -> None:
        """A bid of `strategy` reached a final status (or will never get one)."""
        self._in_flight[strategy] = max(0, self._in_flight.get(strategy, 0) - 1)

    def in_flight(self, strategy: str | None = None) -> int:
        """Bids in flight for one strategy, or for all."""
        if strategy is not None:
            return self._in_flight.get(strategy, 0)
        return sum(self._in_flight.values())
