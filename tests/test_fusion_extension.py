"""Tests for `searcherd.fusion_plus.extension`: v1.2 / v1.1 decoding, encoding, round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searcherd.fusion_plus.extension import (
    ZERO_ADDRESS,
    AuctionDetails,
    AuctionPoint,
    ExtensionDecodeError,
    Fees,
    LegacyFees,
    OrderExtension,
    Timelocks,
    TimelockStage,
    Whitelist,
    WhitelistEntry,
    address_half,
    decode_extension,
    encode_extension,
    salt_matches_extension,
)

# A real v1.2 extension: auction 1767225600 + 180 s, bump 50000 -> 30000 -> 10000, one
# whitelisted resolver, no fees, 4 secrets, dst = USDC on Arbitrum.
V12 = "0x000001750000008200000082000000820000008200000041000000000000000003a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa000000000000006955b9000000b400c35002007530003c002710003c000000000064015dd299e03d12fa4293bc03a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa000000000000006955b9000000b400c35002007530003c002710003c000000000064015dd299e03d12fa4293bc03a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000006400000000015dd299e03d12fa4293bc000000036143b53f264e10e8e7a6876abd9b19a2059c474c5d62e58140e832c92a5a000000000000000000000000000000000000000000000000000000000000a4b1000000000000000000000000af88d065e77c8cc2239327c5edb3a432268e5831000000000000000000005af3107a4000000000000000000000002d79883d200000000000000003b8000001c40000000c00000458000003f4000002000000000c"
V12_SALT = 6811370099147435465528388147507277822401048626796964
RESOLVER = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"

# A v1.1 extension assembled field by field (independently of the encoder).
_V1_FACTORY = "a7bcb4eac8964306f9e3764f67db6a7af6ddf99a"
_V11_AMOUNT = (
    _V1_FACTORY
    + "0003e8"  # gasBumpEstimate 1000
    + "000003e8"  # gasPriceEstimate 1000 (1 gwei)
    + "6955b900"  # start 1767225600
    + "0000b4"  # duration 180
    + "00c350"  # initial bump 50000
    + "007530003c"  # (30000, 60 s)
    + "002710003c"  # (10000, 60 s)
)
_V11_POST = (
    _V1_FACTORY
    + "0032"  # integrator fee ratio 50
    + "11" * 20  # integrator fee receiver
    + "22" * 20  # custom receiver
    + "6955b8f0"  # resolving start 1767225584
    + "5dd299e03d12fa4293bc0000"  # resolver 1, delay 0
    + "aaaaaaaaaaaaaaaaaaaa000a"  # resolver 2, delay 10
    + "16"  # flags: 2 resolvers << 3 | custom receiver | integrator fee
    + "ab" * 32  # hashlock
    + f"{56:064x}"  # dst chain id
    + "00" * 12
    + "55d398326f99059ff775485246999027b3197955"  # dst token
    + f"{(7 << 128) | 9:064x}"  # safety deposits src 7, dst 9
    + f"{(3 << 192) | (2 << 32) | 1:064x}"  # timelocks
)
V11 = "0x" + "00000159" + "0000005e" * 4 + "0000002f" + "00000000" * 2 + _V11_AMOUNT * 2 + _V11_POST


class TestDecodeV12:
    def test_fixture_decodes_every_field(self) -> None:
        """The v1.2 fixture gives the auction, whitelist, fees and cross-chain tail exactly."""
        ext = decode_extension(V12)
        assert ext.version == "1.2"
        assert ext.factory == "0x03a25b3215a0e5c15cf23ac4d2e5cf86c0ff7efa"
        assert ext.auction == AuctionDetails(
            start_time=1767225600,
            duration=180,
            initial_rate_bump=50000,
            points=(AuctionPoint(30000, 60), AuctionPoint(10000, 60)),
        )
        assert ext.auction.end_time == 1767225780
        assert ext.whitelist == Whitelist(
            resolving_start_time=0, entries=(WhitelistEntry("5dd299e03d12fa4293bc", 0),)
        )
        assert ext.amount_whitelist == ("5dd299e03d12fa4293bc",)
        assert ext.fees == Fees()
        assert ext.fees.integrator_fee_recipient == ext.fees.protocol_fee_recipient == ZERO_ADDRESS
        assert ext.hashlock == "0x00036143b53f264e10e8e7a6876abd9b19a2059c474c5d62e58140e832c92a5a"
        assert ext.parts_count == 3
        assert ext.dst_chain_id == 42161
        assert ext.dst_token_address == "0xaf88d065e77c8cc2239327c5edb3a432268e5831"
        assert (ext.src_safety_deposit, ext.dst_safety_deposit) == (10**14, 5 * 10**13)
        assert ext.timelocks == Timelocks(
            src_withdrawal=12,
            src_public_withdrawal=512,
            src_cancellation=1012,
            src_public_cancellation=1112,
            dst_withdrawal=12,
            dst_public_withdrawal=452,
            dst_cancellation=952,
        )
        assert ext.custom_data == b""
        assert ext.predicate == ext.maker_permit == ext.pre_interaction == b""

    def test_fixture_re_encodes_byte_for_byte(self) -> None:
        """encode_extension(decode_extension(x)) reproduces the fixture exactly."""
        assert encode_extension(decode_extension(V12)) == V12
        assert decode_extension(V12, version="1.2") == decode_extension(V12)

    def test_salt_binds_the_extension(self) -> None:
        """The order salt's low 160 bits equal keccak(extension); other salts do not match."""
        assert salt_matches_extension(V12_SALT, V12)
        assert not salt_matches_extension(V12_SALT + 1, V12)
        assert not salt_matches_extension(V12_SALT, "0xzz")

    def test_whitelist_allow_from_and_execution(self) -> None:
        """The listed resolver may fill from the resolving start; others never."""
        wl = decode_extension(V12).whitelist
        assert address_half(RESOLVER) == "5dd299e03d12fa4293bc"
        assert wl.is_whitelisted(RESOLVER.upper().replace("0X", "0x"))
        assert wl.allow_from(RESOLVER) == 0
        assert wl.can_execute_at(RESOLVER, 1767225600)
        other = "0x" + "12" * 20
        assert wl.allow_from(other) is None
        assert not wl.can_execute_at(other, 1767225600)

    def test_forcing_the_wrong_layout_fails_clearly(self) -> None:
        """Decoding the v1.2 fixture as v1.1 raises ExtensionDecodeError naming v1.1."""
        with pytest.raises(ExtensionDecodeError, match=r"v1\.1"):
            decode_extension(V12, version="1.1")


class TestDecodeV11:
    def test_v11_fields_decode(self) -> None:
        """A v1.1 extension (no counts, flags byte, legacy fee blocks) decodes via fallback."""
        ext = decode_extension(V11)
        assert ext.version == "1.1"
        assert ext.factory == "0x" + _V1_FACTORY
        assert ext.auction.gas_bump_estimate == ext.auction.gas_price_estimate == 1000
        assert ext.auction.points == (AuctionPoint(30000, 60), AuctionPoint(10000, 60))
        assert ext.legacy_fees == LegacyFees(
            bank_fee=None,
            integrator_fee_ratio=50,
            integrator_fee_receiver="0x" + "11" * 20,
            custom_receiver="0x" + "22" * 20,
        )
        assert ext.fees == Fees()
        assert ext.amount_whitelist == ()
        assert ext.whitelist.resolving_start_time == 1767225584
        assert ext.whitelist.allow_from("0x" + "aa" * 20) == 1767225594
        assert not ext.whitelist.can_execute_at("0x" + "aa" * 20, 1767225590)
        assert ext.dst_chain_id == 56
        assert ext.dst_token_address == "0x55d398326f99059ff775485246999027b3197955"
        assert (ext.src_safety_deposit, ext.dst_safety_deposit) == (7, 9)
        assert (ext.timelocks.src_withdrawal, ext.timelocks.src_public_withdrawal) == (1, 2)
        assert ext.timelocks.dst_cancellation == 3

    def test_v11_re_encodes_byte_for_byte(self) -> None:
        """The v1.1 encoder reproduces the hand-assembled bytes exactly."""
        assert encode_extension(decode_extension(V11, version="1.1")) == V11


def _patched(hex_str: str, byte_index: int, value: int) -> str:
    data = bytearray(bytes.fromhex(hex_str[2:]))
    data[byte_index] = value
    return "0x" + data.hex()


class TestDecodeErrors:
    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            ("0x", "shorter than its 32-byte header"),
            ("0xabc", "odd number"),
            ("0xzz", "not hex"),
            ("0x" + "00" * 32, "no makingAmountData"),
            ("0x" + "ff" * 40, "offset table is inconsistent"),
            (V12[:-2], "offset table is inconsistent"),
        ],
    )
    def test_malformed_input_raises_a_clear_error(self, bad: str, message: str) -> None:
        """Empty, non-hex, odd, header-only and truncated input raise with a clear message."""
        with pytest.raises(ExtensionDecodeError, match=message):
            decode_extension(bad)

    def test_making_and_taking_data_must_match(self) -> None:
        """A takingAmountData that differs from makingAmountData is rejected."""
        bad = _patched(V12, 32 + 0x41 + 30, 0x01)
        with pytest.raises(ExtensionDecodeError, match="differ"):
            decode_extension(bad)

    def test_fee_bytes_must_agree(self) -> None:
        """Post-interaction fee bytes that disagree with the amount data are rejected."""
        bad = _patched(V12, 32 + 0x82 + 65, 0x50)
        with pytest.raises(ExtensionDecodeError, match="fee bytes differ"):
            decode_extension(bad, version="1.2")

    def test_non_string_and_unknown_version(self) -> None:
        """A non-string input or an unknown version raise ExtensionDecodeError."""
        with pytest.raises(ExtensionDecodeError, match="hex string"):
            decode_extension(b"\x00")  # type: ignore[arg-type]
        with pytest.raises(ExtensionDecodeError, match="version"):
            decode_extension(V12, version="2.0")

    @settings(max_examples=300)
    @given(st.data())
    def test_mutated_fixture_never_escapes(self, data: st.DataObject) -> None:
        """Truncated or corrupted extensions give an OrderExtension or ExtensionDecodeError."""
        raw = bytearray(bytes.fromhex(V12[2:]))
        cut = data.draw(st.integers(0, len(raw)))
        raw = raw[:cut]
        for _ in range(data.draw(st.integers(0, 3))):
            if raw:
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        outcome: object
        try:
            outcome = decode_extension("0x" + raw.hex())
        except ExtensionDecodeError:
            outcome = "error"
        assert isinstance(outcome, OrderExtension) or outcome == "error"

    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_never_escape(self, raw: bytes) -> None:
        """Arbitrary bytes give an OrderExtension or ExtensionDecodeError, nothing else."""
        outcome: object
        try:
            outcome = decode_extension("0x" + raw.hex())
        except ExtensionDecodeError:
            outcome = "error"
        assert isinstance(outcome, OrderExtension) or outcome == "error"


class TestTimelocks:
    def test_secret_shared_timelocks_give_absolute_stage_times(self) -> None:
        """The deployed src timelocks give deployedAt and absolute stage start times."""
        word = 0x6955B932000003B8000001C40000000C00000458000003F4000002000000000C
        tl = Timelocks.from_int(word)
        assert tl.deployed_at == 1767225650
        assert tl.at(TimelockStage.SRC_WITHDRAWAL) == 1767225662
        assert tl.at(TimelockStage.SRC_PUBLIC_CANCELLATION) == 1767225650 + 1112
        assert tl.at(TimelockStage.DST_CANCELLATION) == 1767225650 + 952
        assert tl.to_int() == word

    def test_with_deployed_at_sets_only_the_top_word(self) -> None:
        """with_deployed_at keeps the delays and sets deployedAt (bits 224..255)."""
        tl = decode_extension(V12).timelocks.with_deployed_at(100)
        assert tl.to_int() >> 224 == 100
        assert tl.delay(TimelockStage.DST_WITHDRAWAL) == 12

    def test_out_of_range_values_are_refused(self) -> None:
        """Values past uint256 or a stage past uint32 raise ValueError."""
        with pytest.raises(ValueError, match="uint256"):
            Timelocks.from_int(1 << 256)
        with pytest.raises(ValueError, match="uint32"):
            Timelocks(1 << 32, 0, 0, 0, 0, 0, 0)

    @given(st.integers(0, 2**256 - 1))
    def test_pack_unpack_round_trips(self, word: int) -> None:
        """from_int and to_int are inverse over all uint256 values."""
        assert Timelocks.from_int(word).to_int() == word


class TestEncode:
    def _base(self, **changes: object) -> OrderExtension:
        ext = decode_extension(V12)
        return OrderExtension(
            **{
                "factory": ext.factory,
                "auction": ext.auction,
                "whitelist": ext.whitelist,
                "hashlock": ext.hashlock,
                "dst_chain_id": ext.dst_chain_id,
                "dst_token": ext.dst_token,
                "src_safety_deposit": ext.src_safety_deposit,
                "dst_safety_deposit": ext.dst_safety_deposit,
                "timelocks": ext.timelocks,
            }
            | changes  # type: ignore[arg-type]
        )

    def test_defaults_build_the_fixture(self) -> None:
        """Built from parameters with defaults, the encoder reproduces the real extension."""
        assert encode_extension(self._base()) == V12

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            (
                {"auction": AuctionDetails(start_time=1 << 32, duration=1, initial_rate_bump=0)},
                "start_time",
            ),
            ({"src_safety_deposit": 1 << 128}, "src_safety_deposit"),
            ({"hashlock": "0x12"}, "hashlock"),
            ({"version": "1.1", "fees": Fees(resolver_fee=1)}, "only exist in the v1.2 layout"),
            ({"legacy_fees": LegacyFees(bank_fee=1)}, "only exist in the v1.1 layout"),
            ({"version": "9"}, "unknown extension version"),
        ],
    )
    def test_bad_parameters_raise_value_error(
        self, changes: dict[str, object], message: str
    ) -> None:
        """Values that do not fit or fields foreign to the layout raise ValueError naming them."""
        with pytest.raises(ValueError, match=message):
            encode_extension(self._base(**changes))


# ---------------------------------------------------------------- property round-trips

_u = st.integers
_addr = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_half = st.binary(min_size=10, max_size=10).map(bytes.hex)
_auction = st.builds(
    AuctionDetails,
    start_time=_u(0, 2**32 - 1),
    duration=_u(0, 2**24 - 1),
    initial_rate_bump=_u(0, 2**24 - 1),
    points=st.lists(st.builds(AuctionPoint, _u(0, 2**24 - 1), _u(0, 2**16 - 1)), max_size=6).map(
        tuple
    ),
    gas_bump_estimate=_u(0, 2**24 - 1),
    gas_price_estimate=_u(0, 2**32 - 1),
)
_timelocks = st.builds(Timelocks, *[_u(0, 2**32 - 1)] * 7)
_common = {
    "factory": _addr,
    "auction": _auction,
    "hashlock": st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex()),
    "dst_chain_id": _u(0, 2**256 - 1),
    "dst_token": _u(0, 2**256 - 1),
    "src_safety_deposit": _u(0, 2**128 - 1),
    "dst_safety_deposit": _u(0, 2**128 - 1),
    "timelocks": _timelocks,
    "maker_asset_suffix": st.binary(max_size=8),
    "taker_asset_suffix": st.binary(max_size=8),
    "predicate": st.binary(max_size=8),
    "maker_permit": st.binary(max_size=8),
    "pre_interaction": st.binary(max_size=8),
    "custom_data": st.binary(max_size=32),
}


def _whitelist(max_entries: int) -> st.SearchStrategy[Whitelist]:
    return st.builds(
        Whitelist,
        resolving_start_time=_u(0, 2**32 - 1),
        entries=st.lists(
            st.builds(WhitelistEntry, _half, _u(0, 2**16 - 1)), max_size=max_entries
        ).map(tuple),
    )


_v12 = st.builds(
    OrderExtension,
    version=st.just("1.2"),
    whitelist=_whitelist(8),
    fees=st.builds(
        Fees,
        integrator_fee=_u(0, 2**16 - 1),
        integrator_share=_u(0, 255),
        resolver_fee=_u(0, 2**16 - 1),
        whitelist_discount_numerator=_u(0, 255),
        integrator_fee_recipient=_addr,
        protocol_fee_recipient=_addr,
    ),
    **_common,
)
_legacy = st.one_of(
    st.builds(LegacyFees, bank_fee=st.none() | _u(0, 2**32 - 1)),
    st.builds(
        LegacyFees,
        bank_fee=st.none() | _u(0, 2**32 - 1),
        integrator_fee_ratio=_u(0, 2**16 - 1),
        integrator_fee_receiver=_addr,
        custom_receiver=st.none() | _addr,
    ),
)
_v11 = st.builds(
    OrderExtension, version=st.just("1.1"), whitelist=_whitelist(31), legacy_fees=_legacy, **_common
)


@settings(max_examples=200)
@given(_v12 | _v11)
def test_encode_decode_round_trips(ext: OrderExtension) -> None:
    """Any encodable extension decodes back equal, with the layout detected automatically."""
    encoded = encode_extension(ext)
    assert decode_extension(encoded) == ext
    assert decode_extension(encoded, version=ext.version) == ext
    assert encode_extension(decode_extension(encoded)) == encoded
