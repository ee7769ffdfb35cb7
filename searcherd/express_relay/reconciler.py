"""Recover bid statuses over HTTP when the WebSocket cannot be trusted to have told us.

Status pushes are routed per connection and lost with it, so the venue asks the server
directly (``GET /v1/{chain_id}/bids/{bid_id}``):

- after every (re)connect, for every non-final bid (``reconcile_all``, part of session setup);
- after a restart, for the non-final rows of the previous run (loaded into the submitter);
- for bids that have been silent too long (``run``): swap and pending bids after
  ``interval`` (their outcome comes within seconds); submitted ones, and swap bids waiting for
  the user (``awaiting_signature``, ``sent_to_user_for_submission``), after ``40 x interval``
  (200 s by default: the server's own expiry check takes 120-180 s).

Bids recorded without a server id (``submitting``/``unconfirmed``: the response never came,
e.g. a crash right after sending) can only be found in the API key's own bid list
(``GET /v1/{chain_id}/bids?from_time=``), matched by transaction signature. Without an API key,
or when no listed bid matches, they stay ``unconfirmed`` and are no longer followed.

The same listing recovers bids that have no row at all: a crash (SIGKILL, power loss) loses the
store's last commit window, so after a restart ``recover_unrecorded`` adopts every own bid the
server has since the table's newest row and the table does not.
"""

from __future__ import annotations

import datetime
import math
import urllib.parse
from typing import TYPE_CHECKING, Any, Final

import httpx
import orjson
import structlog
import trio

from searcherd.express_relay._parked import SLOW_STATUSES
from searcherd.express_relay._wire_bids import signature_of_transaction
from searcherd.express_relay.messages import (
    ExpressRelayDecodeError,
    decode_bid_status_http,
    decode_http_error,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from searcherd.express_relay.submitter import Submitter, TrackedBid

__all__ = ["Reconciler"]

_log = structlog.get_logger(__name__)

_SLOW_FACTOR: Final = 40  # submitted bids: 40 x reconcile_interval (200 s by default)
_CONCURRENCY: Final = 8  # HTTP checks at once
_GIVE_UP: Final = 300.0  # seconds an id-less bid is followed before it is abandoned
_LIST_PAGES: Final = 50  # pages of 20 read at most when matching id-less bids
_SETUP_CHECKS: Final = 256  # open bids checked during a reconnect's setup; the rest right after
_LIST_MARGIN: Final = 60.0  # seconds before the oldest id-less bid to start listing from
_SWEEP_SLICE: Final = 500  # open bids looked at between two checkpoints of a sweep


class Reconciler:
    """HTTP status checks for the submitter's open bids; see the module docstring."""

    def __init__(
        self,
        *,
        submitter: Submitter,
        http: httpx.AsyncClient,
        http_url: str,
        headers: dict[str, str],
        interval: float,
        request_timeout: float,
        authenticated: bool,
    ) -> None:
        self._submitter = submitter
        self._http = http
        self._base = http_url.rstrip("/")
        self._headers = headers
        self._interval = interval
        self._timeout = request_timeout
        self._authenticated = authenticated
        self._limiter = trio.CapacityLimiter(_CONCURRENCY)
        self.checks = 0
        self.errors = 0

    # -- loops -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Check silent bids for ever (one sweep every ``interval / 2``, at most every second)."""
        period = min(1.0, self._interval / 2)
        while True:
            await trio.sleep(period)
            due, stuck = await self._sweep(trio.current_time())
            if due:
                await self._check_many(due)
            if stuck:
                await self._give_up(stuck)

    async def _sweep(self, now: float) -> tuple[list[TrackedBid], list[TrackedBid]]:
        """One look at every open bid: those due for a check, and id-less ones to give up on.

        In slices with a checkpoint between them: with thousands of bids open (most waiting out
        a slow status), one pass in one go would hold the event loop for milliseconds and delay
        every opportunity that arrives meanwhile. A bid that changes while the sweep yields is
        harmless: a check of a bid that just went final confirms what it says.
        """
        due: list[TrackedBid] = []
        stuck: list[TrackedBid] = []
        # Packed bids all wait out a slow status: those silent that long come back as objects.
        self._submitter.unpark_idle(now - self._interval * _SLOW_FACTOR)
        bids = self._submitter.open_bids()
        for start in range(0, len(bids), _SWEEP_SLICE):
            for tb in bids[start : start + _SWEEP_SLICE]:
                if tb.server_bid_id is not None:
                    if self._due(tb, now):
                        due.append(tb)
                elif tb.status == "unconfirmed" and now - tb.last_change >= _GIVE_UP:
                    stuck.append(tb)
            await trio.lowlevel.checkpoint()
        return due, stuck

    def _due(self, tb: TrackedBid, now: float) -> bool:
        silence = self._interval * (_SLOW_FACTOR if tb.status in SLOW_STATUSES else 1)
        return now - tb.last_change >= silence

    async def _give_up(self, stuck: list[TrackedBid]) -> None:
        """Stop following id-less bids silent past the give-up time (after a last look)."""
        if self._authenticated:
            # A last look in our own bid list before letting go (a link that stayed up never
            # ran the reconnect's matching).
            await self._match_without_id(stuck)
        for tb in stuck:
            if tb.server_bid_id is None and self._submitter.is_open(tb.local_id):
                self._submitter.abandon(tb, "no server id after the give-up time")

    async def reconcile_all(self) -> None:
        """Check every open bid now (after a reconnect or a restart). Never raises for HTTP
        trouble: what fails here is retried by :meth:`run` when the bid stays silent."""
        self._submitter.unpark_idle(math.inf)  # pushes may have been lost for any of them
        bids = self._submitter.open_bids()
        with_id = [tb for tb in bids if tb.server_bid_id is not None]
        # Id-less bids of a previous run, and bids whose answer died with the last socket (a
        # bid still queued or awaiting its answer is neither).
        without = [
            tb
            for tb in bids
            if tb.server_bid_id is None and (tb.restored or tb.status == "unconfirmed")
        ]
        # Setup has a deadline: check a bounded number now (the longest silent first) and mark
        # the rest due, so the `run` loop checks them right after the venue is back.
        with_id.sort(key=lambda tb: tb.last_change)
        for tb in with_id[_SETUP_CHECKS:]:
            tb.last_change = -math.inf
        with_id = with_id[:_SETUP_CHECKS]
        if with_id:
            await self._check_many(with_id)
        if without:
            await self._match_without_id(without)
        _log.info(
            "reconcile_done", venue="express_relay", checked=len(with_id), without_id=len(without)
        )

    async def _check_many(self, bids: list[TrackedBid]) -> None:
        async with trio.open_nursery() as nursery:
            for tb in bids:
                nursery.start_soon(self._check, tb)

    # -- single checks -----------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        async with self._limiter:
            try:
                return await self._http.get(
                    self._base + path, params=params, headers=self._headers, timeout=self._timeout
                )
            except httpx.HTTPError as exc:
                self.errors += 1
                _log.warning(
                    "reconcile_http_failed", path=path.split("?")[0], error=type(exc).__name__
                )
                return None

    async def _check(self, tb: TrackedBid) -> None:
        assert tb.server_bid_id is not None
        chain = urllib.parse.quote(tb.chain_id, safe="")
        bid_id = urllib.parse.quote(tb.server_bid_id, safe="")
        response = await self._get(f"/v1/{chain}/bids/{bid_id}")
        self.checks += 1
        # Whatever the answer, the bid was looked at: wait a full interval before the next look.
        tb.last_change = max(tb.last_change, trio.current_time())
        if response is None:
            return
        if response.status_code != 200:
            self.errors += 1
            tb.log().warning("reconcile_failed", http_status=response.status_code,
                             error=decode_http_error(response.content))  # fmt: skip
            return
        try:
            status = decode_bid_status_http(response.content)
        except ExpressRelayDecodeError as exc:
            self.errors += 1
            tb.log().warning("reconcile_bad_body", error=str(exc))
            return
        self._submitter.apply_status(tb, status, source="http")

    async def _match_without_id(self, bids: list[TrackedBid]) -> None:
        """Find id-less bids in our own bid list by signature; leave the rest unconfirmed."""
        found: dict[str, tuple[str, Any]] = {}
        if self._authenticated:
            for chain in sorted({tb.chain_id for tb in bids}):
                since = min(tb.created_at for tb in bids if tb.chain_id == chain) - _LIST_MARGIN
                found.update(await self._list_own(chain, since))
        for tb in bids:
            match = found.get(tb.signature) if tb.signature is not None else None
            if match is None:
                if tb.restored:
                    # Nothing of a previous run can answer any more: say so and let go.
                    why = (
                        "no API key to list own bids"
                        if not self._authenticated
                        else "not in own bids"
                    )
                    self._submitter.set_status(tb, "unconfirmed", source="local", reason=why)
                    self._submitter.abandon(tb, why)
                continue
            server_id, item = match
            status = item.get("status")
            self._submitter.attach_server_id(tb, server_id)
            tb.log().info("reconcile_matched_by_signature", server_bid_id=server_id)
            try:
                parsed = decode_bid_status_http(orjson.dumps(status))
            except ExpressRelayDecodeError:
                self._submitter.set_status(tb, "pending", source="http")
                continue
            self._submitter.apply_status(tb, parsed, source="http")

    async def recover_unrecorded(
        self, chains: Sequence[str], since: float, known: Callable[[float], Awaitable[set[str]]]
    ) -> int:
        """After a restart: adopt our own bids the server has and the state table does not.

        A crash loses the store's last batch window, and with it the rows of bids that had just
        been sent. The server still has them: list our own bids since `since` (Unix seconds)
        and record every one whose signature and server id `known(since)` does not name, under
        strategy `(recovered)`, then follow it like any open bid. Needs an API key (the listing
        is logged-in only); returns how many bids were adopted.
        """
        if not self._authenticated:
            return 0
        listed = {chain: await self._list_own(chain, since - _LIST_MARGIN) for chain in chains}
        if not any(listed.values()):
            return 0  # nothing to compare: spare the store a read
        known_ids = await known(since - _LIST_MARGIN)
        adopted = 0
        for chain, own in listed.items():
            for signature, (server_id, item) in own.items():
                if signature in known_ids or server_id in known_ids:
                    continue
                if self._submitter.adopt(chain, server_id, signature, item):
                    adopted += 1
        if adopted:
            _log.warning("bids_recovered_from_venue", venue="express_relay", count=adopted)
        return adopted

    async def _list_own(self, chain_id: str, since: float) -> dict[str, tuple[str, Any]]:
        """signature -> (server bid id, listed bid) for our bids on ``chain_id`` since then."""
        out: dict[str, tuple[str, Any]] = {}
        cursor = _rfc3339(since)
        path = f"/v1/{urllib.parse.quote(chain_id, safe='')}/bids"
        for _ in range(_LIST_PAGES):
            response = await self._get(path, {"from_time": cursor})
            if response is None or response.status_code != 200:
                if response is not None:
                    _log.warning("reconcile_list_failed", chain=chain_id,
                                 http_status=response.status_code,
                                 error=decode_http_error(response.content))  # fmt: skip
                break
            try:
                items = orjson.loads(response.content)["items"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                _log.warning("reconcile_list_bad_body", chain=chain_id)
                break
            if not isinstance(items, list) or not items:
                break
            for item in items:
                if not isinstance(item, dict):
                    continue
                tx, bid_id = item.get("transaction"), item.get("id")
                sig = signature_of_transaction(tx) if isinstance(tx, str) else None
                if sig is not None and isinstance(bid_id, str):
                    out[sig] = (bid_id, item)
            last = items[-1].get("initiation_time") if isinstance(items[-1], dict) else None
            if len(items) < 20 or not isinstance(last, str) or last == cursor:
                break
            cursor = last
        return out


def _rfc3339(unix: float) -> str:
    if not math.isfinite(unix):
        unix = 0.0
    return (
        datetime.datetime.fromtimestamp(max(unix, 0.0), datetime.UTC)
        .isoformat()
        .replace("+00:00", "Z")
    )
