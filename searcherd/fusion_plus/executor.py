"""Where a Fusion+ fill decision goes after the risk gate: the resolver executor.

Executing a fill is on-chain work (deploy the source escrow through our resolver contract, then
the destination escrow, then withdraw with the secret), which this daemon does not do: it ships
`RecordingExecutor`, which only logs the intent. Anything with an `execute(intent, order)`
coroutine can be plugged into the venue instead, e.g. a bridge to an existing resolver service.
The venue has already recorded the intent in the state table before calling it, and never calls
it in dry-run mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import structlog
import trio

from searcherd.bids import FillIntent
from searcherd.fusion_plus.orderbook import FusionOrder

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FillQueue", "RecordingExecutor", "ResolverExecutor"]

_Job = "tuple[str, str, FillIntent, FusionOrder]"  # local id, strategy, intent, order

_log = structlog.get_logger(__name__)


class ResolverExecutor(Protocol):
    """Carries out a fill intent (on chain, or by handing it to another system).

    Called one intent at a time from the venue's executor task; an exception is logged and
    counted, never fatal. Cancellation means the daemon is stopping.
    """

    async def execute(self, intent: FillIntent, order: FusionOrder) -> None:
        """Execute `intent` against the order snapshot it was decided on."""
        ...


class RecordingExecutor:
    """The default executor: logs `fill_intent_recorded` and does nothing else.

    `executed` keeps every intent handed over (for tests and `searcherd` status output).
    """

    def __init__(self) -> None:
        self.executed: list[FillIntent] = []

    async def execute(self, intent: FillIntent, order: FusionOrder) -> None:
        """Log the intent; no fill is executed on chain."""
        await trio.lowlevel.checkpoint()
        self.executed.append(intent)
        _log.info(
            "fill_intent_recorded",
            order_hash=intent.order_hash,
            src_chain=intent.src_chain_id,
            dst_chain=order.dst_chain_id,
            making_amount=str(intent.making_amount),
            taking_amount=None if intent.taking_amount is None else str(intent.taking_amount),
            order_status=order.status,
        )


class FillQueue:
    """Hands fill intents to a `ResolverExecutor` one at a time, in order, off the hot path.

    `put` never blocks (the venue calls it from the synchronous `submit`): a full queue refuses.
    `on_done(local_id, strategy, intent, error)` is called after each execution (`error` None on
    success), so the venue can release the risk slot and report a failure; `drain` waits until
    nothing is queued or executing.
    """

    def __init__(
        self,
        executor: ResolverExecutor,
        on_done: Callable[[str, str, FillIntent, Exception | None], None],
        *,
        size: int = 256,
    ) -> None:
        self.executor = executor
        self._on_done = on_done
        self._send, self._recv = trio.open_memory_channel[tuple[str, str, FillIntent, FusionOrder]](
            size
        )
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Intents queued or executing."""
        return self._pending

    def put(self, local_id: str, strategy: str, intent: FillIntent, order: FusionOrder) -> bool:
        """Queue one intent; False (nothing queued) when the queue is full."""
        try:
            self._send.send_nowait((local_id, strategy, intent, order))
        except trio.WouldBlock:
            return False
        if self._idle.is_set():
            self._idle = trio.Event()
        self._pending += 1
        return True

    async def run(self) -> None:
        """Execute queued intents until cancelled; an executor error never ends the loop."""
        async for local_id, strategy, intent, order in self._recv:
            error: Exception | None = None
            try:
                await self.executor.execute(intent, order)
            except Exception as exc:  # an executor bug must not stop later fills
                _log.exception("fusion_executor_failed", order_hash=intent.order_hash)
                error = exc
            finally:
                self._pending -= 1
                if not self._pending:
                    self._idle.set()
            self._on_done(local_id, strategy, intent, error)

    async def drain(self) -> None:
        """Wait until every queued intent has been executed."""
        while self._pending:
            await self._idle.wait()
