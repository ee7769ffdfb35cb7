"""A bid the Express Relay submitter follows until it is final, as an object in memory.

Its own module so the packed form of waiting bids (:mod:`._parked`) can build one back without
importing the submitter.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import attrs
import structlog

__all__ = ["VENUE", "TrackedBid"]

_log = structlog.get_logger(__name__)

VENUE: Final = "express_relay"


@attrs.define(eq=False)
class TrackedBid:
    """A bid the submitter follows until it is final (mutable; owned by the submitter)."""

    local_id: str
    strategy: str
    chain_id: str
    opportunity_id: str | None
    amount: int
    kind: str  # "swap", "limo" or "evm"
    status: str
    created_at: float  # wall clock, as in the state table
    last_change: float  # trio clock of the latest status (or of the last HTTP check)
    server_bid_id: str | None = None
    # Only while there is no server id: the reconciler matches id-less bids by signature. The
    # row keeps it for good; an open bid in memory does not need its 137 bytes any longer.
    signature: str | None = None
    result: str | None = None  # of a final status only (see Submitter.set_status)
    reason: str | None = None
    received_at: float | None = None  # trio clock of the opportunity frame (until measured)
    sent_at: float | None = None  # trio clock of the send (until the response is measured)
    in_flight: bool = False  # counted in risk / metrics in-flight
    restored: bool = False  # loaded from the state table of a previous run

    def log(self) -> Any:
        """A logger bound to everything that identifies this bid (one grep follows it)."""
        return _log.bind(
            venue=VENUE,
            chain=self.chain_id,
            strategy=self.strategy,
            opportunity_id=self.opportunity_id,
            bid=self.local_id,
            server_bid_id=self.server_bid_id,
        )

    def debug(self, event: str, **fields: Any) -> None:
        """A debug line about this bid: a bid's own lines are debug lines (the info-level
        summary counts them, searcherd._bid_summary), so this builds nothing unless shown."""
        if _log.is_enabled_for(logging.DEBUG):
            self.log().debug(event, **fields)
