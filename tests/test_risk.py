"""The risk gate: per-strategy rate, in-flight and amount limits, the kill switch and file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from searcherd.config import Amount, Count, LimitsConfig
from searcherd.risk import RiskGate

if TYPE_CHECKING:
    from pathlib import Path


class _Clock:
    """A settable clock (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_is_a_token_bucket_per_strategy() -> None:
    """A burst up to the limit passes, the next is refused, tokens come back with time, and
    one strategy's burst does not spend another's tokens."""
    clock = _Clock()
    gate = RiskGate(LimitsConfig(max_bids_per_second=Count(3)), clock=clock)
    assert [gate.blocked_reason("a", 1) for _ in range(4)] == [None, None, None,
                                                               "max_bids_per_second"]  # fmt: skip
    assert gate.blocked_reason("b", 1) is None
    clock.now = 1 / 3
    assert gate.blocked_reason("a", 1) is None
    assert gate.blocked_reason("a", 1) == "max_bids_per_second"


def test_refund_gives_back_the_token_of_a_bid_never_sent() -> None:
    """A bid that passed the gate but could not be built returns its token."""
    gate = RiskGate(LimitsConfig(max_bids_per_second=Count(1)), clock=_Clock())
    assert gate.blocked_reason("a", 1) is None
    assert gate.blocked_reason("a", 1) == "max_bids_per_second"
    gate.refund("a")
    assert gate.blocked_reason("a", 1) is None


def test_in_flight_and_amount_limits() -> None:
    """In-flight bids count per strategy until settled; an amount over the cap is refused."""
    gate = RiskGate(LimitsConfig(max_in_flight=Count(1), max_amount=Amount(100)), clock=_Clock())
    assert gate.blocked_reason("a", 101) == "max_amount"
    assert gate.blocked_reason("a", 100) is None
    gate.sent("a")
    assert gate.blocked_reason("a", 1) == "max_in_flight"
    assert gate.in_flight() == gate.in_flight("a") == 1
    gate.settled("a")
    assert gate.blocked_reason("a", 1) is None


def test_kill_switch_and_kill_file(tmp_path: Path) -> None:
    """`kill_switch` blocks at once; the kill file blocks once it exists and unblocks once it
    is gone, looked at no more than twice a second (no stat per bid)."""
    assert RiskGate(LimitsConfig(kill_switch=True)).blocked_reason("a", 1) == "kill_switch"
    kill = tmp_path / "stop-bidding"
    clock = _Clock()
    gate = RiskGate(LimitsConfig(kill_file=str(kill), max_bids_per_second=Count(1000)),
                    clock=clock)  # fmt: skip
    assert gate.blocked_reason("a", 1) is None
    kill.touch()
    assert gate.blocked_reason("a", 1) is None  # not looked at again yet
    clock.now = 0.5
    assert gate.blocked_reason("a", 1) == "kill_file"
    kill.unlink()
    clock.now = 1.0
    assert gate.blocked_reason("a", 1) is None
