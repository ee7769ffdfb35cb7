"""The Express Relay simulator's Solana side: its own deployment and the server's bid checks.

The simulator plays a whole Express Relay deployment: a program id per SVM chain (mainnet's for
``solana``, as the SDK ships them), a relayer signer keypair and a relayer fee receiver. A daemon
configured with these builds bids exactly as it would for mainnet, and :class:`SimSvm` checks
each SVM ``post_bid`` with :func:`searcherd.svm.rules.check_bid_transaction`, the same function
the daemon runs locally, so the error texts are the server's.

The minimum priority fee is the lowest ``latest_prioritization_fee`` the simulator published for
the chain in the last 15 s, as the server takes the minimum of its recent samples: a bid built
from the fee of the previous chain update is not rejected just because a higher one went out
while it was in flight.
"""

from __future__ import annotations

import collections
import hashlib
from typing import TYPE_CHECKING, Final

import attrs
import structlog
import trio
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from searcherd.svm.limo import limo_router
from searcherd.svm.metadata import ExpressRelayConstants
from searcherd.svm.programs import EXPRESS_RELAY_PROGRAM_IDS, MAINNET_PROGRAM_ID
from searcherd.svm.rules import BidRuleError, check_bid_transaction
from searcherd.svm.swap import QuoteError, SwapQuote

from ._sim_codec import opportunity_to_json
from ._sim_state import limo_global_config
from .messages import LimoOpportunity, SwapBidWire, SwapOpportunity

if TYPE_CHECKING:
    from collections.abc import Iterable

    from solders.signature import Signature
    from solders.transaction import VersionedTransaction

    from .messages import OnChainBidWire, Opportunity

__all__ = ["FEE_WINDOW", "SimSvm", "SvmCheck"]

log = structlog.get_logger(__name__)

#: Seconds of published priority fees whose minimum a bid must reach (the server's window).
FEE_WINDOW: Final = 15.0


@attrs.frozen
class SvmCheck:
    """The outcome of checking one SVM bid: the server's error text, or the bid's opportunity.

    ``opportunity`` is the swap opportunity of a swap bid, or the live limo opportunity whose
    order is the on-chain bid's permission account (``None`` when no such order is live).
    """

    error: str | None
    opportunity: Opportunity | None = None


def _seeded_bytes(seed: int, what: str) -> bytes:
    return hashlib.sha256(f"er-sim:{seed}:{what}".encode()).digest()


class SimSvm:
    """The simulated Express Relay deployment on the simulator's SVM chains, and its bid checks.

    Everything derives from the simulator's seed, so one seed gives the same relayer accounts.
    The relayer keypair stays private; only its public key is exposed (and shown in the repr).
    """

    def __init__(self, seed: int, chains: Iterable[str]) -> None:
        self._relayer = Keypair.from_seed(_seeded_bytes(seed, "relayer-signer"))
        #: The relayer signer every bid must list as a signer, its signature left empty.
        self.relayer_signer: Pubkey = self._relayer.pubkey()
        #: The relayer's fee receiver (owner of the relayer fee token accounts of swap bids).
        self.fee_receiver_relayer: Pubkey = Pubkey(_seeded_bytes(seed, "fee-receiver-relayer"))
        #: Express Relay program id per SVM chain; chains the SDK does not know use mainnet's.
        self.program_id: dict[str, Pubkey] = {
            chain: EXPRESS_RELAY_PROGRAM_IDS.get(chain, MAINNET_PROGRAM_ID) for chain in chains
        }
        self._fees: dict[str, collections.deque[tuple[float, int]]] = {
            chain: collections.deque() for chain in self.program_id
        }

    def __repr__(self) -> str:
        return f"<SimSvm relayer_signer={self.relayer_signer} chains={sorted(self.program_id)}>"

    def constants(self, chain_id: str) -> ExpressRelayConstants:
        """What a bid builder needs for ``chain_id`` (program id, relayer signer, fee receiver)."""
        return ExpressRelayConstants(
            self.program_id[chain_id], self.relayer_signer, self.fee_receiver_relayer
        )

    def limo_router(self, chain_id: str) -> Pubkey:
        """The router of limo bids on ``chain_id``: the PDA authority of its Limo global config."""
        return limo_router(limo_global_config(chain_id))

    def relayer_sign(self, message: bytes) -> Signature:
        """Sign ``message`` as the relayer (what the server does before it submits a bid)."""
        return self._relayer.sign_message(message)

    # ------------------------------------------------------------------ priority fees

    def note_fee(self, chain_id: str, fee: int) -> None:
        """Remember a ``latest_prioritization_fee`` just published for ``chain_id``."""
        now = trio.current_time()
        samples = self._fees.setdefault(chain_id, collections.deque())
        samples.append((now, fee))
        self._prune(samples, now)

    def min_priority_fee(self, chain_id: str) -> int:
        """The lowest fee published for ``chain_id`` in the last :data:`FEE_WINDOW` seconds.

        The latest sample always counts, however old (0 before any was published).
        """
        samples = self._fees.get(chain_id)
        if not samples:
            return 0
        self._prune(samples, trio.current_time())
        return min(fee for _, fee in samples)

    @staticmethod
    def _prune(samples: collections.deque[tuple[float, int]], now: float) -> None:
        # Oldest first; never drop the newest sample, it is the chain's current fee.
        while len(samples) > 1 and samples[0][0] < now - FEE_WINDOW:
            samples.popleft()

    # ------------------------------------------------------------------ bid checks

    def check(
        self,
        bid: SwapBidWire | OnChainBidWire,
        tx: VersionedTransaction,
        opportunity: Opportunity | None,
        live: Iterable[Opportunity],
        *,
        now: float,
    ) -> SvmCheck:
        """Check ``tx`` as the server checks a bid of ``bid``'s shape; never raises.

        A swap bid is checked against ``opportunity`` (its swap opportunity, already looked up);
        an on-chain bid as a limo ``submit_bid``, then matched to the ``live`` limo opportunity
        whose order address is its permission account. ``now`` is Unix seconds.
        """
        chain = bid.chain_id
        program_id = self.program_id.get(chain)
        if program_id is None:
            return SvmCheck("The chain id is not found")
        quote: SwapQuote | None = None
        if isinstance(bid, SwapBidWire):
            if not isinstance(opportunity, SwapOpportunity):
                return SvmCheck("No swap opportunity with the given id found")
            try:
                quote = SwapQuote.from_opportunity(opportunity_to_json(opportunity))
            except QuoteError as exc:  # an opportunity a test pushed by hand, malformed
                return SvmCheck(f"Bad parameters: {exc}")
        try:
            checked = check_bid_transaction(
                tx,
                kind="swap" if quote is not None else "limo",
                program_id=program_id,
                relayer_signer=self.relayer_signer,
                min_priority_fee=self.min_priority_fee(chain),
                now=now,
                swap=quote,
            )
        except BidRuleError as exc:
            return SvmCheck(str(exc))
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            # A transaction shape the rules did not foresee: a bad bid, never a simulator crash.
            log.warning("er_sim_svm_check_failed", chain=chain, error=repr(exc))
            return SvmCheck(f"Bad parameters: {exc}")
        if quote is not None:
            return SvmCheck(None, opportunity)
        permission = str(checked.permission)
        match = next(
            (
                o
                for o in live
                if isinstance(o, LimoOpportunity)
                and o.chain_id == chain
                and o.order_address == permission
            ),
            None,
        )
        return SvmCheck(None, match)
