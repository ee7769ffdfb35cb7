"""The packed escrow timelocks word: seven stage delays plus the deployment time.

Fusion+ packs every escrow deadline into one uint256: eight uint32 values, from the least
significant upwards src withdrawal, src public withdrawal, src cancellation, src public
cancellation, dst withdrawal, dst public withdrawal, dst cancellation, and `deployed_at` in the
top 32 bits. Each stage value is a delay in seconds from `deployed_at`, which is zero in the
order's extension and filled in on-chain when the escrow is deployed (so the immutables in
`secret_shared` carry it). Re-exported from `searcherd.fusion_plus.extension`.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

__all__ = ["TimelockStage", "Timelocks"]

_U32: Final = (1 << 32) - 1


class TimelockStage(enum.IntEnum):
    """A timelock stage; the value is its uint32 slot in the packed word (0 = lowest)."""

    SRC_WITHDRAWAL = 0
    SRC_PUBLIC_WITHDRAWAL = 1
    SRC_CANCELLATION = 2
    SRC_PUBLIC_CANCELLATION = 3
    DST_WITHDRAWAL = 4
    DST_PUBLIC_WITHDRAWAL = 5
    DST_CANCELLATION = 6


def _u32(_inst: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32:
        raise ValueError(f"timelocks {attribute.name}={value!r} is not a uint32")


@attrs.frozen
class Timelocks:
    """Escrow stage delays (seconds after `deployed_at`) and the deployment time.

    Source stages run finality -> private withdrawal -> public withdrawal -> private
    cancellation -> public cancellation; destination stages finality -> private withdrawal ->
    public withdrawal -> private cancellation.
    """

    src_withdrawal: int = attrs.field(validator=_u32)
    src_public_withdrawal: int = attrs.field(validator=_u32)
    src_cancellation: int = attrs.field(validator=_u32)
    src_public_cancellation: int = attrs.field(validator=_u32)
    dst_withdrawal: int = attrs.field(validator=_u32)
    dst_public_withdrawal: int = attrs.field(validator=_u32)
    dst_cancellation: int = attrs.field(validator=_u32)
    deployed_at: int = attrs.field(default=0, validator=_u32)

    @classmethod
    def from_int(cls, value: int) -> Timelocks:
        """Unpack the uint256 word; raises ValueError if it is negative or wider than 256 bits."""
        if value < 0 or value >= 1 << 256:
            raise ValueError(f"timelocks value {value} is not a uint256")
        slots = [(value >> (32 * i)) & _U32 for i in range(8)]
        return cls(*slots)

    def to_int(self) -> int:
        """Pack back into the uint256 word (inverse of `from_int`)."""
        word = self.deployed_at << 224
        for stage in TimelockStage:
            word |= self.delay(stage) << (32 * stage.value)
        return word

    def delay(self, stage: TimelockStage) -> int:
        """The stage's delay in seconds after `deployed_at`."""
        return int(getattr(self, stage.name.lower()))

    def at(self, stage: TimelockStage) -> int:
        """Absolute unix time (seconds) at which `stage` starts: `deployed_at + delay`.

        Only meaningful once `deployed_at` is known (escrow immutables, or `with_deployed_at`).
        """
        return self.deployed_at + self.delay(stage)

    def with_deployed_at(self, deployed_at: int) -> Timelocks:
        """A copy with `deployed_at` set, e.g. to the src escrow's block timestamp."""
        return attrs.evolve(self, deployed_at=deployed_at)
