"""Read-only queries over the state table, for `searcherd bids` and `searcherd orders`.

They open their own read-only connection, so they work while the daemon runs: WAL mode lets a
reader see every committed batch without blocking the writer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from searcherd.store import open_database

if TYPE_CHECKING:
    import sqlite3
    from pathlib import Path

__all__ = ["bid_history", "list_bids", "list_orders", "list_secrets"]


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        if row.get("detail"):
            # The stdlib, not orjson: orjson reads integers past 64 bits as floats.
            row["detail"] = json.loads(row["detail"])
        rows.append(row)
    return rows


def list_bids(
    path: Path, *, status: str | None = None, strategy: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest bids first, optionally only one status or one strategy."""
    conn = open_database(path, readonly=True)
    try:
        return _rows(conn, *_bids_query(status, strategy, limit))
    finally:
        conn.close()


def _bids_query(
    status: str | None, strategy: str | None, limit: int
) -> tuple[str, tuple[Any, ...]]:
    """The SQL of `list_bids`: newest first along the created_at index, filters applied on the
    way (so the newest 100 of a common status are found at once, without sorting the table)."""
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if strategy:
        where.append("strategy = ?")
        params.append(strategy)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT * FROM bids {clause} ORDER BY created_at DESC, rowid DESC LIMIT ?"
    return sql, (*params, limit)


def bid_history(path: Path, local_id: str) -> list[dict[str, Any]]:
    """Every status a bid went through, in order, anomalies included."""
    conn = open_database(path, readonly=True)
    try:
        return _rows(
            conn, "SELECT * FROM bid_status_history WHERE local_id = ? ORDER BY id", (local_id,)
        )
    finally:
        conn.close()


def list_orders(path: Path, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Fusion+ orders, most recently updated first."""
    clause, params = ("WHERE status = ?", (status,)) if status else ("", ())
    conn = open_database(path, readonly=True)
    try:
        return _rows(
            conn,
            f"SELECT * FROM orders {clause} ORDER BY updated_at DESC LIMIT ?",
            (*params, limit),
        )
    finally:
        conn.close()


def list_secrets(path: Path, order_hash: str) -> list[dict[str, Any]]:
    """The secrets shared for one order, by index."""
    conn = open_database(path, readonly=True)
    try:
        return _rows(conn, "SELECT * FROM secrets WHERE order_hash = ? ORDER BY idx", (order_hash,))
    finally:
        conn.close()
