"""Each server rule on SVM bid transactions, rejected locally with the server's message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from searcherd.svm import instructions as ix
from searcherd.svm.keys import SearcherKey
from searcherd.svm.metadata import ExpressRelayConstants
from searcherd.svm.programs import MAINNET_PROGRAM_ID, TOKEN_PROGRAM_ID, WRAPPED_SOL_MINT
from searcherd.svm.rules import BidRuleError, check_bid_transaction, format_server_time
from searcherd.svm.swap import SwapQuote, TokenAccountConfigs, swap_instructions
from searcherd.svm.transaction import compile_message, partial_sign

if TYPE_CHECKING:
    from collections.abc import Sequence

    from searcherd.svm.keys import Signer

NOW = 1_745_500_000
SEARCHER = SearcherKey(Keypair.from_seed(bytes([1]) * 32), "test")
RELAYER = Keypair.from_seed(bytes([2]) * 32)
USER = Keypair.from_seed(bytes([6]) * 32)
OTHER = Keypair.from_seed(bytes([7]) * 32)
CONSTANTS = ExpressRelayConstants(
    MAINNET_PROGRAM_ID, RELAYER.pubkey(), Pubkey.from_bytes(bytes([3]) * 32)
)
BLOCKHASH = Hash.from_string("SLxp9LxX1eE9Z5v99Y92DaYEwyukFgMUF6zRerCF12j")
ORDER = Pubkey.from_bytes(bytes([8]) * 32)
ROUTER = Pubkey.from_bytes(bytes([9]) * 32)
USDC = Pubkey.from_string("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
QUOTE = SwapQuote(
    opportunity_id="d3c4a1f0-7b2e-4c8a-9f61-2a5b0e9c7d13",
    user=USER.pubkey(),
    router=ROUTER,
    searcher_token=USDC,
    user_token=WRAPPED_SOL_MINT,
    token_program_searcher=TOKEN_PROGRAM_ID,
    token_program_user=TOKEN_PROGRAM_ID,
    side_specified="user",
    specified_amount=1_000_000_000,
    fee_token="user_token",
    platform_fee_ppm=1000,
    user_mint_user_balance=5_000_000_000,
    minimum_deadline=NOW + 10,
    memo="quote-1",
    token_accounts=TokenAccountConfigs(user_ata_mint_searcher="searcher_payer"),
)


def _exact(text: str) -> str:
    return "^" + re.escape(text) + "$"


def _starts(text: str) -> str:
    return "^" + re.escape(text)


def _ends(text: str) -> str:
    return re.escape(text) + "$"


def _submit(deadline: int = NOW + 15, *, relayer_signs: bool = True) -> Instruction:
    instruction = ix.submit_bid_instruction(
        program_id=MAINNET_PROGRAM_ID,
        searcher=SEARCHER.pubkey(),
        relayer_signer=RELAYER.pubkey(),
        permission=ORDER,
        router=ROUTER,
        fee_receiver_relayer=CONSTANTS.fee_receiver_relayer,
        deadline=deadline,
        bid_amount=1_000,
    )
    if relayer_signs:
        return instruction
    accounts = list(instruction.accounts)
    accounts[1] = AccountMeta(RELAYER.pubkey(), is_signer=False, is_writable=False)
    return Instruction(instruction.program_id, bytes(instruction.data), accounts)


def _tx(
    instructions: Sequence[Instruction],
    *,
    payer: Signer = SEARCHER,
    signers: Sequence[Signer] = (SEARCHER,),
    version: Any = "legacy",
) -> VersionedTransaction:
    message = compile_message(instructions, payer=payer, blockhash=BLOCKHASH, version=version)
    return partial_sign(message, signers)


def _price(fee: int = 100) -> Instruction:
    return ix.set_compute_unit_price_instruction(fee)


def _check_limo(tx: VersionedTransaction, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "kind": "limo",
        "program_id": MAINNET_PROGRAM_ID,
        "relayer_signer": RELAYER.pubkey(),
        "min_priority_fee": 100,
        "now": NOW,
    }
    return check_bid_transaction(tx, **(kwargs | overrides))


def _swap_tx(
    quote: SwapQuote = QUOTE, *, deadline: int = NOW + 12, amount: int = 5_000, **kw: Any
) -> VersionedTransaction:
    body = swap_instructions(
        quote, searcher=SEARCHER.pubkey(), amount=amount, deadline=deadline, constants=CONSTANTS
    )
    return _tx([_price(), *body], **kw)


def _check_swap(tx: VersionedTransaction, quote: SwapQuote = QUOTE, **overrides: Any) -> Any:
    return _check_limo(tx, kind="swap", swap=quote, **overrides)


@pytest.mark.parametrize("version", ["legacy", 0])
def test_valid_limo_bid_passes(version: Any) -> None:
    """A well-formed limo bid passes in legacy and v0 form and reports its fields."""
    checked = _check_limo(_tx([_price(), _submit()], version=version), searcher=SEARCHER.pubkey())
    assert (checked.kind, checked.amount, checked.deadline) == ("limo", 1_000, NOW + 15)
    assert (checked.permission, checked.router) == (ORDER, ROUTER)


def test_size_limit() -> None:
    """Over 1232 bytes: `Transaction size is too large: N > 1232`."""
    padding = Instruction(Pubkey.from_bytes(bytes([5]) * 32), bytes(1100), [])
    tx = _tx([_price(), _submit(), padding])
    size = len(bytes(tx))
    assert size > 1232
    with pytest.raises(BidRuleError, match=rf"^Transaction size is too large: {size} > 1232$"):
        _check_limo(tx)


def test_multiple_compute_unit_prices() -> None:
    """Two SetComputeUnitPrice instructions are refused."""
    with pytest.raises(BidRuleError, match=_exact("Multiple SetComputeUnitPrice instructions")):
        _check_limo(_tx([_price(), _price(200), _submit()]))


def test_missing_compute_unit_price() -> None:
    """No price while the chain's minimum is positive: the server's text with the minimum."""
    with pytest.raises(
        BidRuleError,
        match=_exact("No SetComputeUnitPrice instruction. Minimum compute budget is 100"),
    ):
        _check_limo(_tx([_submit()]))
    # With a zero minimum the price instruction is optional.
    _check_limo(_tx([_submit()]), min_priority_fee=0)


def test_compute_unit_price_too_low() -> None:
    """A price below latest_prioritization_fee is refused."""
    with pytest.raises(
        BidRuleError, match=_exact("Compute budget is too low. Minimum compute budget is 25000")
    ):
        _check_limo(_tx([_price(24_999), _submit()]), min_priority_fee=25_000)


@pytest.mark.parametrize("count", [0, 2])
def test_exactly_one_express_relay_instruction(count: int) -> None:
    """Zero or two Express Relay instructions: `... but found N instructions`."""
    tx = _tx([_price(), *[_submit(NOW + 15 + i) for i in range(count)]])
    with pytest.raises(
        BidRuleError,
        match=f"^Bid must include exactly one instruction to Express Relay program but found {count} instructions$",
    ):
        _check_limo(tx)


def test_wrong_express_relay_instruction_type() -> None:
    """A swap instruction in a limo bid is the wrong instruction type."""
    body = swap_instructions(
        QUOTE, searcher=SEARCHER.pubkey(), amount=1, deadline=NOW + 15, constants=CONSTANTS
    )
    tx = _tx([_price(), *body])
    with pytest.raises(BidRuleError, match="Wrong instruction type for Express Relay Program"):
        _check_limo(tx)


def test_limo_deadline_window() -> None:
    """Limo deadlines must be >= now + 5 s and <= now + 45 s, printed as the server does."""
    with pytest.raises(
        BidRuleError,
        match=(
            r"^Bid deadline 2025-04-24 13:06:44.0 \+00:00:00 is too early; "
            r"it must remain valid at least until 2025-04-24 13:06:45.0 \+00:00:00$"
        ),
    ):
        _check_limo(_tx([_price(), _submit(NOW + 4)]))
    with pytest.raises(
        BidRuleError,
        match=r"^Bid deadline 2025-04-24 13:07:26.0 \+00:00:00 is too late; it must be less than 2025-04-24 13:07:25.0",
    ):
        _check_limo(_tx([_price(), _submit(NOW + 46)]))
    _check_limo(_tx([_price(), _submit(NOW + 5)]))
    _check_limo(_tx([_price(), _submit(NOW + 45)]))


def test_server_time_format() -> None:
    """Times print like Rust `time`'s OffsetDateTime: unpadded hour, trimmed fraction."""
    assert format_server_time(NOW) == "2025-04-24 13:06:40.0 +00:00:00"
    assert format_server_time(1_700_000_000.25) == "2023-11-14 22:13:20.25 +00:00:00"
    assert format_server_time(1_745_460_005) == "2025-04-24 2:00:05.0 +00:00:00"


def test_relayer_must_be_a_signer() -> None:
    """The relayer must be listed as a signer (its slot empty)."""
    tx = _tx([_price(), _submit(relayer_signs=False)])
    with pytest.raises(
        BidRuleError,
        match=f"^Relayer account {RELAYER.pubkey()} is not a signer in the transaction$",
    ):
        _check_limo(tx)


def test_relayer_slot_stays_empty_and_other_signatures_must_be_valid() -> None:
    """A missing (zero) searcher signature is invalid; the relayer's zero slot is fine."""
    tx = _tx([_price(), _submit()])
    assert tx.signatures[1] == Signature.default()
    unsigned = VersionedTransaction.populate(tx.message, [Signature.default(), Signature.default()])
    with pytest.raises(
        BidRuleError, match=f"^Signature for account {SEARCHER.pubkey()} is invalid$"
    ):
        _check_limo(unsigned)
    forged = VersionedTransaction.populate(
        tx.message, [OTHER.sign_message(b"x"), Signature.default()]
    )
    with pytest.raises(BidRuleError, match=_ends("is invalid")):
        _check_limo(forged)


def test_local_rule_searcher_is_first_signer() -> None:
    """Given our searcher key, a transaction paid by someone else is refused locally."""
    tx = _tx([_price(), _submit()])
    with pytest.raises(
        BidRuleError, match=_starts("Invalid first signer: fee payer must be the searcher")
    ):
        _check_limo(tx, searcher=OTHER.pubkey())


@pytest.mark.parametrize("version", ["legacy", 0])
def test_valid_swap_bid_passes(version: Any) -> None:
    """A well-formed swap bid passes; amount is the searcher side (user side was specified)."""
    checked = _check_swap(_swap_tx(version=version), searcher=SEARCHER.pubkey())
    assert (checked.kind, checked.amount, checked.deadline, checked.router) == (
        "swap",
        5_000,
        NOW + 12,
        ROUTER,
    )


def test_swap_fee_payer_must_not_be_user() -> None:
    """A swap transaction paid by the user: `Invalid first signer: Fee payer should not be user`."""
    tx = _swap_tx(payer=USER, signers=(SEARCHER,))
    with pytest.raises(
        BidRuleError, match=_exact("Invalid first signer: Fee payer should not be user")
    ):
        _check_swap(tx)


def test_swap_memo_must_match() -> None:
    """The quote's memo must be present verbatim."""
    tx = _swap_tx(attrs.evolve(QUOTE, memo="other"))
    with pytest.raises(
        BidRuleError,
        match=_exact(
            'Invalid instruction at index 1: Invalid memo string in memo instruction. Expected: "quote-1" found: "other"'
        ),
    ):
        _check_swap(tx)
    with pytest.raises(
        BidRuleError, match=_exact("Invalid memo instruction count. Expected: 1 found: 0")
    ):
        _check_swap(_swap_tx(attrs.evolve(QUOTE, memo=None)))


def test_swap_unsupported_program() -> None:
    """Swap bids may only call the allowed programs."""
    stranger = Pubkey.from_bytes(bytes([5]) * 32)
    body = swap_instructions(
        QUOTE, searcher=SEARCHER.pubkey(), amount=1, deadline=NOW + 12, constants=CONSTANTS
    )
    tx = _tx([_price(), *body, Instruction(stranger, b"", [])])
    with pytest.raises(
        BidRuleError,
        match=f"^Invalid instruction at index {len(body) + 1}: Unsupported program {stranger}$",
    ):
        _check_swap(tx)


def test_swap_fields_must_match_the_quote() -> None:
    """An amount or mint differing from the opportunity is refused with the server's wording."""
    tx = _swap_tx(attrs.evolve(QUOTE, specified_amount=999))
    with pytest.raises(
        BidRuleError,
        match=_exact(
            "Invalid user amount 999 in swap instruction data. Value does not match the user amount in swap opportunity 1000000000"
        ),
    ):
        _check_swap(tx)
    tx = _swap_tx(attrs.evolve(QUOTE, searcher_token=Pubkey.from_bytes(bytes([4]) * 32)))
    with pytest.raises(BidRuleError, match=_starts("Invalid searcher mint")):
        _check_swap(tx)


def test_swap_deadline_window() -> None:
    """Swap deadlines must be >= minimum_deadline and <= now + 45 s."""
    with pytest.raises(
        BidRuleError,
        match=r"is too early; it must remain valid at least until 2025-04-24 13:06:50.0",
    ):
        _check_swap(_swap_tx(deadline=NOW + 9))
    with pytest.raises(BidRuleError, match="is too late"):
        _check_swap(_swap_tx(deadline=NOW + 50))


def test_swap_requires_quote() -> None:
    """Checking a swap bid without its quote is a programming error."""
    with pytest.raises(ValueError, match="pass swap="):
        _check_limo(_swap_tx(), kind="swap")


def test_signed_by_skips_only_the_signature_we_just_made() -> None:
    """`signed_by` spares re-verifying our own fresh signature, and nothing else: a forged
    signature of another signer is still refused, and without `signed_by` ours is checked."""
    other_ix = transfer(TransferParams(from_pubkey=OTHER.pubkey(), to_pubkey=ORDER, lamports=1))
    tx = _tx([_price(), _submit(), other_ix], signers=(SEARCHER, OTHER))
    keys = list(tx.message.account_keys)
    ours, theirs = keys.index(SEARCHER.pubkey()), keys.index(OTHER.pubkey())
    assert _check_limo(tx, signed_by=SEARCHER.pubkey()).kind == "limo"

    sigs = list(tx.signatures)
    sigs[theirs] = OTHER.sign_message(b"not this message")
    forged_theirs = VersionedTransaction.populate(tx.message, sigs)
    with pytest.raises(BidRuleError, match=f"^Signature for account {OTHER.pubkey()} is invalid$"):
        _check_limo(forged_theirs, signed_by=SEARCHER.pubkey())

    sigs = list(tx.signatures)
    sigs[ours] = SEARCHER.sign_message(b"not this message")
    forged_ours = VersionedTransaction.populate(tx.message, sigs)
    assert _check_limo(forged_ours, signed_by=SEARCHER.pubkey()).kind == "limo"  # trusted
    with pytest.raises(
        BidRuleError, match=f"^Signature for account {SEARCHER.pubkey()} is invalid$"
    ):
        _check_limo(forged_ours)
