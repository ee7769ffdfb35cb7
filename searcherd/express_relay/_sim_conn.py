"""One simulated Express Relay WebSocket connection: subscriptions, bids and protocol pings.

The transport under it (stalls, TCP resets, the outbound queue and writer) is the simulators'
shared `searcherd._simnet.SimPeer`; this adds what the Express Relay server keeps per connection.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import trio

from searcherd._simnet import CONNECTION_GONE, SimPeer

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_websocket import WebSocketConnection

    from searcherd._simnet import FaultStream

__all__ = ["SimConnection"]


class SimConnection(SimPeer):
    """Server-side state of one accepted WebSocket (subscriptions, bids, outbound queue)."""

    def __init__(
        self,
        conn_id: int,
        ws: WebSocketConnection,
        stream: FaultStream | None,
        *,
        api_key: str | None,
        profile_id: str | None,
        event_buffer: int,
    ) -> None:
        # Bounded like the server's broadcast buffer: a reader this far behind gets dropped.
        super().__init__(conn_id, ws, stream, event_buffer, label="er_sim_connection")
        self.conn_id = conn_id
        self.api_key = api_key
        self.profile_id = profile_id
        self.subscriptions: set[str] = set()
        self.bid_ids: set[str] = set()

    def __repr__(self) -> str:
        return f"<SimConnection {self.conn_id} profile={self.profile_id}>"

    async def ping_loop(self, interval: float, is_key_valid: Callable[[str], bool]) -> None:
        """Ping now and every ``interval``; drop if the previous ping got no pong by the tick.

        Also re-checks the API key at each tick, like the server (revoked key -> dropped).
        """
        assert self.nursery is not None
        payloads = itertools.count()
        pong: trio.Event | None = None
        while True:
            stalled = self.stalled
            if pong is not None and not pong.is_set() and not stalled:
                self.drop("no_pong")
                return
            if self.api_key is not None and not is_key_valid(self.api_key):
                self.drop("token_revoked")
                return
            # A stalled server sends nothing, pings included, and therefore expects no pong.
            pong = None if stalled else trio.Event()
            if pong is not None:
                self.nursery.start_soon(self._ping_once, str(next(payloads)).encode(), pong)
            await trio.sleep(interval)

    async def _ping_once(self, payload: bytes, pong: trio.Event) -> None:
        try:
            await self.ws.ping(payload)
        except CONNECTION_GONE:
            return
        pong.set()
