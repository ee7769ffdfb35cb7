"""Configuration, bid records and deterministic generators for the Express Relay simulator.

Everything random here draws from a ``random.Random`` the simulator seeds, so one seed gives the
same opportunities, ids and outcomes on every run. Pubkeys, hashes and signatures are real
``solders`` values so a daemon can parse them as it would on mainnet.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import TYPE_CHECKING, Final

import attrs
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.signature import Signature

from searcherd.svm.limo import LimoOrder, OrderStatus, encode_order
from searcherd.svm.programs import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

from .messages import (
    BidStatus,
    EvmOpportunity,
    LimoOpportunity,
    SwapOpportunity,
    TokenAccountInitializationConfigs,
    TokenAmount,
    TokensSearcherSpecified,
    TokensUserSpecified,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

__all__ = ["BidRecord", "SimulatorConfig", "Timings"]

_FAILED_REASONS: Final = (
    "insufficient_user_funds",
    "insufficient_searcher_funds",
    "insufficient_funds_sol_transfer",
    "deadline_passed",
    "other",
)


@attrs.define
class Timings:
    """How long the simulated auction server takes for each step (seconds, trio clock)."""

    auction: float = 0.3  # bid accepted -> first pushed status (swap auctions last ~250 ms)
    step: float = 1.0  # between later transitions (submitted -> won, ...)
    awaiting_signature: float = 2.0  # a won cancellable swap waits this long for the user
    cancel_window: float = 10.0  # outcome "cancelled": wait for the owner's cancel, then expire
    expire: float = 120.0  # an unconfirmed bid expires this long after it was received
    bid_processing: tuple[float, float] = (0.0, 0.05)  # post_bid/cancel_bid work, uniform range


@attrs.define
class SimulatorConfig:
    """Knobs of :func:`serve`; the defaults behave like a quiet mainnet with one SVM chain.

    ``outcomes`` weights the final outcome drawn for each accepted bid: ``won``, ``lost``,
    ``failed``, ``expired``, ``cancelled`` (waits in ``awaiting_signature`` for the owner's
    ``cancel_bid``, expiring after ``timings.cancel_window``) and ``submission_failed``. An outcome
    a bid kind cannot have (e.g. ``cancelled`` for a limo bid) becomes ``lost``.
    ``check_svm_bids`` checks every SVM ``post_bid`` as the server does (``svm.rules``, against
    the simulator's program id, relayer signer, clock and recent priority fees) and answers a
    broken rule with the server's text. ``svm_bid_check(bid=..., transaction=..., opportunity=...)``
    replaces that check when set: it may raise, and its text becomes the error response.
    """

    svm_chains: tuple[str, ...] = ("solana",)
    evm_chains: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = attrs.field(default=(), repr=False)  # secrets: never in a repr
    host: str = "127.0.0.1"
    ws_port: int = 0
    http_port: int = 0
    seed: int = 0
    opportunity_interval: float = 1.0  # mean seconds between generated opportunities; 0 = off
    swap_share: float = 0.5  # share of generated SVM opportunities that are swaps
    cancellable_share: float = 0.5  # share of swap opportunities that are cancellable
    swap_lifetime: float = 0.25  # swap opportunities vanish silently after their auction
    limo_lifetime: float = 30.0  # then `remove_opportunities`
    evm_lifetime: float = 30.0
    chain_update_interval: float = 5.0
    ping_interval: float = 30.0
    max_connections_per_ip: int = 10  # only enforced when X-Forwarded-For is present
    event_buffer: int = 1000  # a connection this far behind is dropped
    outcomes: dict[str, float] = attrs.field(
        factory=lambda: {"won": 4.0, "lost": 4.0, "failed": 1.0, "expired": 1.0}
    )
    timings: Timings = attrs.field(factory=Timings)
    check_svm_bids: bool = True
    svm_bid_check: Callable[..., None] | None = None
    wall_clock: Callable[[], float] = time.time


@attrs.define(eq=False)
class BidRecord:
    """One bid the simulator accepted, with every status it has had (``pending`` first)."""

    bid_id: str
    chain_id: str
    kind: str  # "swap", "on_chain" or "evm"
    opportunity_id: str | None
    transaction: bytes | None = attrs.field(repr=False)  # SVM: bincode VersionedTransaction
    signature: str | None  # SVM: the fee payer's signature, used as `result`
    amount: int | None  # EVM: the bid amount in wei
    profile_id: str | None
    outcome: str
    cancellable: bool = False
    history: list[BidStatus] = attrs.field(factory=lambda: [BidStatus("pending")])
    initiated_at: float = 0.0  # wall clock when accepted: `initiation_time` in own-bid listings

    @property
    def status(self) -> BidStatus:
        """The current status."""
        return self.history[-1]

    @property
    def final_status(self) -> BidStatus | None:
        """The final status, or ``None`` while the bid is still open."""
        return self.history[-1] if self.history[-1].is_final else None

    @property
    def is_evm(self) -> bool:
        """True for a legacy EVM bid (statuses carry ``index``)."""
        return self.kind == "evm"


def pick_outcome(rng: random.Random, weights: dict[str, float]) -> str:
    """Draw one outcome name according to ``weights``."""
    names = sorted(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


def plan_statuses(bid: BidRecord, rng: random.Random, t: Timings) -> list[tuple[float, BidStatus]]:
    """The (delay, status) steps that lead ``bid`` to its outcome, as the real server would."""
    out = bid.outcome
    if bid.is_evm:
        tx_hash = "0x" + rng.randbytes(32).hex()
        index = rng.randrange(0, 4)
        if out == "won":
            return [(t.auction, BidStatus("submitted", tx_hash, index=index)),
                    (t.step, BidStatus("won", tx_hash, index=index))]  # fmt: skip
        if out == "failed":  # EVM has no `failed`: landed in the bundle but lost
            return [(t.auction, BidStatus("submitted", tx_hash, index=index)),
                    (t.step, BidStatus("lost", tx_hash, index=index))]  # fmt: skip
        winner = rng.choice([None, tx_hash])
        return [(t.auction, BidStatus("lost", winner, index=None))]
    sig = bid.signature
    if bid.kind == "on_chain":
        first = "submitted"
    else:
        first = "awaiting_signature" if bid.cancellable else "sent_to_user_for_submission"
    late = max(t.expire - t.auction, 0.0)
    steps: list[tuple[float, BidStatus]] = [(t.auction, BidStatus(first, sig))]
    wait = t.awaiting_signature if first == "awaiting_signature" else t.step
    if out in ("won", "failed") and first == "awaiting_signature":
        steps.append((wait, BidStatus("submitted", sig)))
        wait = t.step
    if out == "won":
        steps.append((wait, BidStatus("won", sig)))
    elif out == "failed":
        steps.append((wait, BidStatus("failed", sig, reason=rng.choice(_FAILED_REASONS))))
    elif out == "expired":
        steps.append((late, BidStatus("expired", sig)))
    elif out == "cancelled" and first == "awaiting_signature":
        steps.append((t.cancel_window, BidStatus("expired", sig)))
    elif out == "submission_failed" and first == "awaiting_signature":
        steps.append((t.step, BidStatus("submission_failed", sig, reason="deadline_passed")))
    else:  # "lost", or an outcome this kind of bid cannot have
        winner = rng.choice([None, str(Signature(rng.randbytes(64)))])
        steps = [(t.auction, BidStatus("lost", winner))]
    return steps


# --------------------------------------------------------------------------- generators


def new_uuid(rng: random.Random) -> str:
    """A random-looking, seed-determined UUIDv4 string."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def pubkey(rng: random.Random) -> str:
    """A base58 pubkey from 32 seeded bytes."""
    return str(Pubkey(rng.randbytes(32)))


def blockhash(rng: random.Random) -> str:
    """A base58 blockhash from 32 seeded bytes."""
    return str(Hash(rng.randbytes(32)))


@attrs.frozen
class _Mint:
    address: Pubkey
    program: Pubkey


# Real mainnet mints with their token programs, so prices and ATAs look like the real thing.
_MINTS: Final = tuple(
    _Mint(Pubkey.from_string(address), program)
    for address, program in (
        ("So11111111111111111111111111111111111111112", TOKEN_PROGRAM_ID),  # wrapped SOL
        ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", TOKEN_PROGRAM_ID),  # USDC
        ("Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", TOKEN_PROGRAM_ID),  # USDT
        ("JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", TOKEN_PROGRAM_ID),  # JUP
        ("HZ1JovNiVvGrGNiiYvEozEVgZ58xaU3RKwX8eACQBCt3", TOKEN_PROGRAM_ID),  # PYTH
        ("2b1kV6DkPAnxd5ixfnxCpjxmKwqjjaYmCZfHsFu24GXo", TOKEN_2022_PROGRAM_ID),  # PYUSD
    )
)
_PPM: Final = 1_000_000
_PAYERS: Final = ("unneeded", "searcher_payer", "user_payer")


def limo_global_config(chain_id: str) -> Pubkey:
    """The Limo global config of every generated order on ``chain_id`` (one per chain, as on
    mainnet); the limo bid router is its PDA authority (``svm.limo_router``)."""
    return Pubkey(hashlib.sha256(f"er-sim:limo-global-config:{chain_id}".encode()).digest())


def _amount(rng: random.Random) -> int:
    # Mostly everyday sizes, sometimes past 2^53 on purpose (JSON floats would lose them); always
    # small enough that the user's balance and a fee-scaled bid still fit a u64.
    return rng.choice([rng.randrange(10**6, 10**12), rng.randrange(2**53, 2**62)])


def _init_configs(rng: random.Random) -> TokenAccountInitializationConfigs:
    # The user's ATAs are often missing; the fee receivers' accounts almost always exist. Keeping
    # the receivers mostly "unneeded" also keeps every buildable bid under the 1232-byte limit.
    def receiver() -> str:
        return "unneeded" if rng.random() < 0.8 else "searcher_payer"

    return TokenAccountInitializationConfigs(
        rng.choice(_PAYERS), rng.choice(_PAYERS), receiver(), receiver(), receiver()
    )


def make_swap(
    rng: random.Random, chain_id: str, now: float, *, cancellable: bool
) -> SwapOpportunity:
    """A consistent swap (RFQ) opportunity a searcher can build a ``swap_v2`` bid for.

    Real mints and token programs (one Token-2022 mint); ``*_bps`` equal ``*_ppm // 100``; for
    side "user" ``user_amount`` is what is left after the fees taken in the user token and the
    user's balance covers ``user_amount_including_fees``; ``minimum_deadline`` is a few seconds
    ahead; ``memo`` is sometimes set. Amounts sometimes exceed 2^53 on purpose.
    """
    searcher_mint, user_mint = rng.sample(_MINTS, 2)
    referral_ppm = rng.choice([0, 500, 1000, 2500])
    platform_ppm = rng.choice([1000, 2000])
    fee_token = rng.choice(["searcher_token", "user_token"])
    amount = _amount(rng)
    tokens: TokensUserSpecified | TokensSearcherSpecified
    if rng.random() < 0.5:  # the user fixed what they pay in
        fees = amount * referral_ppm // _PPM + amount * platform_ppm // _PPM
        net = amount - fees if fee_token == "user_token" else amount
        tokens = TokensUserSpecified(str(searcher_mint.address), str(user_mint.address), net,
                                     amount, str(searcher_mint.program), str(user_mint.program))  # fmt: skip
        balance = rng.randrange(amount, 2 * amount)
    else:  # the user fixed what they get out; the searcher bids what the user pays
        tokens = TokensSearcherSpecified(str(searcher_mint.address), amount, str(user_mint.address),
                                         str(searcher_mint.program), str(user_mint.program))  # fmt: skip
        balance = rng.randrange(10**9, 2**63)
    return SwapOpportunity(
        opportunity_id=new_uuid(rng),
        chain_id=chain_id,
        creation_time=int(now * 1_000_000),
        version="v1",
        user_wallet_address=pubkey(rng),
        user_mint_user_balance=balance,
        permission_account=pubkey(rng),
        router_account=pubkey(rng),
        referral_fee_ppm=referral_ppm,
        platform_fee_ppm=platform_ppm,
        fee_token=fee_token,
        tokens=tokens,
        token_account_initialization_configs=_init_configs(rng),
        cancellable=cancellable,
        minimum_deadline=int(now) + rng.randrange(5, 15),
        memo=rng.choice([None, None, "er-sim"]),
        profile_id=None,
        referral_fee_bps=referral_ppm // 100,
        platform_fee_bps=platform_ppm // 100,
    )


def make_limo_order(rng: random.Random, chain_id: str, now: float) -> LimoOrder:
    """An active Kamino Limo order under the chain's global config, sometimes partly filled."""
    in_mint, out_mint = rng.sample(_MINTS, 2)
    initial = rng.randrange(10**6, 10**13)
    expected = rng.randrange(10**6, 10**13)
    remaining = initial if rng.random() < 0.7 else rng.randrange(1, initial + 1)
    fills = 0 if remaining == initial else rng.randrange(1, 5)
    return LimoOrder(
        global_config=limo_global_config(chain_id),
        maker=Pubkey(rng.randbytes(32)),
        input_mint=in_mint.address,
        input_mint_program_id=in_mint.program,
        output_mint=out_mint.address,
        output_mint_program_id=out_mint.program,
        initial_input_amount=initial,
        expected_output_amount=expected,
        remaining_input_amount=remaining,
        filled_output_amount=expected * (initial - remaining) // initial,
        number_of_fills=fills,
        status=OrderStatus.ACTIVE,
        in_vault_bump=rng.randrange(256),
        last_updated_timestamp=int(now) - rng.randrange(0, 3600),
    )


def make_limo(rng: random.Random, chain_id: str, now: float, slot: int) -> LimoOpportunity:
    """A limo opportunity carrying real ``Order`` account bytes (``svm.limo.decode_order``)."""
    address = pubkey(rng)
    return LimoOpportunity(
        opportunity_id=new_uuid(rng),
        chain_id=chain_id,
        creation_time=int(now * 1_000_000),
        version="v1",
        order=encode_order(make_limo_order(rng, chain_id, now)),
        order_address=address,
        slot=slot,
    )


def make_evm(rng: random.Random, chain_id: str, now: float) -> EvmOpportunity:
    """[EVM, legacy] an opportunity with U256 amounts well past 2^64."""

    def addr() -> str:
        return "0x" + rng.randbytes(20).hex()

    contract = addr()
    return EvmOpportunity(
        opportunity_id=new_uuid(rng),
        chain_id=chain_id,
        creation_time=int(now * 1_000_000),
        version="v1",
        permission_key=bytes(12) + bytes.fromhex(contract[2:]) + rng.randbytes(32),
        target_contract=contract,
        target_calldata=rng.randbytes(4) + rng.randbytes(32),
        target_call_value=0,
        sell_tokens=(TokenAmount(addr(), rng.randrange(10**6, 10**24)),),
        buy_tokens=(TokenAmount(addr(), rng.randrange(10**18, 2**200)),),
    )


def jitter(rng: random.Random, bounds: tuple[float, float]) -> float:
    """A uniform draw in ``bounds`` (0 when both are 0)."""
    lo, hi = bounds
    return lo if hi <= lo else rng.uniform(lo, hi)
