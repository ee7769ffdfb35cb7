"""Capped exponential backoff with full jitter.

Reconnect loops wait ``Backoff.delay(attempt)`` seconds before attempt ``attempt + 1``. The delay
is drawn uniformly from ``[0, min(maximum, initial * factor**attempt)]`` (the "full jitter" form):
many clients that lost the same server at the same moment spread their reconnects out instead of
arriving in waves, and the cap keeps a long outage from growing the wait without bound.

The random source is injectable so that tests can pin the draw.
"""

from __future__ import annotations

import math
import random

import attrs

__all__ = ["Backoff"]


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


@attrs.frozen
class Backoff:
    """Delays for a retry loop: capped exponential growth with full jitter.

    Why full jitter: it is the variant that spreads a herd of reconnecting clients best, and it
    still never waits longer than the cap. The caller owns the attempt counter, so it decides
    when a retry has "succeeded" enough to start over at attempt 0.
    """

    initial: float = attrs.field(validator=_positive)
    maximum: float = attrs.field(validator=_positive)
    factor: float = attrs.field(default=2.0)
    rng: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    @factor.validator
    def _check_factor(self, _attribute: attrs.Attribute[float], value: float) -> None:
        if not (math.isfinite(value) and value >= 1):
            raise ValueError(f"factor must be a finite number >= 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(
                f"maximum ({self.maximum!r}) must not be smaller than initial ({self.initial!r})"
            )

    def cap(self, attempt: int) -> float:
        """Return the upper bound of the delay for ``attempt`` (0-based): never above ``maximum``.

        Raises ValueError for a negative attempt.
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        try:
            grown = self.initial * self.factor**attempt
        except OverflowError:
            # factor**attempt outgrows a float long after the cap was reached.
            return self.maximum
        return min(self.maximum, grown)

    def delay(self, attempt: int) -> float:
        """Return a random delay in ``[0, cap(attempt)]`` seconds (full jitter).

        Raises ValueError for a negative attempt.
        """
        return self.rng.random() * self.cap(attempt)
