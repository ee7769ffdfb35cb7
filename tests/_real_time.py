"""Helpers for tests (and the soak) that drive real processes in real time.

Across processes nothing can run on a test clock, so every wait polls with a deadline and never
sleeps a fixed time. The test folder is not a package: test modules put it on ``sys.path`` and
import this file as ``_real_time`` (``python -m benchmarks.soak`` does the same).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["EVERY_SWAP_STRATEGY", "SIM_SCRIPT", "free_port", "wait_until"]

#: The Express Relay simulator process (``python SIM_SCRIPT --help`` lists its options).
SIM_SCRIPT: Final = Path(__file__).with_name("_er_simproc.py")

#: A plain strategy file, as a user would drop it into ``strategies/`` (``every_swap.py``).
EVERY_SWAP_STRATEGY: Final = '''
from searcherd import NoParams, Strategy, SwapBid, SwapOpportunity


class EverySwap(Strategy[NoParams]):
    """Bid 99% of the specified amount on every swap opportunity."""

    name = "every_swap"
    venues = ("express_relay",)

    def on_opportunity(self, opportunity):
        if not isinstance(opportunity, SwapOpportunity):
            return None
        if self.context.express_relay.chain(opportunity.chain_id) is None:
            return None
        tokens = opportunity.tokens
        amount = getattr(tokens, "user_amount", None) or tokens.searcher_amount
        return SwapBid(opportunity=opportunity, amount=max(1, amount * 99 // 100))
'''

_POLL: Final = 0.05


def wait_until(check: Callable[[], Any], what: str, timeout: float, poll: float = _POLL) -> Any:
    """Poll ``check`` until it returns something truthy and return that.

    Raises ``AssertionError`` naming ``what`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    """A TCP port free on loopback right now (for a child process to bind a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
