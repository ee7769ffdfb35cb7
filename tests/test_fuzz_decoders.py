"""Fuzzing of the decoders the other test files do not already fuzz, and of the venue's dispatch.

Already fuzzed next to their code (not repeated here): Express Relay ``decode_server_frame`` and
the simulator's ``decode_client_frame`` (``test_express_relay_messages.py``), Fusion+
``decode_frame`` on bytes and on JSON envelopes (``test_fusion_messages.py``), and the Fusion+
extension decoder on bytes and mutated fixtures (``test_fusion_extension.py``).

Added here: the Express Relay HTTP body decoders, Limo ``decode_order`` on any bytes, the
Express Relay metadata and instruction decoders, ``parse_config`` on any TOML text and on any
TOML document, and random frames through the REAL venue dispatch: the simulator's ``send_raw``
writes them on a real socket and the venue's reader must survive and count every rejection.
Example counts stay modest: this runs in CI.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import TYPE_CHECKING, Any, Final

import orjson
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from searcherd.config import Config, ConfigError, parse_config
from searcherd.express_relay._sim_codec import encode_server_message
from searcherd.express_relay.messages import (
    BidStatus,
    BidStatusUpdate,
    ExpressRelayDecodeError,
    Response,
    SvmChainUpdate,
    decode_bid_status_http,
    decode_http_error,
    decode_opportunities_http,
    decode_post_bid_http,
    decode_server_frame,
)
from searcherd.svm.instructions import (
    InstructionDecodeError,
    decode_compute_unit_price,
    decode_submit_bid_args,
    decode_swap_v2_args,
)
from searcherd.svm.limo import OrderDecodeError, decode_order
from searcherd.svm.metadata import MetadataError, decode_metadata

if TYPE_CHECKING:
    import trio.testing
    from conftest import ErHarness

_FUZZ: Final = settings(max_examples=150, deadline=None)

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_KEYS: Final = ("type", "result", "reason", "index", "status", "id", "error", "items", "chain_id")
# JSON objects with the keys the decoders look for, holding any JSON value.
_shaped = st.dictionaries(st.sampled_from(_KEYS), _json, max_size=5)


def _dumps(value: Any) -> bytes:
    """JSON text of ``value``; the stdlib writes integers of any size, as a server may."""
    return json.dumps(value).encode()


_bodies = st.binary(max_size=200) | (_json | _shaped).map(_dumps)


@_FUZZ
@given(_bodies | st.lists(_shaped, max_size=3).map(_dumps))
def test_http_body_decoders_give_a_value_or_a_decode_error(body: bytes) -> None:
    """Any body gives each Express Relay HTTP decoder's value or ExpressRelayDecodeError;
    ``decode_http_error`` always gives text."""
    kinds = []
    for decode in (decode_bid_status_http, decode_opportunities_http, decode_post_bid_http):
        try:
            decode(body)
        except ExpressRelayDecodeError as exc:
            kinds.append(exc.kind)
    assert all(kinds)
    assert isinstance(decode_http_error(body), str)


_ORDER_SIZE: Final = 8 + 32 * 6 + 8 * 5 + 1 * 4  # roughly the account size; any length is tried


@_FUZZ
@given(st.binary(max_size=400))
def test_limo_decode_order_gives_an_order_or_order_decode_error(data: bytes) -> None:
    """Any bytes give a LimoOrder or OrderDecodeError (including the right length with a
    random body)."""
    for candidate in (data, data.ljust(_ORDER_SIZE, b"\0")):
        with contextlib.suppress(OrderDecodeError):
            decode_order(candidate)


@_FUZZ
@given(st.binary(max_size=200))
def test_svm_account_and_instruction_decoders_never_escape(data: bytes) -> None:
    """Any bytes give a value or the decoder's own error for metadata and instruction data."""
    with contextlib.suppress(MetadataError):
        decode_metadata(data)
    for decode in (decode_submit_bid_args, decode_swap_v2_args):
        with contextlib.suppress(InstructionDecodeError):
            decode(data)
    price = decode_compute_unit_price(data)
    assert price is None or isinstance(price, int)


def _parses_or_config_error(text: str) -> None:
    outcome: Config | list[str]
    try:
        outcome = parse_config(text, environ={})
    except ConfigError as exc:
        outcome = exc.problems
    # A Config, or a non-empty list of problems, each one a line of text.
    assert isinstance(outcome, Config) or (outcome and all(isinstance(p, str) for p in outcome))


@_FUZZ
@given(st.text(max_size=300))
def test_parse_config_on_any_text_gives_config_or_config_error(text: str) -> None:
    """Any text gives a Config or a ConfigError listing problems, never another exception."""
    _parses_or_config_error(text)


_TABLES: Final = (
    "daemon", "log", "state", "health", "limits", "evaluator", "express_relay", "fusion_plus",
    "strategies",
)  # fmt: skip
_CONFIG_KEYS: Final = (
    "enabled", "level", "format", "path", "listen", "api_key", "chains", "ws_url", "http_url",
    "max_in_flight", "inbox_size", "drop_policy", "request_timeout", "backoff_max",
    "liveness_window", "commit_interval", "kill_file", "shutdown_grace", "dry_run", "margin_bps",
)  # fmt: skip
_toml_scalars = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["env:NOPE", "file:/nonexistent", "credential:x", "ws://h/x", "oldest"])
)
_toml_values = st.recursive(
    _toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_CONFIG_KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
_documents = st.dictionaries(
    st.sampled_from(_TABLES) | st.text(max_size=6),
    st.dictionaries(st.sampled_from(_CONFIG_KEYS) | st.text(max_size=6), _toml_values, max_size=5),
    max_size=5,
)


@_FUZZ
@given(_documents)
def test_parse_config_on_any_toml_document_gives_config_or_config_error(doc: Any) -> None:
    """Any TOML document with the config's table and key names, holding any value, gives a
    Config or a ConfigError, never another exception."""
    _parses_or_config_error(tomli_w.dumps(doc))


# -- random frames through the real venue dispatch -------------------------------------------


def _valid_frames() -> list[bytes]:
    return [
        encode_server_message(SvmChainUpdate("solana", "11111111111111111111111111111111", 5)),
        encode_server_message(
            BidStatusUpdate("c0ffee00-0000-4000-8000-000000000001", BidStatus("won", "sig"))
        ),
        encode_server_message(Response("999", True, None)),
        b'{"type": "new_opportunity", "opportunity": {"version": "v1", "program": "swap"}}',
        b'{"type": "remove_opportunities", "opportunity_delete": {"chain_type": "svm"}}',
    ]


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame)
    match rng.randrange(5):
        case 0:  # truncate
            return bytes(data[: rng.randrange(len(data))])
        case 1:  # flip bytes
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            return bytes(data)
        case 2:  # random JSON value
            value: Any = rng.choice([None, 1, -(2**70), "x", [], {}, {"type": None}, [{"id": 1}]])
            return _dumps(value)
        case 3:  # raw garbage
            return rng.randbytes(rng.randrange(1, 64))
        case _:  # a valid frame of a known type, a field swapped for junk
            doc = orjson.loads(frame)
            key = rng.choice(list(doc))
            doc[key] = rng.choice([None, 7, "?", [1], {"a": 1}])
            return orjson.dumps(doc)


def _rejections(er: ErHarness) -> float:
    total = 0.0
    for counter in (er.metrics.decode_errors, er.metrics.unknown_messages):
        for metric in counter.collect():
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def test_random_frames_through_the_real_venue_are_counted_and_the_reader_survives(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Hundreds of mutated, truncated and random frames (text and binary) on a real socket:
    every one the decoder rejects is counted, the reader never fails, the link stays up, and a
    good opportunity afterwards is still offered."""
    sim = await er.start()
    venue = await er.start_venue()
    rng = random.Random(20261121)
    frames: list[str | bytes] = []
    for _ in range(400):
        raw = _mutate(rng, rng.choice(_valid_frames()))
        # Half as text frames, half as binary frames: the reader takes both.
        frames.append(raw.decode("utf-8", "replace") if rng.random() < 0.5 else raw)
    expected = 0
    for frame in frames:
        try:
            decode_server_frame(frame)
        except ExpressRelayDecodeError:
            expected += 1
    before = _rejections(er)
    for frame in frames:
        sim.send_raw(frame)
    opp = sim.push_opportunity(program="limo")
    await er.wait_until(lambda: any(o.opportunity_id == opp.opportunity_id
                                    for _, o, _ in er.sink.offers))  # fmt: skip
    assert _rejections(er) - before == expected
    assert expected > 300
    assert venue._connection.health.handler_errors == 0
    assert venue.snapshot()["reconnects"] == 0
    assert venue.snapshot()["healthy"] is True
