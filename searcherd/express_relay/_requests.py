"""Request/response correlation for one Express Relay socket.

The server answers requests by the string ``id`` we chose, and not in request order (``post_bid``
and ``cancel_bid`` run concurrently on its side). This tracker hands out ids, remembers what is in
flight, and resolves each request exactly once: with its response, with a timeout, or with the
death of the socket. It never spawns a task per request: callers get a callback (the submitter,
whose hot path must not wait) or ``await`` an event (session setup, cancels), and a single
sweeper task times out requests in deadline order.

Protocol quirks handled here:

- a response that arrives after its request timed out is handed to the request's ``on_late``
  hook (a late ``post_bid`` success still carries the server's bid id) or logged, never a crash;
- an ``id: null`` error (the server could not parse a frame) is tied to the one request in
  flight when there is exactly one, and logged with the server's text otherwise;
- ``post_bid``/``cancel_bid`` are capped per connection (the server blocks its whole read loop
  when 150 are in flight): :meth:`acquire_slot` waits, bounded, for a free slot.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

import attrs
import structlog
import trio

from searcherd.express_relay.messages import Response

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Outcome", "PendingRequest", "RequestFailed", "RequestTracker"]

_log = structlog.get_logger(__name__)

#: Timed-out requests remembered for late responses (oldest forgotten first).
_LATE_MEMORY: Final = 4096


class RequestFailed(Exception):
    """A request got no usable answer; ``reason`` is ``timeout``, ``disconnected`` or ``unsent``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@attrs.frozen
class Outcome:
    """How a request ended: ``response`` set, or ``failure`` set (never both)."""

    response: Response | None = None
    failure: RequestFailed | None = None


@attrs.define(eq=False)
class PendingRequest:
    """One request in flight. ``limited`` requests hold one of the per-connection slots."""

    id: str
    method: str
    deadline: float
    limited: bool
    on_done: Callable[[Outcome], None]
    on_late: Callable[[Response], None] | None = None
    sent_at: float | None = None


class RequestTracker:
    """Ids, in-flight requests, timeouts and the per-connection slot cap of one venue socket."""

    def __init__(
        self,
        *,
        timeout: float,
        max_in_flight: int,
        defer: Callable[..., None] | None = None,
    ) -> None:
        self.timeout = timeout
        # Where `on_done` and `on_late` callbacks run: `defer(fn, *args)` (the venue's idle
        # queue: they are bookkeeping), or at once without it. Correlation and the slot are
        # settled at once either way. Both kinds go through the same queue, so a late response
        # is seen after its own timeout was.
        self._defer = defer
        self.max_in_flight = max_in_flight
        self._ids = itertools.count(1)
        # Insertion order is deadline order (one timeout for every request), so the sweeper
        # only ever looks at the first entry.
        self._pending: OrderedDict[str, PendingRequest] = OrderedDict()
        self._late: OrderedDict[str, PendingRequest] = OrderedDict()
        self._slots = trio.Semaphore(max_in_flight)
        self._wake = trio.Event()
        self.late_responses = 0
        self.unmatched_responses = 0

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests sent (or about to be) and not resolved."""
        return len(self._pending)

    @property
    def limited_in_flight(self) -> int:
        """Slots taken by ``post_bid``/``cancel_bid`` requests."""
        return self.max_in_flight - self._slots.value

    def begin(
        self,
        method: str,
        on_done: Callable[[Outcome], None],
        *,
        limited: bool = False,
        on_late: Callable[[Response], None] | None = None,
    ) -> PendingRequest:
        """Register a request (before its frame is sent, so no response can outrun it).

        A ``limited`` request must already hold a slot (:meth:`acquire_slot`); the tracker gives
        it back when the request resolves.
        """
        rid = str(next(self._ids))
        req = PendingRequest(
            rid, method, trio.current_time() + self.timeout, limited, on_done, on_late
        )
        self._pending[rid] = req
        self._wake.set()
        return req

    def try_acquire_slot(self) -> bool:
        """Take one of the ``max_in_flight`` slots if one is free now (no waiting)."""
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            return False
        return True

    async def acquire_slot(self, patience: float) -> bool:
        """Wait up to ``patience`` seconds for one of the ``max_in_flight`` slots; False if
        none freed."""
        # Fast path, the common case: a free slot is taken without a cancel scope or a trip
        # through the scheduler. Callers send right after, which is their checkpoint.
        if self.try_acquire_slot():
            return True
        with trio.move_on_after(patience):
            await self._slots.acquire()
            return True
        return False

    def release_slot(self) -> None:
        """Give back a slot taken by :meth:`acquire_slot` for a request never begun."""
        self._slots.release()

    def _finish(self, req: PendingRequest, outcome: Outcome) -> None:
        if req.limited:
            # At once, even when the callback waits: a slot held until the loop is idle would
            # stall a burst at the cap.
            self._slots.release()
        self._callback(self._done, req, outcome)

    def _callback(self, fn: Callable[..., None], *args: Any) -> None:
        if self._defer is not None:
            self._defer(fn, *args)
        else:
            fn(*args)

    def _done(self, req: PendingRequest, outcome: Outcome) -> None:
        try:
            req.on_done(outcome)
        except Exception:  # a callback bug must not break correlation for everyone else
            _log.exception("request_callback_failed", method=req.method, request_id=req.id)

    def _late_done(self, on_late: Callable[[Response], None], response: Response) -> None:
        try:
            on_late(response)
        except Exception:
            _log.exception("request_late_callback_failed", request_id=response.id)

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, response: Response) -> None:
        """Deliver a response (called synchronously from the socket reader)."""
        if response.id is None:
            self._resolve_uncorrelated(response)
            return
        req = self._pending.pop(response.id, None)
        if req is not None:
            self._finish(req, Outcome(response=response))
            return
        late = self._late.pop(response.id, None)
        if late is not None:
            self.late_responses += 1
            _log.warning(
                "request_late_response",
                method=late.method,
                request_id=response.id,
                ok=response.ok,
                error=response.error,
            )
            if late.on_late is not None:
                self._callback(self._late_done, late.on_late, response)
            return
        # A duplicate or a response to an id we never used: nothing to do but say so.
        self.unmatched_responses += 1
        _log.warning("request_unknown_response", request_id=response.id, ok=response.ok)

    def _resolve_uncorrelated(self, response: Response) -> None:
        # The server could not parse one of our frames. With exactly one request in flight it
        # must be that one; with several, guessing would blame the wrong bid, so each of them
        # runs into its own timeout instead.
        if len(self._pending) == 1:
            rid = next(iter(self._pending))
            req = self._pending.pop(rid)
            _log.warning(
                "request_rejected_unparsed", method=req.method, request_id=rid, error=response.error
            )
            self._finish(req, Outcome(response=Response(rid, False, response.result)))
            return
        _log.warning(
            "request_uncorrelated_error", in_flight=len(self._pending), error=response.error
        )

    def fail_all(self, reason: str, detail: str = "") -> int:
        """Fail every request in flight at once (the socket died); return how many."""
        pending, self._pending = self._pending, OrderedDict()
        # Late responses cannot come over a new socket, so forget the timed-out ones too.
        self._late.clear()
        for req in pending.values():
            self._finish(req, Outcome(failure=RequestFailed(reason, detail)))
        return len(pending)

    def fail(self, req: PendingRequest, reason: str, detail: str = "") -> None:
        """Fail one request now (e.g. its frame could not be sent)."""
        if self._pending.pop(req.id, None) is not None:
            self._finish(req, Outcome(failure=RequestFailed(reason, detail)))

    async def run_timeouts(self) -> None:
        """Time requests out in deadline order, for ever (one task for all requests)."""
        while True:
            if not self._pending:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            rid, req = next(iter(self._pending.items()))
            now = trio.current_time()
            if now < req.deadline:
                await trio.sleep_until(req.deadline)
                continue
            del self._pending[rid]
            self._late[rid] = req
            while len(self._late) > _LATE_MEMORY:
                self._late.popitem(last=False)
            self._finish(req, Outcome(failure=RequestFailed("timeout", f"{self.timeout:g}s")))

    async def call(
        self,
        send: Callable[[bytes], Awaitable[None]],
        method: str,
        frame_of: Callable[[str], bytes],
        *,
        limited: bool = False,
    ) -> Response:
        """Send one request and wait for its response; raise :class:`RequestFailed` otherwise.

        ``send`` is an async function taking the frame; ``frame_of(id)`` builds the frame.
        """
        done = trio.Event()
        box: list[Outcome] = []

        def on_done(outcome: Outcome) -> None:
            box.append(outcome)
            done.set()

        req = self.begin(method, on_done, limited=limited)
        try:
            await send(frame_of(req.id))
        except Exception as exc:
            self.fail(req, "unsent", str(exc))
            raise RequestFailed("unsent", str(exc)) from exc
        req.sent_at = trio.current_time()
        await done.wait()
        outcome = box[0]
        if outcome.failure is not None:
            raise outcome.failure
        assert outcome.response is not None
        return outcome.response
