"""The packed form of Express Relay bids waiting out a slow status.

After its auction a bid can wait minutes in a slow status: the server ends an unconfirmed bid
with ``expired`` 120-180 s after it came. At a thousand bids a second with one in ten never
confirmed, more than ten thousand wait at once. Each costs about 610 bytes as a
:class:`TrackedBid` in the submitter's two indexes (the object, three id strings, two floats,
an int), and about 220 packed into one ``bytes`` under its server id (measured alone; in the
daemon, allocator slack included, about 860 and 440).

A packed bid keeps what its next status needs: the ids as 16 bytes each, the strategy, chain,
kind and status as indexes into a table of those few names, the two clock values, the flags and
the amount. Measurement stamps (``received_at``, ``sent_at``) are dropped: a bid waiting this
long was measured long ago. A bid that does not pack exactly (an id that is not a canonical
UUID, a status with a reason) stays an object.
"""

from __future__ import annotations

import struct
import uuid
from collections import Counter
from typing import Final

from searcherd.express_relay._tracked import TrackedBid

__all__ = ["SLOW_STATUSES", "ParkedBids"]

SLOW_STATUSES: Final = frozenset({"submitted", "sent_to_user_for_submission", "awaiting_signature"})
"""Statuses a bid can sit in for minutes: the ones packed, and checked over HTTP less often."""

# Local id, opportunity id, created_at, last_change, the name indexes of strategy, chain, kind
# and status, flags. The amount follows, as a signed little-endian integer of any length.
_HEAD: Final = struct.Struct("<16s16sddBBBBB")
_LAST_CHANGE: Final = struct.Struct("<d")
_LAST_CHANGE_AT: Final = struct.calcsize("<16s16sd")  # after the ids and created_at
_STATUS_AT: Final = struct.calcsize("<16s16sddBBB")  # after strategy, chain and kind
_HAS_OPPORTUNITY: Final = 1
_IN_FLIGHT: Final = 2
_RESTORED: Final = 4
_MAX_NAMES: Final = 256  # one byte each; a bid whose name would not fit stays an object


def _uuid_text(raw: bytes) -> str:
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _uuid_bytes(text: str) -> bytes | None:
    """The 16 bytes of a UUID in canonical text (lowercase, hyphenated), else None: only an id
    that unpacks to the very same text is packed."""
    try:
        raw = uuid.UUID(text).bytes
    except ValueError:
        return None
    return raw if _uuid_text(raw) == text else None


class ParkedBids:
    """Packed waiting bids by server id, in the order they were packed.

    That order is last-change order, because the submitter packs a bid right after a status
    set its last change to now; :meth:`idle` stops at the first bid not idle long
    enough. Were it ever broken, a bid's HTTP check would come late, not be lost: a reconnect
    unpacks every bid.
    """

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._names: list[str] = []
        self._name_index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    def pack(self, tb: TrackedBid) -> bool:
        """Keep ``tb`` packed and return True (the caller drops the object), or return False
        when it is not waiting out a slow status or does not pack exactly."""
        server_id = tb.server_bid_id
        if tb.status not in SLOW_STATUSES or server_id is None or tb.reason is not None:
            return False
        local = _uuid_bytes(tb.local_id)
        opportunity = b"" if tb.opportunity_id is None else _uuid_bytes(tb.opportunity_id)
        if local is None or opportunity is None:
            return False
        names = [self._name(name) for name in (tb.strategy, tb.chain_id, tb.kind, tb.status)]
        if None in names:
            return False
        flags = (
            (_HAS_OPPORTUNITY if tb.opportunity_id is not None else 0)
            | (_IN_FLIGHT if tb.in_flight else 0)
            | (_RESTORED if tb.restored else 0)
        )
        amount = tb.amount.to_bytes((tb.amount.bit_length() + 8) // 8, "little", signed=True)
        head = _HEAD.pack(local, opportunity, tb.created_at, tb.last_change, *names, flags)
        self._records[server_id] = head + amount
        return True

    def unpark(self, server_id: str) -> TrackedBid | None:
        """Take the bid with this server id out, as an object again (None if not packed)."""
        record = self._records.pop(server_id, None)
        return None if record is None else self._unpack(server_id, record)

    def idle(self, before: float) -> list[str]:
        """The server ids of the bids whose last change is at or before ``before`` (trio
        clock), oldest first."""
        idle = []
        for server_id, record in self._records.items():
            (last_change,) = _LAST_CHANGE.unpack_from(record, _LAST_CHANGE_AT)
            if last_change > before:
                break
            idle.append(server_id)
        return idle

    def find(self, local_id: str) -> TrackedBid | None:
        """A copy of the packed bid with this local id, left packed (None if there is none).

        A scan, for rare lookups by hand (a cancel); a status pushed for the bid reaches it by
        server id instead.
        """
        needle = _uuid_bytes(local_id)
        if needle is None:
            return None
        for server_id, record in self._records.items():
            if record.startswith(needle):
                return self._unpack(server_id, record)
        return None

    def counts(self) -> Counter[str]:
        """Packed bids per status."""
        names = self._names
        return Counter(names[record[_STATUS_AT]] for record in self._records.values())

    def _name(self, name: str) -> int | None:
        index = self._name_index.get(name)
        if index is None and len(self._names) < _MAX_NAMES:
            index = self._name_index[name] = len(self._names)
            self._names.append(name)
        return index

    def _unpack(self, server_id: str, record: bytes) -> TrackedBid:
        local, opportunity, created_at, last_change, strategy, chain, kind, status, flags = (
            _HEAD.unpack_from(record)
        )
        names = self._names
        return TrackedBid(
            local_id=_uuid_text(local),
            strategy=names[strategy],
            chain_id=names[chain],
            opportunity_id=_uuid_text(opportunity) if flags & _HAS_OPPORTUNITY else None,
            amount=int.from_bytes(record[_HEAD.size :], "little", signed=True),
            kind=names[kind],
            status=names[status],
            created_at=created_at,
            last_change=last_change,
            server_bid_id=server_id,
            in_flight=bool(flags & _IN_FLIGHT),
            restored=bool(flags & _RESTORED),
        )
