"""Decode micro-benchmark: frames per second for every wire message type of both venues.

Run ``python -m benchmarks.decode [--seconds S | --iterations N]``. The frames are built with
the simulators' own generators and encoders (so they have the shapes and sizes the servers
send), each is decoded once up front to prove it decodes to the expected type, and each is then
decoded repeatedly: Express Relay frames with
``searcherd.express_relay.messages.decode_server_frame``, Fusion+ frames with
``searcherd.fusion_plus.messages.decode_frame``. The table gives frames/s, microseconds per
frame and the frame size.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import TYPE_CHECKING, Final

import attrs

from searcherd.express_relay import _sim_state as er_state
from searcherd.express_relay._sim_codec import encode_server_message
from searcherd.express_relay.messages import (
    BidStatus,
    BidStatusUpdate,
    OpportunityDelete,
    PostBidResult,
    Response,
    ServerMessage,
    SvmChainUpdate,
    decode_server_frame,
)
from searcherd.fusion_plus._sim_orders import make_order
from searcherd.fusion_plus.messages import (
    ActiveOrdersPage,
    FusionEvent,
    OrderAllowanceChange,
    OrderBalanceChange,
    OrderCancelled,
    OrderFilled,
    OrderFilledPartially,
    OrderInvalid,
    PageMeta,
    RpcResponse,
    SecretShared,
    SecretsResult,
    decode_frame,
    encode_event,
    encode_rpc_result,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Sample", "Timing", "express_relay_samples", "fusion_plus_samples", "main", "run"]

_NOW: Final = 1_767_225_600  # 2026-01-01, a fixed clock so every run decodes the same frames


@attrs.frozen
class Sample:
    """One frame to decode, the decoder, and the type its result must have."""

    venue: str
    name: str
    frame: str
    decode: Callable[[str], object]
    expect: type


@attrs.frozen
class Timing:
    """How fast one sample decoded."""

    sample: Sample
    iterations: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Frames decoded per second."""
        return self.iterations / self.seconds if self.seconds > 0 else 0.0


def express_relay_samples(seed: int = 0) -> list[Sample]:
    """One frame per Express Relay server message type (and variant)."""
    rng = random.Random(seed)
    chain = "solana"
    swap = er_state.make_swap(rng, chain, _NOW, cancellable=True)
    limo = er_state.make_limo(rng, chain, _NOW, 334_000_000)
    evm = er_state.make_evm(rng, "op_sepolia", _NOW)
    sig = "5" * 87  # base58 text of signature length; decoding does not check it
    messages: list[tuple[str, ServerMessage, bool]] = [
        ("new_opportunity swap", swap, False),
        ("new_opportunity limo", limo, False),
        ("new_opportunity evm", evm, False),
        ("svm_chain_update", SvmChainUpdate(chain, er_state.blockhash(rng), 12_345), False),
        (
            "bid_status_update",
            BidStatusUpdate(er_state.new_uuid(rng), BidStatus("won", sig)),
            False,
        ),
        (
            "bid_status_update evm",
            BidStatusUpdate(
                er_state.new_uuid(rng), BidStatus("submitted", "0x" + "ab" * 32, index=2)
            ),
            True,
        ),
        (
            "remove_opportunities svm",
            OpportunityDelete(
                "svm",
                chain,
                "v1",
                permission_account=limo.order_address,
                router=er_state.pubkey(rng),
                program="limo",
            ),
            False,
        ),
        (
            "remove_opportunities evm",
            OpportunityDelete("evm", "op_sepolia", "v1", permission_key=evm.permission_key),
            False,
        ),
        ("response post_bid", Response("7", True, PostBidResult(er_state.new_uuid(rng))), False),
        (
            "response error",
            Response("8", False, "No swap opportunity with the given id found"),
            False,
        ),
    ]
    out = []
    for name, msg, is_evm in messages:
        frame = encode_server_message(msg, evm=is_evm).decode()
        out.append(Sample("express_relay", name, frame, decode_server_frame, type(msg)))
    return out


def fusion_plus_samples(seed: int = 0) -> list[Sample]:
    """One frame per Fusion+ push event and RPC result type."""
    rng = random.Random(seed)
    order = make_order(rng, _NOW, parts=4)
    h = order.order_hash
    fill = order.record_fill(order.order.making_amount // 4, "0x" + "3c" * 20, _NOW + 30, rng)
    secret = order.public_secret(fill)
    remaining = order.remaining
    events: list[tuple[str, FusionEvent]] = [
        ("order_created", order.created_event()),
        ("order_balance_change", OrderBalanceChange(h, remaining, remaining)),
        ("order_allowance_change", OrderAllowanceChange(h, remaining, 0)),
        ("order_filled_partially", OrderFilledPartially(h, remaining)),
        ("secret_shared", SecretShared(secret)),
        ("order_filled", OrderFilled(h)),
        ("order_cancelled", OrderCancelled(h, remaining)),
        ("order_invalid", OrderInvalid(h)),
    ]
    out = [
        Sample(
            "fusion_plus",
            name,
            encode_event(event).decode(),
            decode_frame,
            type(event),
        )
        for name, event in events
    ]
    pages = [make_order(rng, _NOW, parts=p).active_item() for p in (1, 4, 1, 8, 1)]
    page = ActiveOrdersPage(
        tuple(pages), PageMeta(total_items=5, items_per_page=100, total_pages=1, current_page=1)
    )
    results: list[tuple[str, str, object]] = [
        ("rpc ping", "ping", "pong"),
        (
            "rpc getAllowedMethods",
            "getAllowedMethods",
            ["ping", "getAllowedMethods", "getActiveOrders", "getSecrets"],
        ),
        ("rpc getActiveOrders (5 orders)", "getActiveOrders", page),
        (
            "rpc getSecrets",
            "getSecrets",
            SecretsResult(
                order_type="MultipleFills",
                secrets=(secret,),
                secret_hashes=tuple(order.secret_hashes),
            ),
        ),
    ]
    out += [
        Sample(
            "fusion_plus",
            name,
            encode_rpc_result(method, result).decode(),
            decode_frame,
            RpcResponse,
        )
        for name, method, result in results
    ]
    return out


def _check(sample: Sample) -> None:
    got = sample.decode(sample.frame)
    if not isinstance(got, sample.expect):
        raise TypeError(
            f"{sample.venue} {sample.name}: decoded to {type(got).__name__}, "
            f"expected {sample.expect.__name__}"
        )


def time_sample(sample: Sample, *, iterations: int | None, seconds: float) -> Timing:
    """Decode ``sample`` ``iterations`` times, or for about ``seconds`` when not given."""
    decode, frame = sample.decode, sample.frame
    if iterations is None:
        # Calibrate on a short run, then size the timed run to last about `seconds`.
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min(0.05, seconds / 4):
            decode(frame)
            n += 1
        elapsed = time.perf_counter() - start
        iterations = max(1, int(n * seconds / max(elapsed, 1e-9)))
    start = time.perf_counter()
    for _ in range(iterations):
        decode(frame)
    return Timing(sample, iterations, time.perf_counter() - start)


def run(*, iterations: int | None = None, seconds: float = 0.5) -> list[Timing]:
    """Check and time every sample of both venues."""
    samples = express_relay_samples() + fusion_plus_samples()
    for s in samples:
        _check(s)
    return [time_sample(s, iterations=iterations, seconds=seconds) for s in samples]


def format_table(timings: Sequence[Timing]) -> str:
    """The results as an aligned text table."""
    rows = [["venue", "message", "frames/s", "us/frame", "bytes"]]
    for t in timings:
        us = 1e6 / t.per_second if t.per_second else 0.0
        rows.append(
            [
                t.sample.venue,
                t.sample.name,
                f"{t.per_second:,.0f}",
                f"{us:.1f}",
                str(len(t.sample.frame.encode())),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.decode``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decode", description=__doc__.split("\n\n")[0]
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seconds", type=float, default=0.5, help="time per message type")
    group.add_argument("--iterations", type=int, help="fixed decodes per message type")
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be >= 1")
    if args.seconds <= 0:
        parser.error("--seconds must be > 0")
    print(format_table(run(iterations=args.iterations, seconds=args.seconds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
