"""How one queued batch of state-table writes reaches the disk.

The store's writers queue statements (`Statement`: SQL text and parameters) and return at once;
each batch is folded on the event loop (:func:`fold`) and committed in one transaction by a
worker thread (:func:`write_batch`). The bid writes, several per bid (its row, then a status row
and an update per change), are the bulk of them.

The worker thread shares the GIL with the event loop. Whatever it does in Python, binding
parameters included, it does holding the GIL, and a worker at idle CPU priority can be put aside
by the kernel in the middle of it: the event loop then waits for the GIL until the worker gets a
core again. So the worker is given as little Python work as possible, and a fixed amount per
batch, however large. The bid writes of a batch are folded together (the bid statements are
recognised by identity: `INSERT_BID`, `INSERT_FIRST_STATUS`, `INSERT_STATUS`, `UPDATE_STATUS`,
`SET_SERVER_BID_ID`) and each kind is encoded, on the event loop, as one JSON array of rows:

- a bid inserted in this batch is written once, with every later change of the batch applied
  to its row;
- changes to bids of earlier batches become one row per bid, the changes applied in order, of
  one update (``UPDATE ... FROM json_each(?)``);
- status history rows are inserted by one statement, in the order they were queued (their row
  ids keep that order);
- every other statement (Fusion+ orders, events, secrets, fill intents) runs as queued.

Each folded statement binds a single parameter, its JSON text, and SQLite unpacks the rows
(``json_each``) without the GIL. The rows committed are those the statements would give run one
by one, in order: JSON carries text, integers, floats (exactly: shortest round-trip form), null
and booleans (as 1 and 0, as SQLite stores them); a batch with anything else (bytes, an integer
beyond 64 bits, a text with a NUL) is not folded. When any statement is refused on its own
merits (a constraint, a bad value), the batch is rolled back and replayed statement by statement
with a savepoint each (:func:`write_rows`), which skips exactly the refused ones: the careful
path is the plain one, and it only runs when it has to.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

import attrs
import orjson

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


def _insert_rows(table: str, columns: str) -> str:
    """An insert of every row of a JSON array parameter (a row: an array in `columns` order)."""
    values = ", ".join(f"value->>{i}" for i in range(columns.count(",") + 1))
    # ORDER BY key: rows go in array order, so the row ids keep the queue's order.
    return f"INSERT INTO {table} ({columns}) SELECT {values} FROM json_each(?) ORDER BY key"


# The folded statements. A folded update carries null for "leave as it is": no column it sets
# can be set back to NULL by the statements above (status is NOT NULL; result, reason and the
# server id only ever get a value).
_INSERT_BIDS: Final = _insert_rows(
    "bids",
    "local_id, venue, chain_id, strategy, opportunity_id, server_bid_id, amount, status,"
    " result, reason, created_at, updated_at, detail",
)
_INSERT_HISTORY: Final = _insert_rows(
    "bid_status_history", "local_id, status, result, reason, source, applied, at"
)
# A folded update row: status, result, reason, server id, updated_at, local id. The bids of one
# batch are distinct (the updates are folded per bid), so each bid row matches one update row.
_UPDATE_BIDS: Final = (
    "UPDATE bids SET status = coalesce(u.value->>0, status),"
    " result = coalesce(u.value->>1, result), reason = coalesce(u.value->>2, reason),"
    " server_bid_id = coalesce(u.value->>3, server_bid_id), updated_at = u.value->>4"
    " FROM json_each(?) AS u WHERE local_id = u.value->>5"
)
# Where status, result, reason, server id and updated_at sit in a folded bid row (the column
# order of _INSERT_BIDS) and in a folded update row (above).
_IN_ROW: Final = (7, 8, 9, 5, 11)
_IN_UPDATE: Final = (0, 1, 2, 3, 4)


@attrs.frozen
class Folded:
    """A batch's writes folded together and encoded (see the module docstring); made by
    :func:`fold`. Each JSON text is an array of rows, or None when there are none."""

    new_bids: str | None  # bids rows, every change of the batch applied
    updates: str | None  # one update row per bid of earlier batches
    history: str | None  # bid_status_history rows, in queue order
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
    """Fold and encode the bid writes of `batch` (see the module docstring); None if it cannot
    be folded (a bid inserted twice: the careful path reports the second insert; or a value
    JSON does not carry as the statement would bind it)."""
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
    try:
        return Folded(
            new_bids=_encode(list(new_bids.values())),
            updates=_encode([(*u, local_id) for local_id, u in updates.items()]),
            history=_encode(history),
            others=others,
        )
    except _NotCarried:
        return None


class _NotCarried(Exception):
    """A value JSON would not carry as the statement binds it."""


def _encode(rows: list[Any]) -> str | None:
    if not rows:
        return None
    try:
        text = orjson.dumps(rows)  # refuses an integer beyond 64 bits, bytes, unknown types
    except orjson.JSONEncodeError as exc:
        raise _NotCarried from exc
    # json_each cuts a text at a NUL. (A NaN or an infinity, which JSON writes as null, needs no
    # check: every float these rows carry goes to a NOT NULL column, so the statement is refused
    # and the batch takes the careful path, which binds the float itself.)
    if b"\\u0000" in text:
        raise _NotCarried
    # Bound as text: SQLite 3.45 and later read a blob argument as its binary JSONB format.
    return text.decode()


def _write_folded(conn: sqlite3.Connection, folded: Folded) -> None:
    # Bids before their history rows: the history references them.
    if folded.new_bids is not None:
        conn.execute(_INSERT_BIDS, (folded.new_bids,))
    if folded.updates is not None:
        conn.execute(_UPDATE_BIDS, (folded.updates,))
    if folded.history is not None:
        conn.execute(_INSERT_HISTORY, (folded.history,))
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
