"""Tests for searcherd._backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from searcherd._backoff import Backoff


class _FixedRandom(random.Random):
    """A Random whose random() always returns one value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self._value = value

    def random(self) -> float:
        return self._value


def test_cap_grows_exponentially_then_stops_at_maximum() -> None:
    """The cap doubles from initial per attempt and never exceeds maximum."""
    backoff = Backoff(0.5, 30.0)
    assert [backoff.cap(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_cap_survives_huge_attempt_numbers() -> None:
    """An attempt count far past float range still yields the maximum, not OverflowError."""
    assert Backoff(0.5, 30.0).cap(100_000) == 30.0


def test_delay_is_full_jitter_of_the_cap() -> None:
    """delay() scales the cap by the injected random draw."""
    assert Backoff(1.0, 10.0, rng=_FixedRandom(0.25)).delay(2) == 1.0
    assert Backoff(1.0, 10.0, rng=_FixedRandom(0.0)).delay(5) == 0.0


@given(
    initial=st.floats(0.001, 100),
    extra=st.floats(0, 1000),
    factor=st.floats(1, 10),
    attempt=st.integers(0, 5000),
    seed=st.integers(0, 2**32),
)
def test_delay_always_within_zero_and_cap(
    initial: float, extra: float, factor: float, attempt: int, seed: int
) -> None:
    """For any valid parameters the delay lies in [0, cap] and the cap in (0, maximum]."""
    backoff = Backoff(initial, initial + extra, factor, rng=random.Random(seed))
    cap = backoff.cap(attempt)
    assert 0 < cap <= backoff.maximum
    assert 0 <= backoff.delay(attempt) <= cap
    assert backoff.cap(attempt + 1) >= cap


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0.0, "maximum": 1.0}, "initial"),
        ({"initial": 1.0, "maximum": float("inf")}, "maximum"),
        ({"initial": 2.0, "maximum": 1.0}, "must not be smaller"),
        ({"initial": 1.0, "maximum": 2.0, "factor": 0.5}, "factor"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float], message: str) -> None:
    """Bad parameters raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_negative_attempt_is_rejected() -> None:
    """A negative attempt number is a caller bug and raises ValueError."""
    with pytest.raises(ValueError, match="attempt"):
        Backoff(1.0, 2.0).delay(-1)


def test_repr_omits_the_random_source() -> None:
    """The repr shows the parameters only."""
    assert repr(Backoff(1.0, 2.0)) == "Backoff(initial=1.0, maximum=2.0, factor=2.0)"
