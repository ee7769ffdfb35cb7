"""The one check behind "it never loses a bid": the state table agrees with the auction server.

The simulator keeps every bid it accepted with its full status history; the daemon keeps every
bid it made in its state table. After any fault, and once the dust has settled, the two must
agree:

- every bid the simulator accepted is in the table under the same server bid id (none missing);
- every server bid id in the table is one the simulator accepted (none invented);
- every bid that is final in the simulator has the same final status in the table, and the same
  result (transaction) when the simulator's final status carries one.

Bids that are not final in the simulator are only checked for their id: their status may still
be on its way. The simulator's record comes either from the simulator object itself (tests that
run it in-process) or from its logged-in ``GET /v1/{chain}/bids`` listing (the crash test and the
soak, where it runs in its own process).

The test folder is not a package, so test modules put it on ``sys.path`` and import this file
as ``_nothing_lost``; ``tests/_er_simproc.py`` (a script in the same folder) does the same, and
``python -m benchmarks.soak`` imports it as ``tests._nothing_lost``.
"""

from __future__ import annotations

import random
import sqlite3
from typing import TYPE_CHECKING, Any, Final

import attrs
import httpx
import trio

from searcherd.bids import FINAL_STATUSES
from searcherd.express_relay.simulator import ExpressRelaySimulator, SimulatorConfig, serve
from searcherd.store import open_database

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

__all__ = [
    "SimBid",
    "StateDiff",
    "assert_state_matches_simulator",
    "compare_state",
    "fetch_record",
    "record_of",
    "restart_simulator",
]

VENUE: Final = "express_relay"
_PAGE: Final = 20  # the server's page size for own bids
_MAX_PAGES: Final = 10_000
_SHOWN: Final = 5
_BIND_ATTEMPTS: Final = 100  # examples of each kind of disagreement in an assertion message


@attrs.frozen
class SimBid:
    """What the simulator says about one bid it accepted."""

    bid_id: str
    status: str
    result: str | None

    @property
    def final(self) -> bool:
        """True when the simulator will never change this bid's status again."""
        return self.status in FINAL_STATUSES


@attrs.frozen
class StateDiff:
    """How a state table and a simulator record differ (all empty when they agree)."""

    sim_bids: int
    sim_final: int
    table_rows: int
    missing: tuple[str, ...]  # accepted by the simulator, absent from the table
    invented: tuple[str, ...]  # server ids in the table the simulator never gave out
    disagree: tuple[tuple[str, str, str], ...]  # (server id, simulator status, table status)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, invented or disagreeing."""
        return not (self.missing or self.invented or self.disagree)

    def describe(self) -> str:
        """A short human summary with a few examples of each problem."""
        return (
            f"simulator bids={self.sim_bids} (final {self.sim_final}), table rows="
            f"{self.table_rows}; missing {len(self.missing)}: {list(self.missing[:_SHOWN])}; "
            f"invented {len(self.invented)}: {list(self.invented[:_SHOWN])}; "
            f"disagree {len(self.disagree)}: {list(self.disagree[:_SHOWN])}"
        )


def record_of(sim: ExpressRelaySimulator) -> dict[str, SimBid]:
    """The in-process simulator's record: server id -> current status."""
    return {
        bid_id: SimBid(bid_id, record.status.type, record.status.result)
        for bid_id, record in sim.bids.items()
    }


def _status_text(status: Any) -> tuple[str, str | None]:
    if isinstance(status, dict):
        kind, result = status.get("type"), status.get("result")
        return str(kind), result if isinstance(result, str) else None
    return str(status), None


def fetch_record(
    http_url: str, api_key: str, chain: str = "solana", *, timeout: float = 10.0
) -> dict[str, SimBid]:
    """The simulator's record read over HTTP (``GET /v1/{chain}/bids``, every page).

    The listing is the API key's own bids, oldest first, 20 per page, each page starting at the
    previous page's last ``initiation_time`` (so the boundary bid comes twice; ids dedupe it).
    """
    out: dict[str, SimBid] = {}
    cursor = "1970-01-01T00:00:00Z"
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=http_url, headers=headers, timeout=timeout) as client:
        for _ in range(_MAX_PAGES):
            response = client.get(f"/v1/{chain}/bids", params={"from_time": cursor})
            response.raise_for_status()
            items = response.json()["items"]
            for item in items:
                kind, result = _status_text(item.get("status"))
                out[item["id"]] = SimBid(item["id"], kind, result)
            last = items[-1]["initiation_time"] if items else cursor
            if len(items) < _PAGE or last == cursor:
                break
            cursor = last
    return out


def _table(store_path: Path) -> list[tuple[str | None, str, str | None]]:
    conn = open_database(store_path, readonly=True)
    try:
        rows: list[tuple[str | None, str, str | None]] = conn.execute(
            "SELECT server_bid_id, status, result FROM bids WHERE venue = ?", (VENUE,)
        ).fetchall()
        return rows
    finally:
        conn.close()


def compare_state(store_path: Path, record: Mapping[str, SimBid]) -> StateDiff:
    """Compare the state table at ``store_path`` with the simulator's ``record``."""
    try:
        rows = _table(store_path)
    except sqlite3.Error as exc:  # e.g. a table not created yet: everything is missing
        raise AssertionError(f"cannot read the state table {store_path}: {exc}") from exc
    by_server = {server_id: (status, result) for server_id, status, result in rows if server_id}
    missing = sorted(bid_id for bid_id in record if bid_id not in by_server)
    invented = sorted(server_id for server_id in by_server if server_id not in record)
    disagree = []
    for bid_id, bid in sorted(record.items()):
        if not bid.final or bid_id not in by_server:
            continue
        status, result = by_server[bid_id]
        # The table keeps the last known result (transaction) when a later status has none
        # (`lost` after `awaiting_signature`), so only a result the simulator gives must match.
        if status != bid.status or (bid.result is not None and result != bid.result):
            disagree.append((bid_id, f"{bid.status}/{bid.result}", f"{status}/{result}"))
    return StateDiff(
        sim_bids=len(record),
        sim_final=sum(1 for bid in record.values() if bid.final),
        table_rows=len(rows),
        missing=tuple(missing),
        invented=tuple(invented),
        disagree=tuple(disagree),
    )


def assert_state_matches_simulator(
    store_path: Path, sim: ExpressRelaySimulator | Mapping[str, SimBid]
) -> StateDiff:
    """Fail unless the state table agrees with the simulator (see the module docstring).

    ``sim`` is the running simulator or a record read with :func:`fetch_record`. Returns the
    comparison, so callers can report its figures.
    """
    record = record_of(sim) if isinstance(sim, ExpressRelaySimulator) else sim
    diff = compare_state(store_path, record)
    assert diff.ok, diff.describe()
    return diff


def open_bids(sim: ExpressRelaySimulator, exclude: Iterable[str] = ()) -> list[str]:
    """Ids of the simulator's bids that are not final yet (minus ``exclude``)."""
    skip = set(exclude)
    return [
        bid_id
        for bid_id, record in sim.bids.items()
        if record.final_status is None and bid_id not in skip
    ]


def _only_os_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_os_errors(inner) for inner in exc.exceptions)
    return isinstance(exc, OSError)


async def restart_simulator(
    nursery: trio.Nursery, old: ExpressRelaySimulator, **changes: Any
) -> tuple[ExpressRelaySimulator, set[str]]:
    """Stop ``old`` and start a new simulator on the same ports; return it and the frozen ids.

    A real server keeps its bids in a database across a restart, so the new simulator is handed
    the old one's bid record and continues its id sequence (a repeated id would be a different
    bid under the same name). Bids still open at the restart stay as they were (their auctions
    died with the old process): those ids come back as "frozen" so callers do not wait for them.
    """
    frozen = set(open_bids(old))
    port = int(old.ws_url.rsplit(":", 1)[1].split("/", 1)[0])
    http_port = int(old.http_url.rsplit(":", 1)[1])
    old.stop()
    config = attrs.evolve(old.config, ws_port=port, http_port=http_port, **changes)
    assert isinstance(config, SimulatorConfig)
    # The old listeners close once its tasks see the cancellation: retry the bind until then.
    for attempt in range(_BIND_ATTEMPTS):
        try:
            new: ExpressRelaySimulator = await nursery.start(serve, config)
        except (OSError, ExceptionGroup) as exc:
            if attempt == _BIND_ATTEMPTS - 1 or not _only_os_errors(exc):
                raise
            await trio.sleep(0.05)
            continue
        break
    new.bids.update(old.bids)
    # Private on purpose: only a restart needs the server's id sequence to carry on.
    new._bid_rng = random.Random()
    new._bid_rng.setstate(old._bid_rng.getstate())
    return new, frozen
