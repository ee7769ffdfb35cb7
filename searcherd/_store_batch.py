"""How one queued batch of state-table writes reaches the disk.

The store's writers queue statements (`Statement`: SQL text and parameters) and return at once;
each batch is folded on the event loop (:func:`fold`) and committed in one transaction by a
worker thread (:func:`write_batch`). The bid writes, several per bid (its row, then a status row
and an update per change), are the bulk of them.

Run one by one, every statement is a trip between Python and SQLite, and each trip releases and
retakes the GIL: with the event loop busy, every one of those hand-overs can stall it. So the
bid writes of a batch are first folded together (the bid statements are recognised by identity:
`INSERT_BID`, `INSERT_FIRST_STATUS`, `INSERT_STATUS`, `UPDATE_STATUS`, `SET_SERVER_BID_ID`):

- a bid inserted in this batch is written once, with every later change of the batch applied
  to its row;
- changes to bids of earlier batches become one row per bid, the changes applied in order, of
  a multi-row update (``UPDATE ... FROM (VALUES ...)``: one call into SQLite where
  ``executemany`` would release and retake the GIL once per row);
- status history rows are inserted many rows per statement, in the order they were queued
  (their row ids keep that order);
- every other statement (Fusion+ orders, events, secrets, fill intents) runs as queued.

The rows committed are those the statements would give run one by one, in order. Folding is
Python work and runs on the event loop's thread (the store does it when the loop is idle); the
worker thread then only makes a few calls into SQLite, which run without the GIL. When any
statement is refused on its own merits (a constraint, a bad value), the batch is rolled back and
replayed statement by statement with a savepoint each (:func:`write_rows`), which skips exactly
the refused ones: the careful path is the plain one, and it only runs when it has to.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "INSERT_BID",
    "INSERT_FIRST_STATUS",
    "INSERT_STATUS",
    "SET_SERVER_BID_ID",
    "UPDATE_STATUS",
    "Folded",
    "Statement",
    "fold",
    "write_batch",
    "write_rows",
]

Statement = tuple[str, tuple[Any, ...]]
"""One queued write: SQL text and its parameters."""

INSERT_BID: Final = (
    "INSERT INTO bids (local_id, venue, chain_id, strategy, opportunity_id, server_bid_id,"
    " amount, status, created_at, updated_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_FIRST_STATUS: Final = (
    "INSERT INTO bid_status_history (local_id, status, source, applied, at)"
    " VALUES (?, ?, 'local', 1, ?)"
)
INSERT_STATUS: Final = (
    "INSERT INTO bid_status_history (local_id, status, result, reason, source, applied, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_STATUS: Final = (
    "UPDATE bids SET status = ?, result = coalesce(?, result), reason = coalesce(?, reason),"
    " updated_at = ? WHERE local_id = ?"
)
SET_SERVER_BID_ID: Final = "UPDATE bids SET server_bid_id = ?, updated_at = ? WHERE local_id = ?"

_ROW_ERRORS: Final = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError)
"""Errors of one statement on its own merits (a constraint, a bad value), not of the database."""

# The folded statements. A folded update carries None for "leave as it is": no column it sets
# can be set back to NULL by the statements above (status is NOT NULL; result, reason and the
# server id only ever get a value).
_BID_COLUMNS: Final = (
    "local_id, venue, chain_id, strategy, opportunity_id, server_bid_id, amount, status,"
    " result, reason, created_at, updated_at, detail"
)
_STATUS_COLUMNS: Final = "local_id, status, result, reason, source, applied, at"
# A folded update row: status, result, reason, server id, updated_at, local id (VALUES columns
# column1..column6). The bids of one statement are distinct (the updates are folded per bid), so
# each bid row matches exactly one VALUES row.
_UPDATE_FOLDED: Final = (
    "UPDATE bids SET status = coalesce(v.column1, status), result = coalesce(v.column2, result),"
    " reason = coalesce(v.column3, reason), server_bid_id = coalesce(v.column4, server_bid_id),"
    " updated_at = v.column5 FROM (VALUES {rows}) AS v WHERE local_id = v.column6"
)
# Where status, result, reason, server id and updated_at sit in a folded bid row (the order of
# _BID_COLUMNS) and in a folded update row (above).
_IN_ROW: Final = (7, 8, 9, 5, 11)
_IN_UPDATE: Final = (0, 1, 2, 3, 4)

_CHUNK: Final = 64
"""Rows per multi-row statement at most: 64 x 13 parameters stays under SQLite's oldest limit of
999, and a chunk's parameters bind in well under a millisecond."""


@attrs.frozen
class Folded:
    """A batch's writes folded together (see the module docstring); made by :func:`fold`."""

    new_bids: list[list[Any]]  # bids rows in _BID_COLUMNS order, every change applied
    updates: list[tuple[Any, ...]]  # _UPDATE_FOLDED rows, one per bid of earlier batches
    history: list[tuple[Any, ...]]  # bid_status_history rows in _STATUS_COLUMNS order
    others: list[Statement]  # everything else, as queued


def write_batch(
    conn: sqlite3.Connection, batch: list[Statement], folded: Folded | None
) -> list[str]:
    """Commit `batch` in one transaction; return the errors of statements that were skipped.

    `folded` is `fold(batch)`: the fast path. Without it (it could not be folded) the batch
    takes the careful path straight away.

    A statement the database refuses on its own merits must not block every row queued behind
    it forever: it is skipped and reported, and the rest commit. Errors of the database itself
    (disk full, I/O) roll the batch back and raise, so the caller keeps it and retries.
    """
    conn.execute("BEGIN")
    try:
        skipped: list[str] | None = None
        if folded is not None:
            try:
                _write_folded(conn, folded)
                skipped = []
            except _ROW_ERRORS:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN")
        if skipped is None:
            skipped = write_rows(conn, batch)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return skipped


def write_rows(conn: sqlite3.Connection, batch: list[Statement]) -> list[str]:
    """Run `batch` inside the open transaction, skipping (and reporting) refused statements."""
    skipped: list[str] = []
    for sql, params in batch:
        conn.execute("SAVEPOINT row")
        try:
            conn.execute(sql, params)
        except _ROW_ERRORS as exc:
            conn.execute("ROLLBACK TO row")
            skipped.append(f"{exc}: {sql.split(' (')[0]}")
        conn.execute("RELEASE row")
    return skipped


def fold(batch: list[Statement]) -> Folded | None:
    """Fold the bid writes of `batch` (see the module docstring); None if it cannot be folded
    (a bid inserted twice: the careful path reports the second insert)."""
    new_bids: dict[str, list[Any]] = {}
    updates: dict[str, list[Any]] = {}
    history: list[tuple[Any, ...]] = []
    others: list[Statement] = []
    for sql, params in batch:
        if sql is INSERT_STATUS:
            history.append(params)
        elif sql is UPDATE_STATUS:
            status, result, reason, at, local_id = params
            _fold(new_bids, updates, local_id, at, status=status, result=result, reason=reason)
        elif sql is INSERT_BID:
            local_id = params[0]
            if local_id in new_bids:
                return None
            # Insert order + result and reason, which a new row starts without.
            new_bids[local_id] = [*params[:8], None, None, *params[8:]]
        elif sql is INSERT_FIRST_STATUS:
            local_id, status, at = params
            history.append((local_id, status, None, None, "local", 1, at))
        elif sql is SET_SERVER_BID_ID:
            server_bid_id, at, local_id = params
            _fold(new_bids, updates, local_id, at, server_bid_id=server_bid_id)
        else:
            others.append((sql, params))
    return Folded(
        new_bids=list(new_bids.values()),
        updates=[(*u, local_id) for local_id, u in updates.items()],
        history=history,
        others=others,
    )


def _write_folded(conn: sqlite3.Connection, folded: Folded) -> None:
    # Bids before their history rows: the history references them.
    _in_chunks(conn, functools.partial(_insert_sql, "bids", _BID_COLUMNS), folded.new_bids)
    _in_chunks(conn, _update_sql, folded.updates)
    _in_chunks(
        conn, functools.partial(_insert_sql, "bid_status_history", _STATUS_COLUMNS), folded.history
    )
    for sql, params in folded.others:
        conn.execute(sql, params)


def _fold(
    new_bids: dict[str, list[Any]],
    updates: dict[str, list[Any]],
    local_id: str,
    at: float,
    *,
    status: str | None = None,
    result: str | None = None,
    reason: str | None = None,
    server_bid_id: str | None = None,
) -> None:
    """Apply one change to the bid's row of this batch, or to its pending update."""
    target, places = new_bids.get(local_id), _IN_ROW
    if target is None:
        target, places = updates.get(local_id), _IN_UPDATE
        if target is None:
            updates[local_id] = [status, result, reason, server_bid_id, at]
            return
    for place, value in zip(places, (status, result, reason, server_bid_id), strict=False):
        if value is not None:
            target[place] = value
    target[places[-1]] = at


def _in_chunks(
    conn: sqlite3.Connection, statement: Callable[[int, int], str], rows: list[Any]
) -> None:
    """Write `rows` in order, up to `_CHUNK` rows per `statement(width, rows)` text.

    Chunks are powers of two, so a handful of statement texts serve every batch size (SQLite
    prepares each text once and keeps it in the connection's statement cache).
    """
    start = 0
    while start < len(rows):
        size = min(_CHUNK, 1 << (len(rows) - start).bit_length() - 1)
        chunk = rows[start : start + size]
        params = list(itertools.chain.from_iterable(chunk))
        conn.execute(statement(len(chunk[0]), size), params)
        start += size


def _group(width: int, rows: int) -> str:
    return ", ".join(["(" + ", ".join(["?"] * width) + ")"] * rows)


@functools.cache
def _insert_sql(table: str, columns: str, width: int, rows: int) -> str:
    return f"INSERT INTO {table} ({columns}) VALUES {_group(width, rows)}"


@functools.cache
def _update_sql(width: int, rows: int) -> str:
    return _UPDATE_FOLDED.format(rows=_group(width, rows))
