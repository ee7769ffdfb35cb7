"""Turn a strategy's bid intent into the wire bid the auction server takes.

SVM intents (`SwapBid`, `LimoBid`) become partially signed Solana transactions, built with the
svm package's builders from the chain's latest blockhash and priority fee and the Express Relay
constants (relayer signer, fee receiver) of the chain's program. EVM intents (`EvmBid`) become
raw bids directly. Anything that cannot be built raises :class:`BuildError` with a reason meant
for the `invalid` row of the state table; the builders also run the server's own rules, so a
bid the server would refuse fails here first, with the server's wording.
"""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Any

import attrs
import structlog
import trio
from solders.hash import Hash
from solders.pubkey import Pubkey

from searcherd.bids import EvmBid, LimoBid, SwapBid
from searcherd.express_relay.messages import EvmBidWire, OnChainBidWire, SwapBidWire, WireBid
from searcherd.svm import (
    BidRuleError,
    LimoBidParams,
    MetadataError,
    OrderDecodeError,
    QuoteError,
    SwapBidParams,
    SwapQuote,
    build_limo_bid_transaction,
    build_swap_bid_transaction,
    decode_order,
    decode_transaction,
    encode_transaction,
    limo_router,
)
from searcherd.svm.evm import EvmBidError, check_address, check_amount
from searcherd.svm.metadata import ExpressRelayConstants, ExpressRelayConstantsProvider
from searcherd.svm.programs import program_id_for_chain

if TYPE_CHECKING:
    import httpx
    from solders.transaction import VersionedTransaction

    from searcherd.config import ExpressRelayConfig
    from searcherd.express_relay.messages import SwapOpportunity
    from searcherd.strategy import ChainState
    from searcherd.svm.keys import Signer

__all__ = [
    "BuildError",
    "BuiltBid",
    "ConstantsCache",
    "build_wire_bid",
    "signature_of_transaction",
]

_log = structlog.get_logger(__name__)

#: Default lifetime of a limo bid (Unix seconds from now) when the intent names no deadline.
_LIMO_DEFAULT_LIFETIME = 30
_METADATA_RETRY = 30.0  # seconds between attempts to read the metadata account


class BuildError(Exception):
    """The intent cannot become a valid wire bid; the message is the `invalid` reason."""


@attrs.frozen
class BuiltBid:
    """A wire bid plus what the state table keeps to recognise it after a crash.

    ``signature`` is the transaction's first (fee payer) signature for SVM bids.
    """

    wire: WireBid
    kind: str  # "swap", "limo" or "evm"
    signature: str | None
    detail: dict[str, Any]


class ConstantsCache:
    """Express Relay constants (program id, relayer signer, fee receiver) per SVM chain.

    Configured pubkeys are used as they are; otherwise the metadata account is read once over
    the Solana RPC (``prefetch`` runs that in the background and retries). Building never
    waits: until the constants are known, an SVM bid is `invalid` with the reason.
    """

    def __init__(self, config: ExpressRelayConfig, http: httpx.AsyncClient | None) -> None:
        self._config = config
        self._http = http
        self._providers: dict[Pubkey, ExpressRelayConstantsProvider] = {}
        self._errors: dict[Pubkey, str] = {}
        self._program_ids: dict[str, Pubkey] = {}  # chain id -> program id, once resolved

    def _program_id(self, chain_id: str) -> Pubkey:
        found = self._program_ids.get(chain_id)
        if found is not None:
            return found
        configured = self._config.program_id
        try:
            found = Pubkey.from_string(configured) if configured else program_id_for_chain(chain_id)
        except ValueError as exc:
            text = f"program_id {configured!r} is not a public key" if configured else str(exc)
            raise BuildError(text) from None
        # Only chains that resolved are kept, so a bad chain id costs no memory per bid.
        self._program_ids[chain_id] = found
        return found

    def _provider(self, program_id: Pubkey) -> ExpressRelayConstantsProvider | None:
        provider = self._providers.get(program_id)
        if provider is not None or program_id in self._errors:
            return provider
        cfg = self._config
        values = {
            name: value
            for name, value in (
                ("relayer_signer", cfg.relayer_signer),
                ("fee_receiver_relayer", cfg.fee_receiver_relayer),
                ("rpc_url", cfg.solana_rpc_url),
            )
            if value
        }
        try:
            provider = ExpressRelayConstantsProvider.from_mapping(
                values, program_id=program_id, http_client=self._http
            )
        except MetadataError as exc:
            self._errors[program_id] = str(exc)
            return None
        self._providers[program_id] = provider
        return provider

    def get(self, chain_id: str) -> ExpressRelayConstants:
        """The constants of ``chain_id`` if known now; raise :class:`BuildError` otherwise."""
        program_id = self._program_id(chain_id)
        provider = self._provider(program_id)
        if provider is None:
            raise BuildError(f"Express Relay constants unknown: {self._errors[program_id]}")
        cached = provider.cached
        if cached is None:
            raise BuildError("Express Relay metadata not loaded yet (solana_rpc_url)")
        return cached

    async def prefetch(self, chain_ids: tuple[str, ...]) -> None:
        """Load the constants of every chain that needs an RPC read; retry until all loaded."""
        for chain_id in chain_ids:
            try:
                provider = self._provider(self._program_id(chain_id))
            except BuildError:
                continue  # not an SVM chain we know: its bids say why when built
            while provider is not None and provider.cached is None:
                try:
                    await provider.get()
                except MetadataError as exc:
                    _log.warning("express_relay_metadata_failed", chain=chain_id, error=str(exc))
                    await trio.sleep(_METADATA_RETRY)


def _swap_quote(opp: SwapOpportunity) -> SwapQuote:
    # Only the fields `SwapQuote.from_opportunity` reads, so its checks and messages apply
    # unchanged; a full `attrs.asdict` of the opportunity cost more than the rest of this.
    tokens = attrs.asdict(opp.tokens, recurse=False)
    tokens["side_specified"] = opp.tokens.SIDE
    mapping = {
        "opportunity_id": opp.opportunity_id,
        "user_wallet_address": opp.user_wallet_address,
        "router_account": opp.router_account,
        "tokens": tokens,
        "fee_token": opp.fee_token,
        "token_account_initialization_configs": attrs.asdict(
            opp.token_account_initialization_configs, recurse=False
        ),
        "memo": opp.memo,
        "referral_fee_ppm": opp.referral_fee_ppm,
        "platform_fee_ppm": opp.platform_fee_ppm,
        "user_mint_user_balance": opp.user_mint_user_balance,
        "minimum_deadline": opp.minimum_deadline,
    }
    return SwapQuote.from_opportunity(mapping)


def _svm_inputs(
    chain: ChainState | None, signer: Signer | None, chain_id: str
) -> tuple[Signer, Hash, int]:
    if signer is None:
        raise BuildError("no signing key configured (express_relay.signing_key)")
    if chain is None:
        raise BuildError(f"no blockhash yet for chain {chain_id} (no svm_chain_update received)")
    try:
        blockhash = Hash.from_string(chain.blockhash)
    except ValueError:
        raise BuildError(f"chain {chain_id} sent an invalid blockhash") from None
    return signer, blockhash, chain.latest_prioritization_fee


def _signed(tx: VersionedTransaction, kind: str, deadline: int) -> tuple[str, str, dict[str, Any]]:
    signature = str(tx.signatures[0])
    return (
        encode_transaction(tx),
        signature,
        {"kind": kind, "signature": signature, "deadline": deadline},
    )


def build_wire_bid(
    bid: SwapBid | LimoBid | EvmBid,
    *,
    chain: ChainState | None,
    signer: Signer | None,
    constants: ConstantsCache,
    now: float,
) -> BuiltBid:
    """Build and sign (SVM) or check (EVM) the wire bid of ``bid``; raise :class:`BuildError`."""
    try:
        if isinstance(bid, EvmBid):
            return _build_evm(bid)
        key, blockhash, fee = _svm_inputs(chain, signer, bid.chain_id)
        consts = constants.get(bid.chain_id)
        if isinstance(bid, SwapBid):
            opp = bid.opportunity
            deadline = bid.deadline if bid.deadline is not None else opp.minimum_deadline
            params = SwapBidParams(_swap_quote(opp), bid.amount, deadline)
            tx = build_swap_bid_transaction(
                params,
                searcher=key,
                constants=consts,
                blockhash=blockhash,
                priority_fee=fee,
                now=now,
            )
            b64, sig, detail = _signed(tx, "swap", deadline)
            return BuiltBid(SwapBidWire(bid.chain_id, b64, opp.opportunity_id), "swap", sig, detail)
        limo = bid.opportunity
        order = decode_order(limo.order)
        deadline = bid.deadline if bid.deadline is not None else int(now) + _LIMO_DEFAULT_LIFETIME
        lparams = LimoBidParams(
            Pubkey.from_string(limo.order_address),
            limo_router(order.global_config),
            bid.amount,
            deadline,
            tuple(bid.instructions),
            limo.slot,
        )
        tx = build_limo_bid_transaction(
            lparams, searcher=key, constants=consts, blockhash=blockhash, priority_fee=fee, now=now
        )
        b64, sig, detail = _signed(tx, "limo", deadline)
        return BuiltBid(OnChainBidWire(bid.chain_id, b64, limo.slot), "limo", sig, detail)
    except BuildError:
        raise
    except (BidRuleError, QuoteError, OrderDecodeError, EvmBidError) as exc:
        raise BuildError(str(exc)) from None
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        # Anything else a malformed intent can raise inside the builders (bad pubkey text, an
        # amount that does not fit its u64 field, ...): the bid is invalid, the daemon lives.
        raise BuildError(f"{type(exc).__name__}: {exc}") from None


def _build_evm(bid: EvmBid) -> BuiltBid:
    opp = bid.opportunity
    amount = check_amount("amount", bid.amount)
    contract = check_address("target_contract", bid.target_contract)
    key = bid.permission_key if bid.permission_key is not None else opp.permission_key
    if not key:
        raise BuildError("permission_key must not be empty")
    wire = EvmBidWire(amount, bid.chain_id, key, contract, bytes(bid.target_calldata))
    summary = {
        "kind": "evm",
        "amount": str(amount),
        "target_contract": contract,
        "permission_key": "0x" + key.hex(),
        "calldata_len": len(bid.target_calldata),
        "calldata_prefix": "0x" + bytes(bid.target_calldata[:4]).hex(),
    }
    return BuiltBid(wire, "evm", None, summary)


def signature_of_transaction(b64: str) -> str | None:
    """The first signature of a base64 transaction (from a bid listing), or None if unreadable."""
    try:
        tx = decode_transaction(b64)
    except ValueError:
        return None
    return str(tx.signatures[0]) if tx.signatures else None
