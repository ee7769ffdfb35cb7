"""Fault switches of the Express Relay simulator, mixed into :class:`.simulator.ExpressRelaySimulator`.

Tests (and later the CLI) call these to break the server on purpose: TCP drops, going-away
closes, stalls, malformed / unknown / oversized frames, late, delayed, duplicated or reordered
responses, rejected upgrades, unknown statuses and the "too far behind" drop. Responses always go
through :meth:`SimFaults._respond` so the response faults apply to every request.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from ._sim_codec import encode_response
from .messages import BidStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._sim_conn import SimConnection
    from ._sim_state import BidRecord, SimulatorConfig
    from .messages import Response

__all__ = ["SimFaults"]


class SimFaults:
    """Fault switches and the response path they act on."""

    config: SimulatorConfig
    connections: dict[int, SimConnection]
    bids: dict[str, BidRecord]
    set_bid_status: Callable[[str, BidStatus], None]  # the simulator's: force a status now

    def _init_faults(self) -> None:
        self._reject_queue: deque[int] = deque()
        self._response_delay = 0.0
        self._delay_count: int | None = None
        self._duplicate = False
        self._reorder_n = 0
        self._held: list[tuple[SimConnection, list[str]]] = []

    def _respond(self, conn: SimConnection, resp: Response) -> None:
        frame = encode_response(resp).decode()
        frames = [frame, frame] if self._duplicate else [frame]
        if self._reorder_n > 0:
            self._held.append((conn, frames))
            if len(self._held) >= self._reorder_n:
                held, self._held, self._reorder_n = self._held, [], 0
                for c, fs in reversed(held):
                    for f in fs:
                        c.push(f)
            return
        delay = self._response_delay
        if self._delay_count is not None:
            self._delay_count -= 1
            if self._delay_count <= 0:
                self._response_delay, self._delay_count = 0.0, None
        if delay > 0 and conn.nursery is not None:
            conn.nursery.start_soon(self._push_later, conn, frames, delay)
        else:
            for f in frames:
                conn.push(f)

    async def _push_later(self, conn: SimConnection, frames: list[str], delay: float) -> None:
        await trio.sleep(delay)
        for f in frames:
            conn.push(f)

    def drop_all_connections(self) -> None:
        """Reset every open connection at the TCP level (client sees 1006)."""
        for conn in list(self.connections.values()):
            conn.drop("fault_drop")

    def close_all_connections(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every open connection with a Close frame carrying ``code``."""
        for conn in list(self.connections.values()):
            if conn.nursery is not None:
                conn.nursery.start_soon(self._close, conn, code, reason)

    async def _close(self, conn: SimConnection, code: int, reason: str) -> None:
        with trio.move_on_after(5):
            await conn.ws.aclose(code, reason)
        conn.cancel_scope.cancel()

    def stall_connections(self) -> None:
        """Stop sending anything (frames, pings, pongs) on every open connection."""
        for conn in self.connections.values():
            if conn.stream is not None:
                conn.stream.stall()

    def resume_connections(self) -> None:
        """Undo :meth:`stall_connections`."""
        for conn in self.connections.values():
            if conn.stream is not None:
                conn.stream.resume()

    def send_raw(self, frame: str | bytes) -> None:
        """Send one frame as-is to every open connection (``bytes`` -> binary frame)."""
        for conn in list(self.connections.values()):
            conn.push(frame)

    def send_malformed(self) -> None:
        """Send a frame that is not JSON."""
        self.send_raw('{"type": "new_opportunity", "opportunity": {"opportunity_id": ')

    def send_unknown_shape(self) -> None:
        """Send valid JSON of a shape the protocol does not have."""
        self.send_raw('{"type": "quote_request", "payload": {"foo": [1, 2, 3]}}')

    def send_oversized(self, size: int = 2 * 1024 * 1024) -> None:
        """Send a frame of about ``size`` bytes (clients default to a 1 MiB limit)."""
        self.send_raw('{"type": "padding", "data": "' + "x" * size + '"}')

    def send_unknown_status(self, bid_id: str, status_type: str = "simulation_failed") -> None:
        """Move ``bid_id`` to a status type clients do not know (recorded in its history)."""
        self.set_bid_status(bid_id, BidStatus(status_type, self.bids[bid_id].signature))

    def flood_events(self, count: int | None = None) -> None:
        """Queue ``count`` events (default: just past the buffer) at once to every open
        connection, so each falls "more than 1000 events behind" and is dropped like the server
        drops a lagging reader."""
        # One frame may go straight to the writer waiting on the channel, so the buffer holds
        # `event_buffer` more: it takes two past the buffer to overflow.
        n = self.config.event_buffer + 2 if count is None else count
        frame = '{"type": "svm_chain_update", "update": {"chain_id": "flood", "blockhash": "1", "latest_prioritization_fee": 0}}'
        for conn in list(self.connections.values()):
            for _ in range(n):
                conn.push(frame)

    def delay_responses(self, seconds: float, count: int | None = None) -> None:
        """Delay the next ``count`` responses (all, if ``None``) by ``seconds``; 0 turns it off."""
        self._response_delay, self._delay_count = seconds, count

    def respond_late(self, seconds: float) -> None:
        """Send only the next response ``seconds`` late (after a client's timeout, typically)."""
        self.delay_responses(seconds, count=1)

    def reorder_responses(self, count: int = 2) -> None:
        """Hold the next ``count`` responses and then send them in reverse order."""
        self._reorder_n, self._held = count, []

    def duplicate_responses(self, enabled: bool = True) -> None:
        """Send every response twice while enabled."""
        self._duplicate = enabled

    def reject_upgrades(self, status: int = 401, count: int = 1) -> None:
        """Reject the next ``count`` WebSocket upgrades with ``status`` (401 or 429) and its body."""
        self._reject_queue.extend([status] * count)
