"""The live set of Express Relay opportunities, per chain.

The server's notion of identity decides what is *new* (worth offering to strategies) and what
is gone:

- the same ``opportunity_id`` pushed again is a refresh, not a new opportunity;
- a limo order that changed (e.g. partially filled) comes back under a new id with the same
  ``order_address``: the newest replaces the old one, like the server's live list;
- ``remove_opportunities`` removes everything under a (chain, router, permission account) key
  (EVM: chain and permission key). Limo opportunities do not carry their router, so the router
  is only compared where we know it (swap opportunities);
- swap quotes are removed silently by the server right after their auction, so they expire
  ``swap_window`` after receipt. Expiry is lazy (checked when the set is read or written), with
  no timer per opportunity.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import attrs

from searcherd.express_relay.messages import (
    EvmOpportunity,
    LimoOpportunity,
    Opportunity,
    OpportunityDelete,
    SwapOpportunity,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LiveOpportunities", "opportunity_kind"]


def opportunity_kind(opp: Opportunity) -> str:
    """``swap``, ``limo`` or ``evm`` (a bounded metric label)."""
    if isinstance(opp, SwapOpportunity):
        return "swap"
    if isinstance(opp, LimoOpportunity):
        return "limo"
    return "evm"


@attrs.define
class _Entry:
    opp: Opportunity
    received_at: float  # trio clock of the latest push (first push for swaps)


def _permission(opp: Opportunity) -> str | bytes:
    if isinstance(opp, SwapOpportunity):
        return opp.permission_account
    if isinstance(opp, LimoOpportunity):
        return opp.order_address
    return opp.permission_key


class LiveOpportunities:
    """Opportunities currently live, newest last; see the module docstring for the rules."""

    def __init__(self, *, swap_window: float, clock: Callable[[], float]) -> None:
        self._swap_window = swap_window
        self._clock = clock
        # chain -> opportunity id -> entry, in arrival order.
        self._chains: dict[str, OrderedDict[str, _Entry]] = {}
        # (chain, order_address) -> newest limo opportunity id.
        self._limo: dict[tuple[str, str], str] = {}
        # Swap ids in arrival order (their expiry order), for lazy expiry.
        self._swaps: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return sum(len(c) for c in self._chains.values())

    def add(self, opp: Opportunity, received_at: float) -> bool:
        """Add or refresh ``opp``; True when it is new (strategies should see it)."""
        self._expire()
        chain = self._chains.get(opp.chain_id)
        if chain is None:  # not setdefault: that would build a throwaway dict per call
            chain = self._chains[opp.chain_id] = OrderedDict()
        entry = chain.get(opp.opportunity_id)
        if entry is not None:
            # A refresh: keep the newest payload, not a new opportunity.
            entry.opp = opp
            if not isinstance(opp, SwapOpportunity):
                entry.received_at = received_at
            return False
        if isinstance(opp, LimoOpportunity):
            key = (opp.chain_id, opp.order_address)
            old = self._limo.get(key)
            if old is not None:
                chain.pop(old, None)
            self._limo[key] = opp.opportunity_id
        elif isinstance(opp, SwapOpportunity):
            self._swaps[(opp.chain_id, opp.opportunity_id)] = received_at + self._swap_window
        chain[opp.opportunity_id] = _Entry(opp, received_at)
        return True

    def get(self, chain_id: str, opportunity_id: str) -> Opportunity | None:
        """One live opportunity, or None (also once a swap's auction window has passed)."""
        self._expire()
        chain = self._chains.get(chain_id)
        entry = chain.get(opportunity_id) if chain is not None else None
        return entry.opp if entry is not None else None

    def remove(self, delete: OpportunityDelete) -> int:
        """Apply a ``remove_opportunities`` push; return how many opportunities went."""
        chain = self._chains.get(delete.chain_id)
        if not chain:
            return 0
        gone = [oid for oid, e in chain.items() if _matches(e.opp, delete)]
        for oid in gone:
            self._drop(delete.chain_id, oid)
        return len(gone)

    def live(self, chain_id: str | None = None) -> list[Opportunity]:
        """Every live opportunity (of one chain), oldest first."""
        self._expire()
        chains = [chain_id] if chain_id is not None else list(self._chains)
        return [e.opp for c in chains if c in self._chains for e in self._chains[c].values()]

    def retain(self, chain_id: str, opportunity_ids: set[str]) -> int:
        """Drop the limo/EVM opportunities of ``chain_id`` not in ``opportunity_ids`` (what the
        server still lists after a reconnect: removals pushed during the outage were lost);
        return how many went. Swap quotes are left to their own expiry."""
        chain = self._chains.get(chain_id)
        if chain is None:
            return 0
        gone = [
            oid
            for oid, e in chain.items()
            if oid not in opportunity_ids and not isinstance(e.opp, SwapOpportunity)
        ]
        for oid in gone:
            self._drop(chain_id, oid)
        return len(gone)

    def clear(self, chain_id: str | None = None) -> None:
        """Forget everything (of one chain)."""
        for c in [chain_id] if chain_id is not None else list(self._chains):
            for oid in list(self._chains.get(c) or ()):
                self._drop(c, oid)

    def _drop(self, chain_id: str, opportunity_id: str) -> None:
        chain = self._chains.get(chain_id)
        entry = chain.pop(opportunity_id, None) if chain is not None else None
        if entry is None:
            return
        opp = entry.opp
        if isinstance(opp, LimoOpportunity):
            key = (chain_id, opp.order_address)
            if self._limo.get(key) == opportunity_id:
                del self._limo[key]
        elif isinstance(opp, SwapOpportunity):
            self._swaps.pop((chain_id, opportunity_id), None)

    def _expire(self) -> None:
        # Swap deadlines are in arrival order (one window for all), so only the head is checked.
        now = self._clock()
        while self._swaps:
            (chain_id, oid), deadline = next(iter(self._swaps.items()))
            if deadline > now:
                break
            self._drop(chain_id, oid)


def _matches(opp: Opportunity, delete: OpportunityDelete) -> bool:
    if delete.chain_type == "evm":
        return isinstance(opp, EvmOpportunity) and opp.permission_key == delete.permission_key
    if isinstance(opp, EvmOpportunity) or _permission(opp) != delete.permission_account:
        return False
    if delete.program is not None and delete.program != opportunity_kind(opp):
        return False
    if isinstance(opp, SwapOpportunity) and delete.router is not None:
        return opp.router_account == delete.router
    return True
