"""Decode and encode the limit-order (LOP v4) extension of a Fusion+ order.

Everything a resolver needs to price and fill a Fusion+ order lives in the order's `extension`
bytes, not in the order struct: the Dutch auction, the resolver whitelist, the fees, and the
cross-chain tail (hashlock, destination chain and token, safety deposits, timelocks).

Wire layout (big-endian, tightly packed):

* 32 bytes of eight uint32 cumulative end offsets (field *i* in bits ``[32i, 32i+32)``) for
  makerAssetSuffix, takerAssetSuffix, makingAmountData, takingAmountData, predicate,
  makerPermit, preInteraction, postInteraction; then the fields; then `customData`.
* makingAmountData == takingAmountData. v1.2: factory(20), auction header (uint24 gas bump,
  uint32 gas price, uint32 start, uint24 duration, uint24 initial bump), uint8 points count,
  points (uint24 coefficient, uint16 delay), 6 fee bytes, uint8 whitelist count, bytes10 each.
  v1.1: factory(20), auction header, points to the end of the field.
* postInteraction. v1.2: factory, integrator fee recipient, protocol fee recipient, 6 fee bytes,
  uint32 resolving start, uint8 N, N x (bytes10, uint16 delay). v1.1: factory, optional fee
  blocks, uint32 resolving start, N x (bytes10, uint16), one flags byte (top 5 bits N). Both end
  with 160 bytes: hashlock, dst chain id, dst token, src<<128|dst safety deposits, timelocks.

`decode_extension` reads v1.2 first and falls back to v1.1 (the WS feed carries no version; the
two layouts cannot be confused because a v1.2 amount field is always 3 mod 5 bytes past the
37-byte header and a v1.1 one 0 mod 5). `encode_extension` writes the same layouts, so the
simulator builds real orders and the decoder reads them back.
"""

from __future__ import annotations

from typing import Final

from searcherd.fusion_plus._abi import (
    ByteReader,
    ByteWriter,
    PackedDataError,
    hex_to_bytes,
    keccak256,
)
from searcherd.fusion_plus._ext_model import (
    ZERO_ADDRESS,
    AuctionDetails,
    AuctionPoint,
    Fees,
    LegacyFees,
    OrderExtension,
    Whitelist,
    WhitelistEntry,
    address_half,
)
from searcherd.fusion_plus._timelocks import Timelocks, TimelockStage

__all__ = [
    "ZERO_ADDRESS",
    "AuctionDetails",
    "AuctionPoint",
    "ExtensionDecodeError",
    "Fees",
    "LegacyFees",
    "OrderExtension",
    "TimelockStage",
    "Timelocks",
    "Whitelist",
    "WhitelistEntry",
    "address_half",
    "decode_extension",
    "encode_extension",
    "extension_hash",
    "salt_matches_extension",
]

_TAIL_LEN: Final = 160
_U160: Final = (1 << 160) - 1
_U128: Final = (1 << 128) - 1
_VERSIONS: Final = ("1.1", "1.2")
# Field indexes in the offsets word, in LOP order.
_N_FIELDS: Final = 8
_MAKING, _TAKING, _POST = 2, 3, 7


class ExtensionDecodeError(ValueError):
    """The extension hex is not a Fusion+ extension we can read; the message says why."""


# ---------------------------------------------------------------- decoding


def _split_fields(data: bytes) -> tuple[list[bytes], bytes]:
    if len(data) < 32:
        raise ExtensionDecodeError(
            f"extension is {len(data)} bytes, shorter than its 32-byte header"
        )
    word = int.from_bytes(data[:32], "big")
    body = data[32:]
    fields: list[bytes] = []
    start = 0
    for i in range(_N_FIELDS):
        end = (word >> (32 * i)) & 0xFFFFFFFF
        if end < start or end > len(body):
            raise ExtensionDecodeError(
                f"extension offset table is inconsistent: field {i} ends at {end}, "
                f"previous ended at {start}, body is {len(body)} bytes"
            )
        fields.append(body[start:end])
        start = end
    return fields, body[start:]


def _read_auction_header(r: ByteReader) -> tuple[int, int, int, int, int]:
    return (
        r.uint(3, "gasBumpEstimate"),
        r.uint(4, "gasPriceEstimate"),
        r.uint(4, "startTime"),
        r.uint(3, "duration"),
        r.uint(3, "initialRateBump"),
    )


def _read_points(r: ByteReader, count: int) -> tuple[AuctionPoint, ...]:
    return tuple(
        AuctionPoint(r.uint(3, f"point[{i}].coefficient"), r.uint(2, f"point[{i}].delay"))
        for i in range(count)
    )


def _read_fee_bytes(r: ByteReader) -> tuple[int, int, int, int]:
    return (
        r.uint(2, "integratorFee"),
        r.uint(1, "integratorShare"),
        r.uint(2, "resolverFee"),
        r.uint(1, "whitelistDiscountNumerator"),
    )


def _read_whitelist_entries(r: ByteReader, count: int) -> tuple[WhitelistEntry, ...]:
    return tuple(
        WhitelistEntry(r.take(10, f"whitelist[{i}]").hex(), r.uint(2, f"whitelist[{i}].delay"))
        for i in range(count)
    )


def _auction(
    header: tuple[int, int, int, int, int], pts: tuple[AuctionPoint, ...]
) -> AuctionDetails:
    gas_bump, gas_price, start, duration, bump = header
    return AuctionDetails(
        start_time=start,
        duration=duration,
        initial_rate_bump=bump,
        points=pts,
        gas_bump_estimate=gas_bump,
        gas_price_estimate=gas_price,
    )


def _decode_v12(making: bytes, post_head: bytes) -> dict[str, object]:
    r = ByteReader(making, what="makingAmountData (v1.2)")
    factory = r.address("factory")
    header = _read_auction_header(r)
    points = _read_points(r, r.uint(1, "pointsCount"))
    fee_bytes = _read_fee_bytes(r)
    n_halves = r.uint(1, "whitelistCount")
    halves = tuple(r.take(10, f"whitelist[{i}]").hex() for i in range(n_halves))
    r.expect_end()

    p = ByteReader(post_head, what="postInteraction (v1.2)")
    post_factory = p.address("factory")
    integrator_recipient = p.address("integratorFeeRecipient")
    protocol_recipient = p.address("protocolFeeRecipient")
    post_fee_bytes = _read_fee_bytes(p)
    resolving_start = p.uint(4, "resolvingStartTime")
    entries = _read_whitelist_entries(p, p.uint(1, "whitelistCount"))
    p.expect_end()
    if post_factory != factory:
        raise ExtensionDecodeError(f"postInteraction targets {post_factory}, amount data {factory}")
    if post_fee_bytes != fee_bytes:
        raise ExtensionDecodeError("fee bytes differ between amount data and postInteraction")
    int_fee, int_share, res_fee, discount = fee_bytes
    return {
        "version": "1.2",
        "factory": factory,
        "auction": _auction(header, points),
        "whitelist": Whitelist(resolving_start_time=resolving_start, entries=entries),
        "amount_whitelist": halves,
        "fees": Fees(
            integrator_fee=int_fee,
            integrator_share=int_share,
            resolver_fee=res_fee,
            whitelist_discount_numerator=discount,
            integrator_fee_recipient=integrator_recipient,
            protocol_fee_recipient=protocol_recipient,
        ),
    }


def _decode_v11(making: bytes, post_head: bytes) -> dict[str, object]:
    r = ByteReader(making, what="makingAmountData (v1.1)")
    factory = r.address("factory")
    header = _read_auction_header(r)
    if r.remaining % 5:
        raise ExtensionDecodeError(
            f"makingAmountData (v1.1): {r.remaining} bytes of points is not a multiple of 5"
        )
    points = _read_points(r, r.remaining // 5)

    if not post_head:
        raise ExtensionDecodeError("postInteraction (v1.1) has no flags byte")
    flags = post_head[-1]
    p = ByteReader(post_head[:-1], what="postInteraction (v1.1)")
    post_factory = p.address("factory")
    bank_fee = p.uint(4, "bankFee") if flags & 0x01 else None
    ratio = receiver = custom = None
    if flags & 0x02:
        ratio = p.uint(2, "integratorFeeRatio")
        receiver = p.address("integratorFeeReceiver")
        if flags & 0x04:
            custom = p.address("customReceiver")
    resolving_start = p.uint(4, "resolvingStartTime")
    entries = _read_whitelist_entries(p, flags >> 3)
    p.expect_end()
    if post_factory != factory:
        raise ExtensionDecodeError(f"postInteraction targets {post_factory}, amount data {factory}")
    return {
        "version": "1.1",
        "factory": factory,
        "auction": _auction(header, points),
        "whitelist": Whitelist(resolving_start_time=resolving_start, entries=entries),
        "amount_whitelist": (),
        "legacy_fees": LegacyFees(
            bank_fee=bank_fee,
            integrator_fee_ratio=ratio,
            integrator_fee_receiver=receiver,
            custom_receiver=custom,
        ),
    }


def _decode_tail(tail: bytes) -> dict[str, object]:
    r = ByteReader(tail, what="cross-chain data")
    hashlock = "0x" + r.take(32, "hashlock").hex()
    dst_chain_id = r.uint(32, "dstChainId")
    dst_token = r.uint(32, "dstToken")
    deposits = r.uint(32, "safetyDeposits")
    timelocks = Timelocks.from_int(r.uint(32, "timelocks"))
    return {
        "hashlock": hashlock,
        "dst_chain_id": dst_chain_id,
        "dst_token": dst_token,
        "src_safety_deposit": deposits >> 128,
        "dst_safety_deposit": deposits & _U128,
        "timelocks": timelocks,
    }


def decode_extension(hex_str: str, *, version: str | None = None) -> OrderExtension:
    """Decode a Fusion+ order extension (`0x` hex) into an `OrderExtension`.

    With `version` ("1.1" or "1.2", e.g. from an active-orders item) only that layout is tried;
    without it v1.2 is tried first, then v1.1. Raises `ExtensionDecodeError` saying what is
    wrong for anything that is not a well-formed Fusion+ extension; no other exception escapes.
    """
    if version is not None and version not in _VERSIONS:
        raise ExtensionDecodeError(f"unknown extension version {version!r}")
    if not isinstance(hex_str, str):
        raise ExtensionDecodeError(f"extension must be a hex string, got {type(hex_str).__name__}")
    try:
        data = hex_to_bytes(hex_str, what="extension")
    except PackedDataError as exc:
        raise ExtensionDecodeError(str(exc)) from None
    fields, custom_data = _split_fields(data)
    making, taking, post = fields[_MAKING], fields[_TAKING], fields[_POST]
    if not making:
        raise ExtensionDecodeError("extension has no makingAmountData: not a Fusion order")
    if making != taking:
        raise ExtensionDecodeError("makingAmountData and takingAmountData differ")
    if len(post) < _TAIL_LEN:
        raise ExtensionDecodeError(
            f"postInteraction is {len(post)} bytes, too short for the {_TAIL_LEN}-byte cross-chain data"
        )
    post_head, tail = post[:-_TAIL_LEN], post[-_TAIL_LEN:]

    layouts = [version] if version is not None else list(reversed(_VERSIONS))
    errors: list[str] = []
    parsed: dict[str, object] | None = None
    for layout in layouts:
        decoder = _decode_v12 if layout == "1.2" else _decode_v11
        try:
            parsed = decoder(making, post_head)
            break
        except (PackedDataError, ExtensionDecodeError) as exc:
            errors.append(f"v{layout}: {exc}")
    if parsed is None:
        raise ExtensionDecodeError("; ".join(errors))
    # The tail is exactly 160 bytes (checked above), so reading it cannot fail.
    parsed.update(_decode_tail(tail))
    return OrderExtension(
        **parsed,  # type: ignore[arg-type]
        maker_asset_suffix=fields[0],
        taker_asset_suffix=fields[1],
        predicate=fields[4],
        maker_permit=fields[5],
        pre_interaction=fields[6],
        custom_data=custom_data,
    )


# ---------------------------------------------------------------- encoding


def _write_auction(w: ByteWriter, a: AuctionDetails, *, with_count: bool) -> None:
    w.uint(a.gas_bump_estimate, 3, "gas_bump_estimate").uint(
        a.gas_price_estimate, 4, "gas_price_estimate"
    )
    w.uint(a.start_time, 4, "start_time").uint(a.duration, 3, "duration")
    w.uint(a.initial_rate_bump, 3, "initial_rate_bump")
    if with_count:
        w.uint(len(a.points), 1, "points count")
    for i, pt in enumerate(a.points):
        w.uint(pt.coefficient, 3, f"points[{i}].coefficient").uint(
            pt.delay, 2, f"points[{i}].delay"
        )


def _write_fee_bytes(w: ByteWriter, f: Fees) -> None:
    w.uint(f.integrator_fee, 2, "integrator_fee").uint(f.integrator_share, 1, "integrator_share")
    w.uint(f.resolver_fee, 2, "resolver_fee")
    w.uint(f.whitelist_discount_numerator, 1, "whitelist_discount_numerator")


def _write_whitelist(w: ByteWriter, wl: Whitelist, *, with_count: bool) -> None:
    w.uint(wl.resolving_start_time, 4, "resolving_start_time")
    if with_count:
        w.uint(len(wl.entries), 1, "whitelist count")
    for i, e in enumerate(wl.entries):
        w.raw(hex_to_bytes(e.address_half, what=f"whitelist[{i}]"), 10, field=f"whitelist[{i}]")
        w.uint(e.delay, 2, f"whitelist[{i}].delay")


def _amount_and_post_head(ext: OrderExtension) -> tuple[bytes, bytes]:
    amount, post = ByteWriter(), ByteWriter()
    amount.address(ext.factory, "factory")
    post.address(ext.factory, "factory")
    if ext.version == "1.2":
        if ext.legacy_fees != LegacyFees():
            raise PackedDataError("legacy_fees only exist in the v1.1 layout")
        _write_auction(amount, ext.auction, with_count=True)
        _write_fee_bytes(amount, ext.fees)
        amount.uint(len(ext.amount_whitelist), 1, "amount whitelist count")
        for i, half in enumerate(ext.amount_whitelist):
            amount.raw(
                hex_to_bytes(half, what=f"amount_whitelist[{i}]"),
                10,
                field=f"amount_whitelist[{i}]",
            )
        post.address(ext.fees.integrator_fee_recipient, "integrator_fee_recipient")
        post.address(ext.fees.protocol_fee_recipient, "protocol_fee_recipient")
        _write_fee_bytes(post, ext.fees)
        _write_whitelist(post, ext.whitelist, with_count=True)
        return amount.getvalue(), post.getvalue()
    if ext.fees != Fees() or ext.amount_whitelist:
        raise PackedDataError("fees and amount_whitelist only exist in the v1.2 layout")
    _write_auction(amount, ext.auction, with_count=False)
    lf = ext.legacy_fees
    flags = 0
    if lf.bank_fee is not None:
        flags |= 0x01
        post.uint(lf.bank_fee, 4, "bank_fee")
    if lf.integrator_fee_ratio is not None:
        if lf.integrator_fee_receiver is None:
            raise PackedDataError("integrator_fee_ratio needs integrator_fee_receiver")
        flags |= 0x02
        post.uint(lf.integrator_fee_ratio, 2, "integrator_fee_ratio")
        post.address(lf.integrator_fee_receiver, "integrator_fee_receiver")
        if lf.custom_receiver is not None:
            flags |= 0x04
            post.address(lf.custom_receiver, "custom_receiver")
    elif lf.integrator_fee_receiver is not None or lf.custom_receiver is not None:
        raise PackedDataError("v1.1 fee receivers need integrator_fee_ratio")
    if len(ext.whitelist.entries) > 31:
        raise PackedDataError("a v1.1 whitelist holds at most 31 resolvers")
    _write_whitelist(post, ext.whitelist, with_count=False)
    post.uint(flags | (len(ext.whitelist.entries) << 3), 1, "flags")
    return amount.getvalue(), post.getvalue()


def encode_extension(ext: OrderExtension) -> str:
    """Encode `ext` in its `version`'s layout as `0x` hex; `decode_extension` reads it back.

    Raises ValueError naming the field when a value does not fit its width (e.g. a start time
    past uint32, more than 255 points) or a field does not exist in that layout.
    """
    if ext.version not in _VERSIONS:
        raise PackedDataError(f"unknown extension version {ext.version!r}")
    amount, post_head = _amount_and_post_head(ext)
    tail = ByteWriter()
    tail.raw(hex_to_bytes(ext.hashlock, what="hashlock"), 32, field="hashlock")
    tail.uint(ext.dst_chain_id, 32, "dst_chain_id").uint(ext.dst_token, 32, "dst_token")
    tail.uint(ext.src_safety_deposit, 16, "src_safety_deposit")
    tail.uint(ext.dst_safety_deposit, 16, "dst_safety_deposit")
    tail.uint(ext.timelocks.to_int(), 32, "timelocks")
    fields = [
        ext.maker_asset_suffix,
        ext.taker_asset_suffix,
        amount,
        amount,
        ext.predicate,
        ext.maker_permit,
        ext.pre_interaction,
        post_head + tail.getvalue(),
    ]
    word, end = 0, 0
    for i, field in enumerate(fields):
        end += len(field)
        word |= end << (32 * i)
    if end > 0xFFFFFFFF:  # pragma: no cover - would need a 4 GiB extension
        raise PackedDataError("extension too large")
    return "0x" + (word.to_bytes(32, "big") + b"".join(fields) + ext.custom_data).hex()


def extension_hash(hex_str: str) -> int:
    """keccak256 of the extension bytes, as an int."""
    return int.from_bytes(keccak256(hex_to_bytes(hex_str, what="extension")), "big")


def salt_matches_extension(salt: int, hex_str: str) -> bool:
    """Whether the order's salt binds this extension (low 160 bits equal keccak256(extension)).

    An order whose salt does not match carries a substituted extension: never fill it.
    Malformed hex simply does not match.
    """
    try:
        return (salt & _U160) == (extension_hash(hex_str) & _U160)
    except ValueError:
        return False
