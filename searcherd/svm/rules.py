"""The auction server's checks on an SVM bid transaction, run locally before sending.

`check_bid_transaction` takes only what the server knows (the decoded transaction, the
opportunity's fields, the chain's minimum priority fee, the relayer signer, the program id and
the clock), so the submitter uses it to catch a bad bid before it costs a round trip, and the
Express Relay simulator uses the very same function to reject bids the way the server does.
Messages are the server's texts where it has one. Checks run in the server's order, so the
first failure is the one the server would report.

Not checked here (they need chain state): simulation, lookup-table contents fetched over RPC
(pass `lookup_tables` to resolve v0 lookups), duplicates.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Final, Literal

import attrs
from solders.message import Message, MessageV0

from searcherd.svm.instructions import (
    SUBMIT_BID_DISCRIMINATOR,
    SWAP_V2_DISCRIMINATOR,
    SWAP_V2_POSITIONS,
    InstructionDecodeError,
    decode_compute_unit_price,
    decode_submit_bid_args,
    decode_swap_v2_args,
)
from searcherd.svm.programs import (
    ASSOCIATED_TOKEN_PROGRAM_ID,
    COMPUTE_BUDGET_PROGRAM_ID,
    MEMO_PROGRAM_ID,
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    associated_token_address,
)
from searcherd.svm.transaction import message_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from solders.instruction import CompiledInstruction
    from solders.pubkey import Pubkey
    from solders.transaction import VersionedTransaction

    from searcherd.svm.swap import SwapQuote

__all__ = [
    "LIMO_MIN_LIFETIME",
    "MAX_DEADLINE_AHEAD",
    "MAX_TRANSACTION_SIZE",
    "BidKind",
    "BidRuleError",
    "CheckedBid",
    "check_bid_transaction",
    "format_server_time",
]

MAX_TRANSACTION_SIZE: Final = 1232
#: A limo bid must stay valid at least this many seconds after it reaches the server.
LIMO_MIN_LIFETIME: Final = 5
#: No bid may have a deadline further ahead than this many seconds.
MAX_DEADLINE_AHEAD: Final = 45

BidKind = Literal["limo", "swap"]

_SWAP_ALLOWED_PROGRAMS: Final = frozenset(
    {
        COMPUTE_BUDGET_PROGRAM_ID,
        ASSOCIATED_TOKEN_PROGRAM_ID,
        SYSTEM_PROGRAM_ID,
        TOKEN_PROGRAM_ID,
        TOKEN_2022_PROGRAM_ID,
        MEMO_PROGRAM_ID,
    }
)


class BidRuleError(ValueError):
    """A bid transaction breaks a server rule; the message is the server's text."""


@attrs.frozen
class CheckedBid:
    """What the checks read from a valid bid transaction."""

    kind: BidKind
    #: Lamports (limo) or token units of the bid side (swap), as the server ranks it.
    amount: int
    deadline: int
    #: The Express Relay instruction's permission account (limo) or None (swap).
    permission: Pubkey | None
    router: Pubkey | None


def format_server_time(unix: float) -> str:
    """A timestamp as the server prints it (Rust `time`): `2025-04-24 13:06:45.0 +00:00:00`."""
    moment = dt.datetime.fromtimestamp(unix, dt.UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0") or "0"
    return f"{moment:%Y-%m-%d} {moment.hour}:{moment:%M:%S}.{fraction} +00:00:00"


class _TxView:
    """What the checks read from a transaction, read once.

    solders builds a fresh Python copy on every `tx.message`, `.account_keys` and
    `.instructions` access, so the checks share one copy of each instead.
    """

    __slots__ = ("instructions", "message", "programs", "static_keys", "tx")

    def __init__(self, tx: VersionedTransaction) -> None:
        self.tx = tx
        self.message = tx.message
        self.static_keys: list[Pubkey] = list(self.message.account_keys)
        self.instructions: list[CompiledInstruction] = list(self.message.instructions)
        count = len(self.static_keys)
        # The program of each instruction; None for an index outside the static keys.
        self.programs: list[Pubkey | None] = [
            self.static_keys[ix.program_id_index] if ix.program_id_index < count else None
            for ix in self.instructions
        ]


def _account_keys(
    view: _TxView, lookup_tables: Mapping[Pubkey, Sequence[Pubkey]] | None
) -> list[Pubkey | None]:
    # Static keys, then every table's writable lookups, then every table's read-only ones:
    # the order the runtime (and the server) assigns account indexes. Unresolvable entries
    # (table contents not given) are None.
    message = view.message
    keys: list[Pubkey | None] = list(view.static_keys)
    if not isinstance(message, MessageV0):
        return keys
    lookups = message.address_table_lookups
    for attr in ("writable_indexes", "readonly_indexes"):
        for lookup in lookups:
            table = None if lookup_tables is None else lookup_tables.get(lookup.account_key)
            keys.extend(
                table[index] if table is not None and index < len(table) else None
                for index in getattr(lookup, attr)
            )
    return keys


def _account_at(ix: CompiledInstruction, position: int, keys: list[Pubkey | None]) -> Pubkey:
    accounts = bytes(ix.accounts)
    if position >= len(accounts) or accounts[position] >= len(keys):
        raise BidRuleError("Bad parameters: Account not found in instruction")
    key = keys[accounts[position]]
    if key is None:
        raise BidRuleError(
            "Bad parameters: account is in an address lookup table whose contents were not given"
        )
    return key


def _check_size(tx: VersionedTransaction) -> None:
    size = len(bytes(tx))
    if size > MAX_TRANSACTION_SIZE:
        raise BidRuleError(f"Transaction size is too large: {size} > {MAX_TRANSACTION_SIZE}")


def _check_compute_budget(view: _TxView, minimum: int) -> None:
    prices = [
        price
        for ix, program in zip(view.instructions, view.programs, strict=True)
        if program == COMPUTE_BUDGET_PROGRAM_ID
        and (price := decode_compute_unit_price(bytes(ix.data))) is not None
    ]
    if len(prices) > 1:
        raise BidRuleError("Multiple SetComputeUnitPrice instructions")
    if not prices and minimum > 0:
        raise BidRuleError(
            f"No SetComputeUnitPrice instruction. Minimum compute budget is {minimum}"
        )
    if prices and prices[0] < minimum:
        raise BidRuleError(f"Compute budget is too low. Minimum compute budget is {minimum}")


def _express_relay_instruction(
    view: _TxView, program_id: Pubkey, discriminator: bytes
) -> CompiledInstruction:
    found = [
        ix
        for ix, program in zip(view.instructions, view.programs, strict=True)
        if program == program_id
    ]
    if len(found) != 1:
        raise BidRuleError(
            "Bid must include exactly one instruction to Express Relay program "
            f"but found {len(found)} instructions"
        )
    if not bytes(found[0].data).startswith(discriminator):
        raise BidRuleError("Bad parameters: Wrong instruction type for Express Relay Program")
    return found[0]


def _check_swap_instructions(view: _TxView, program_id: Pubkey, quote: SwapQuote) -> None:
    memos: list[tuple[int, str]] = []
    for index, (ix, program) in enumerate(zip(view.instructions, view.programs, strict=True)):
        if program is None:
            raise BidRuleError(f"Invalid instruction at index {index}: Invalid program id index")
        if program != program_id and program not in _SWAP_ALLOWED_PROGRAMS:
            raise BidRuleError(
                f"Invalid instruction at index {index}: Unsupported program {program}"
            )
        if program == MEMO_PROGRAM_ID:
            memos.append((index, bytes(ix.data).decode("utf-8", "replace")))
    expected = 0 if quote.memo is None else 1
    if len(memos) != expected:
        raise BidRuleError(
            f"Invalid memo instruction count. Expected: {expected} found: {len(memos)}"
        )
    if quote.memo is not None and memos[0][1] != quote.memo:
        index, found = memos[0]
        raise BidRuleError(
            f"Invalid instruction at index {index}: Invalid memo string in memo instruction. "
            f"Expected: {_rust_debug(quote.memo)} found: {_rust_debug(found)}"
        )


def _rust_debug(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mismatch(what: str, where: str, found: object, expected: object) -> BidRuleError:
    return BidRuleError(
        f"Invalid {what} {found} in swap instruction {where}. "
        f"Value does not match the {what} in swap opportunity {expected}"
    )


def _check_swap_fields(
    ix: CompiledInstruction, keys: list[Pubkey | None], quote: SwapQuote
) -> tuple[int, int]:
    try:
        args = decode_swap_v2_args(bytes(ix.data))
    except InstructionDecodeError as exc:
        raise BidRuleError(f"Bad parameters: {exc}") from None

    def account(name: str) -> Pubkey:
        return _account_at(ix, SWAP_V2_POSITIONS[name], keys)

    checks: list[tuple[str, str, object, object]] = [
        ("wallet address", "accounts", account("user"), quote.user),
        ("searcher mint", "accounts", account("mint_searcher"), quote.searcher_token),
        ("user mint", "accounts", account("mint_user"), quote.user_token),
        (
            "searcher token program",
            "accounts",
            account("token_program_searcher"),
            quote.token_program_searcher,
        ),
        ("user token program", "accounts", account("token_program_user"), quote.token_program_user),
    ]
    if quote.side_specified == "searcher":
        checks.append(("searcher amount", "data", args.amount_searcher, quote.specified_amount))
    else:
        checks.append(("user amount", "data", args.amount_user, quote.specified_amount))
    checks += [
        ("fee token", "data", args.fee_token, quote.fee_token),
        ("referral fee ppm", "data", args.referral_fee_ppm, quote.referral_fee_ppm),
        ("platform fee ppm", "data", args.swap_platform_fee_ppm, quote.platform_fee_ppm),
    ]
    for what, where, found, expected in checks:
        if found != expected:
            raise _mismatch(what, where, found, expected)
    router_ta = account("router_fee_receiver_ta")
    expected_ta = associated_token_address(quote.router, quote.fee_mint, quote.fee_token_program)
    if router_ta != expected_ta:
        raise BidRuleError(
            "Associated token account for router does not match. "
            f"Expected: {expected_ta} found: {router_ta}"
        )
    amount = args.amount_searcher if quote.side_specified == "user" else args.amount_user
    return amount, args.deadline


def _check_deadline(deadline: int, earliest: float, now: float) -> None:
    latest = now + MAX_DEADLINE_AHEAD
    if deadline < earliest:
        raise BidRuleError(
            f"Bid deadline {format_server_time(deadline)} is too early; "
            f"it must remain valid at least until {format_server_time(earliest)}"
        )
    if deadline > latest:
        raise BidRuleError(
            f"Bid deadline {format_server_time(deadline)} is too late; "
            f"it must be less than {format_server_time(latest)}"
        )


def _check_signatures(
    view: _TxView,
    *,
    relayer_signer: Pubkey,
    missing: Sequence[Pubkey],
    user: Pubkey | None,
    searcher: Pubkey | None,
    signed_by: Pubkey | None,
) -> None:
    message = view.message
    if not isinstance(message, Message | MessageV0):
        raise BidRuleError("Bad parameters: unsupported transaction message version")
    signatures = list(view.tx.signatures)
    signer_keys = view.static_keys[: len(signatures)]
    if user is not None and signer_keys:
        # Swap bids: the fee payer (first signer) is the searcher, never the user or relayer.
        if signer_keys[0] == user:
            raise BidRuleError("Invalid first signer: Fee payer should not be user")
        if signer_keys[0] == relayer_signer:
            raise BidRuleError("Invalid first signer: Fee payer should not be relayer signer")
    if searcher is not None and (not signer_keys or signer_keys[0] != searcher):
        # Local rule (the server does not know who we are): we pay the fees and sign first.
        raise BidRuleError(f"Invalid first signer: fee payer must be the searcher {searcher}")
    if relayer_signer not in signer_keys:
        raise BidRuleError(f"Relayer account {relayer_signer} is not a signer in the transaction")
    data: bytes | None = None  # serialized only if some signature needs verifying
    for signature, key in zip(signatures, signer_keys, strict=True):
        if key in missing or key == signed_by:
            continue
        if data is None:
            data = message_bytes(message)
        if not signature.verify(key, data):
            raise BidRuleError(f"Signature for account {key} is invalid")


def check_bid_transaction(
    tx: VersionedTransaction,
    *,
    kind: BidKind,
    program_id: Pubkey,
    relayer_signer: Pubkey,
    min_priority_fee: int,
    now: float,
    swap: SwapQuote | None = None,
    searcher: Pubkey | None = None,
    lookup_tables: Mapping[Pubkey, Sequence[Pubkey]] | None = None,
    signed_by: Pubkey | None = None,
) -> CheckedBid:
    """Check `tx` as the server checks a bid of `kind`, raising `BidRuleError` on the first
    broken rule; return what the bid says (amount, deadline, permission, router).

    `min_priority_fee` is the chain's `latest_prioritization_fee`; `now` is Unix seconds;
    `swap` is required for swap bids (the opportunity's fields). `searcher`, when given, adds
    the local rule that it is the fee payer and first signer. `signed_by` names a key whose
    signature the caller has just made over this very message with a keypair it holds (the
    builders sign, then check): that one signature is not verified again, since an ed25519
    verify costs about as much as the signing itself. Every other rule, and every other
    signature, is checked as usual.
    """
    if kind == "swap" and swap is None:
        raise ValueError("swap bids are checked against their quote: pass swap=")
    _check_size(tx)
    view = _TxView(tx)
    _check_compute_budget(view, min_priority_fee)
    keys = _account_keys(view, lookup_tables)
    if kind == "limo":
        ix = _express_relay_instruction(view, program_id, SUBMIT_BID_DISCRIMINATOR)
        try:
            args = decode_submit_bid_args(bytes(ix.data))
        except InstructionDecodeError as exc:
            raise BidRuleError(f"Bad parameters: {exc}") from None
        checked = CheckedBid(
            kind, args.bid_amount, args.deadline, _account_at(ix, 2, keys), _account_at(ix, 3, keys)
        )
        _check_deadline(args.deadline, now + LIMO_MIN_LIFETIME, now)
        _check_signatures(
            view,
            relayer_signer=relayer_signer,
            missing=[relayer_signer],
            user=None,
            searcher=searcher,
            signed_by=signed_by,
        )
        return checked
    assert swap is not None
    _check_swap_instructions(view, program_id, swap)
    ix = _express_relay_instruction(view, program_id, SWAP_V2_DISCRIMINATOR)
    amount, deadline = _check_swap_fields(ix, keys, swap)
    _check_deadline(deadline, swap.minimum_deadline, now)
    _check_signatures(
        view,
        relayer_signer=relayer_signer,
        missing=[relayer_signer, swap.user],
        user=swap.user,
        searcher=searcher,
        signed_by=signed_by,
    )
    return CheckedBid(kind, amount, deadline, None, swap.router)
