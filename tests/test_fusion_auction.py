"""Tests for `searcherd.fusion_plus.auction`: rate bump, taking amount, expiry, secret index."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from searcherd.fusion_plus.auction import (
    RATE_BUMP_DENOMINATOR,
    MakerTraits,
    auction_end,
    fill_secret_index,
    is_expired,
    order_deadline,
    rate_bump_at,
    taking_amount_at,
)
from searcherd.fusion_plus.extension import AuctionDetails, AuctionPoint, Fees

START = 1767225600
# The reference auction: 180 s, 50000 -> (60 s) 30000 -> (60 s) 10000 -> 0 at the end.
DETAILS = AuctionDetails(
    start_time=START,
    duration=180,
    initial_rate_bump=50000,
    points=(AuctionPoint(30000, 60), AuctionPoint(10000, 60)),
)
# makerTraits of the reference order: multiple fills, post-interaction, extension, expiry.
TRAITS = 33471150795161712739625987854073848363835857078856614580367885933715637927936


@attrs.frozen
class _Order:
    making_amount: int
    taking_amount: int


ORDER = _Order(making_amount=100_000_000, taking_amount=99_000_000)


class TestRateBump:
    def test_worked_example_at_start_plus_90(self) -> None:
        """Halfway between the 30000 and 10000 points the bump is 20000."""
        assert rate_bump_at(DETAILS, START + 90) == 20000

    @pytest.mark.parametrize(
        ("offset", "bump"),
        [
            (-1000, 50000),  # before the start: initial bump
            (0, 50000),  # at the start
            (60, 30000),  # exactly at the first point
            (120, 10000),  # exactly at the second point
            (150, 5000),  # after the last point, falling linearly to 0 at the end
            (180, 0),  # at the end
            (10_000, 0),  # after the end
        ],
    )
    def test_edges_and_points(self, offset: int, bump: int) -> None:
        """Before/at start, at each point, past the last point and after the end."""
        assert rate_bump_at(DETAILS, START + offset) == bump

    def test_interpolation_rounds_down(self) -> None:
        """Between points the contract floors: (1*30000 + 59*50000) / 60 = 49666.67 -> 49666."""
        assert rate_bump_at(DETAILS, START + 1) == 49666

    def test_no_points_falls_linearly_to_zero(self) -> None:
        """Without points the bump falls straight from the initial value to 0."""
        plain = AuctionDetails(start_time=0, duration=100, initial_rate_bump=1000)
        assert [rate_bump_at(plain, t) for t in (0, 25, 50, 99, 100)] == [1000, 750, 500, 10, 0]

    def test_gas_bump_is_subtracted_and_floored_at_zero(self) -> None:
        """gasBump * baseFee / gasPrice / 1e6 comes off the bump; the result never goes below 0."""
        gas = attrs.evolve(DETAILS, gas_bump_estimate=10_000, gas_price_estimate=1000)
        assert rate_bump_at(gas, START, base_fee=2 * 10**9) == 50000 - 20000
        assert rate_bump_at(gas, START, base_fee=10**12) == 0
        assert rate_bump_at(gas, START) == 50000  # no base fee known: no gas component

    def test_auction_end(self) -> None:
        """The auction ends at start + duration."""
        assert auction_end(DETAILS) == START + 180


class TestTakingAmount:
    def test_whole_order_at_start_and_end(self) -> None:
        """At the start the taker owes +0.5 %; at the end exactly the order's taking amount."""
        assert taking_amount_at(ORDER, DETAILS, START) == 99_495_000
        assert taking_amount_at(ORDER, DETAILS, START + 180) == 99_000_000

    def test_partial_fill_is_proportional(self) -> None:
        """A half fill owes half the taking amount, bumped: 49.5e6 * 1.002 at start+90."""
        assert taking_amount_at(ORDER, DETAILS, START + 90, making_amount=50_000_000) == 49_599_000

    def test_rounding_is_up_at_each_step(self) -> None:
        """Proportional share and bump both round up (the taker never underpays)."""
        tiny = _Order(making_amount=3, taking_amount=1)
        flat = AuctionDetails(start_time=0, duration=10, initial_rate_bump=1)
        assert (
            taking_amount_at(tiny, flat, 0, making_amount=1) == 2
        )  # ceil(1/3)=1, then ceil(1.0000001)
        assert taking_amount_at(tiny, flat, 10, making_amount=1) == 1

    def test_fees_are_added_before_the_bump(self) -> None:
        """Integrator + resolver fees (1e5 base) apply first; whitelisted resolvers get the discount."""
        fees = Fees(integrator_fee=500, resolver_fee=1000, whitelist_discount_numerator=50)
        # whitelisted: resolver fee 1000 * 50 / 100 = 500 -> x 1.01, then x 1.005 at start
        assert (
            taking_amount_at(ORDER, DETAILS, START, fees=fees)
            == 99_000_000 * 101 // 100 * 1005 // 1000
        )
        # not whitelisted: the full 1000 -> x 1.015
        assert (
            taking_amount_at(ORDER, DETAILS, START + 180, fees=fees, whitelisted=False)
            == 100_485_000
        )

    def test_bad_amounts_raise(self) -> None:
        """A zero-making order or a negative fill raise ValueError."""
        with pytest.raises(ValueError, match="positive"):
            taking_amount_at(_Order(0, 1), DETAILS, START)
        with pytest.raises(ValueError, match="negative"):
            taking_amount_at(ORDER, DETAILS, START, making_amount=-1)

    @given(
        st.integers(1, 2**128),
        st.integers(0, 2**128),
        st.integers(START - 500, START + 500),
    )
    def test_never_below_the_order_price(self, making: int, taking: int, t: int) -> None:
        """The required amount is at least the order's own taking amount and at most +bump."""
        got = taking_amount_at(_Order(making, taking), DETAILS, t)
        assert (
            taking <= got <= -(-taking * (RATE_BUMP_DENOMINATOR + 50000) // RATE_BUMP_DENOMINATOR)
        )


class TestExpiry:
    def test_reference_traits(self) -> None:
        """The reference order allows multiple and partial fills and has extension + post-call."""
        traits = MakerTraits(TRAITS)
        assert traits.allow_multiple_fills
        assert traits.allow_partial_fills
        assert traits.has_extension
        assert traits.has_post_interaction
        assert not traits.has_pre_interaction
        assert not traits.use_permit2
        assert traits.allowed_sender == traits.nonce_or_epoch == traits.series == 0

    def test_deadline_is_auction_end_plus_12s(self) -> None:
        """The expiration in makerTraits is the auction end + 12 s; expired only strictly after."""
        assert order_deadline(TRAITS) == auction_end(DETAILS) + 12
        assert not is_expired(TRAITS, START + 192)
        assert is_expired(TRAITS, START + 193)

    def test_zero_expiration_never_expires(self) -> None:
        """makerTraits without an expiration give no deadline."""
        assert order_deadline(1 << 249) is None
        assert not is_expired(1 << 249, 2**40)


class TestSecretIndex:
    def test_reference_examples(self) -> None:
        """With 4 secrets: a 50 % fill uses idx 1, a 100 % fill idx 3, the completing half idx 3."""
        assert fill_secret_index(100, 100, 50, 3) == 1
        assert fill_secret_index(100, 100, 100, 3) == 3
        assert fill_secret_index(100, 50, 50, 3) == 3
        assert fill_secret_index(100, 100, 1, 3) == 0

    @pytest.mark.parametrize(("remaining", "fill"), [(100, 0), (50, 60), (101, 1)])
    def test_impossible_fills_raise(self, remaining: int, fill: int) -> None:
        """Empty fills, fills larger than what remains, or remaining > making raise."""
        with pytest.raises(ValueError, match="fill_amount"):
            fill_secret_index(100, remaining, fill, 3)
