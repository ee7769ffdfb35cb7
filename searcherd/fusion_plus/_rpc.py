"""RPC over the Fusion+ socket, correlated by method name.

The server answers `{"method": m, "param": ...}` with `{"method": m, "result": ...}`: no request
id, so the only correlation is the method. We therefore keep at most one request per method in
flight (a lock per method), give each a timeout, and fail every waiter at once when the socket
dies (the answer can never come on a new socket). A response nobody waits for (late, after a
timeout) is dropped; after a timeout the next response of that method is presumed to be the
late one and dropped too, until the link changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import structlog
import trio

from searcherd.fusion_plus.messages import (
    ActiveOrdersPage,
    FusionDecodeError,
    RpcResponse,
    SecretsError,
    SecretsResult,
    encode_request,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

__all__ = ["RpcClient", "RpcError", "RpcTimeout"]

_log = structlog.get_logger(__name__)
_MAX_PAGES: Final = 10_000  # a server that never reports the last page must not loop forever


class RpcError(Exception):
    """An RPC failed: the socket went away, the answer did not decode, or it was malformed."""


class RpcTimeout(RpcError):
    """No answer within the RPC timeout."""


class _Waiter:
    def __init__(self, hook: Callable[[object], None] | None) -> None:
        self.done = trio.Event()
        self.hook = hook
        self.result: object = None
        self.error: BaseException | None = None


class RpcClient:
    """Issues RPC requests and matches their answers (fed by the socket reader via `deliver`)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._locks: dict[str, trio.Lock] = {}
        self._waiters: dict[str, _Waiter] = {}
        self._late: dict[str, int] = {}  # timed-out requests whose answers may still come
        self.dropped = 0

    # ------------------------------------------------------------------ reader side

    def deliver(self, response: RpcResponse) -> bool:
        """Hand an RPC response to its waiter; False when nobody waited for it (dropped)."""
        method = response.method
        if self._late.get(method, 0) > 0:
            # Ordered per method: this is the answer to the request that timed out.
            self._late[method] -= 1
            self.dropped += 1
            _log.debug("fusion_rpc_late_answer", method=method)
            return False
        waiter = self._waiters.pop(method, None)
        if waiter is None:
            self.dropped += 1
            _log.debug("fusion_rpc_unexpected_answer", method=method)
            return False
        waiter.result = response.result
        if waiter.hook is not None:
            # Run in the reader, before it reads on: the caller sees the answer in frame order,
            # ahead of any push event that followed it on the socket.
            try:
                waiter.hook(response.result)
            except Exception as exc:
                waiter.error = RpcError(f"{method}: handling the answer failed: {exc!r}")
                waiter.error.__cause__ = exc
        waiter.done.set()
        return True

    def fail_method(self, method: str, error: FusionDecodeError) -> None:
        """The answer to `method` arrived but did not decode: fail its waiter now."""
        waiter = self._waiters.pop(method, None)
        if waiter is not None:
            waiter.error = RpcError(f"{method}: undecodable answer: {error.detail}")
            waiter.done.set()

    def fail_all(self, reason: str) -> None:
        """The socket is gone: fail every waiter at once and forget late answers."""
        waiters, self._waiters = self._waiters, {}
        self._late.clear()
        for method, waiter in waiters.items():
            waiter.error = RpcError(f"{method}: {reason}")
            waiter.done.set()

    @property
    def in_flight(self) -> tuple[str, ...]:
        """Methods with a request waiting for its answer."""
        return tuple(self._waiters)

    # ------------------------------------------------------------------ caller side

    async def call(
        self,
        send: Callable[[bytes], Awaitable[None]],
        method: str,
        param: Mapping[str, Any] | None = None,
        *,
        hook: Callable[[object], None] | None = None,
    ) -> object:
        """Send one request with `send` and return its (decoded) result.

        `hook(result)` runs synchronously in the socket reader when the answer arrives, before
        any later frame is handled (its exception fails the call).

        Waits its turn behind another request of the same method. Raises `RpcTimeout` after
        the timeout, `RpcError` when the socket dies or the answer is bad; ValueError for a bad
        page/limit (nothing is sent).
        """
        frame = encode_request(method, param)
        lock = self._locks.setdefault(method, trio.Lock())
        async with lock:
            waiter = _Waiter(hook)
            self._waiters[method] = waiter
            try:
                try:
                    await send(frame)
                except Exception as exc:
                    raise RpcError(f"{method}: send failed: {exc}") from exc
                with trio.move_on_after(self.timeout) as scope:
                    await waiter.done.wait()
                if scope.cancelled_caught:
                    self._late[method] = self._late.get(method, 0) + 1
                    raise RpcTimeout(f"{method}: no answer within {self.timeout:g}s")
            finally:
                if self._waiters.get(method) is waiter:
                    del self._waiters[method]
            if waiter.error is not None:
                raise waiter.error
            return waiter.result

    async def ping(self, send: Callable[[bytes], Awaitable[None]]) -> str:
        """The app-level `ping` (answer "pong")."""
        return str(await self.call(send, "ping"))

    async def allowed_methods(self, send: Callable[[bytes], Awaitable[None]]) -> tuple[str, ...]:
        """`getAllowedMethods`: the method names this key may call."""
        result = await self.call(send, "getAllowedMethods")
        return result if isinstance(result, tuple) else ()

    async def all_active_orders(
        self,
        send: Callable[[bytes], Awaitable[None]],
        limit: int,
        on_page: Callable[[ActiveOrdersPage], None],
    ) -> int:
        """Walk every page of `getActiveOrders` until `currentPage >= totalPages`.

        Each page goes to `on_page` from the reader as it arrives, in frame order, so events
        that followed a page on the socket are applied after it. Returns the orders seen.
        """
        count = 0
        page = 1
        while page <= _MAX_PAGES:
            result = await self.call(
                send,
                "getActiveOrders",
                {"page": page, "limit": limit},
                hook=lambda r: on_page(_as_page(r)),
            )
            assert isinstance(result, ActiveOrdersPage)  # the hook checked it
            count += len(result.items)
            meta = result.meta
            # An empty page also ends the walk: a server with a wrong total cannot loop us.
            if meta.current_page >= meta.total_pages or not result.items:
                return count
            page = meta.current_page + 1
        raise RpcError(f"getActiveOrders: more than {_MAX_PAGES} pages")

    async def secrets(
        self,
        send: Callable[[bytes], Awaitable[None]],
        page: int | None = None,
        limit: int | None = None,
    ) -> SecretsResult | SecretsError:
        """`getSecrets`: the secrets object or the `{error}` shape (both are answers)."""
        param = {k: v for k, v in (("page", page), ("limit", limit)) if v is not None}
        result = await self.call(send, "getSecrets", param)
        if not isinstance(result, SecretsResult | SecretsError):
            raise RpcError("getSecrets: unexpected result type")
        return result


def _as_page(result: object) -> ActiveOrdersPage:
    if not isinstance(result, ActiveOrdersPage):
        raise RpcError("getActiveOrders: unexpected result type")
    return result
