"""The fast path for swap opportunities decodes exactly what the converter decodes.

`decode_server_frame` takes well-formed swap quotes (most of the feed) without the cattrs
converter. These tests hold it to the converter: same objects for every generated quote, and
for any one-field mutation either the same object or the same rejection.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searcherd.express_relay._sim_codec import opportunity_to_json
from searcherd.express_relay._sim_state import make_swap
from searcherd.express_relay.messages import (
    _CONVERTER,
    ExpressRelayDecodeError,
    SwapOpportunity,
    decode_server_frame,
)


def _frame(opportunity: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "new_opportunity", "opportunity": opportunity})


def _swaps(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        opportunity_to_json(make_swap(rng, "solana", 1.7e9, cancellable=bool(n % 2)))
        for n in range(count)
    ]


def _by_converter(opportunity: dict[str, Any]) -> SwapOpportunity | str:
    """The converter's result, or the name of its error."""
    try:
        return _CONVERTER.structure(opportunity, SwapOpportunity)
    except Exception as exc:
        return type(exc).__name__


@pytest.mark.parametrize("opportunity", _swaps(60))
def test_generated_quotes_decode_as_the_converter_does(opportunity: dict[str, Any]) -> None:
    """Every quote the simulator generates (both sides, memo or not, big amounts) comes out of
    the fast path equal to the converter's object."""
    decoded = decode_server_frame(_frame(opportunity))
    assert decoded == _CONVERTER.structure(opportunity, SwapOpportunity)


# `program` and `version` choose the decoder before either path runs: not mutated here.
_FIELDS = [
    *sorted(set(_swaps(1)[0]) - {"program", "version"}),
    "tokens.user_amount",
    "tokens.side_specified",
]
_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=8),
    st.floats(allow_nan=False), st.lists(st.integers(min_value=0, max_value=9), max_size=2),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(index=st.integers(min_value=0, max_value=59), field=st.sampled_from(_FIELDS),
       value=_ODD_VALUES, drop=st.booleans())  # fmt: skip
def test_any_one_field_mutation_gets_the_converters_answer(
    index: int, field: str, value: Any, drop: bool
) -> None:
    """Changing or dropping any one field gives the converter's object, or a rejection where
    the converter rejects (never a different object, never another exception)."""
    opportunity = orjson.loads(orjson.dumps(_SWAPS[index]))
    target, _, key = field.rpartition(".")
    holder = opportunity[target] if target else opportunity
    if key in holder and drop:
        del holder[key]
    else:
        holder[key] = value
    expected = _by_converter(opportunity)
    try:
        decoded = decode_server_frame(_frame(opportunity))
    except ExpressRelayDecodeError:
        assert not isinstance(expected, SwapOpportunity)
    else:
        assert decoded == expected


_SWAPS = _swaps(60)
