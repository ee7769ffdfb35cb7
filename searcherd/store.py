"""The durable state table: every bid, every status change, Fusion+ orders and secrets.

SQLite in WAL mode, one connection used from worker threads one call at a time
(`CapacityLimiter(1)`). Writers never wait on disk: `add_bid`, `add_status` and friends append a
statement to an in-memory queue and return; the `run` task commits the queue in small batches
(every `commit_interval`, or sooner when `batch_max` statements wait), preparing each in a
moment the event loop is idle (searcherd._store_batch says how a batch is written). A crash
loses at most the last batch window, which the venues' reconcilers recover from the venue after
a restart.

The routine commits run on a thread of their own at idle CPU priority
(searcherd._background_thread), so they never take a core from the event loop; a commit that
cannot wait (a `flush`, a full queue, the last one) and the reads take trio's normal threads.

Amounts are stored as decimal TEXT: SQLite integers stop at 2**63 and token amounts do not.
Times are Unix seconds (float), so rows mean the same after a restart.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import orjson
import structlog
import trio

from searcherd._background_thread import BackgroundThread
from searcherd._idle import wait_for_idle
from searcherd._store_batch import (
    INSERT_BID,
    INSERT_FIRST_STATUS,
    INSERT_STATUS,
    SET_SERVER_BID_ID,
    UPDATE_STATUS,
    Statement,
    fold,
    write_batch,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["SCHEMA_VERSION", "BidRecord", "StateStore", "StoreError", "open_database"]

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")

# Each entry migrates the schema from version i to i + 1. Never edit a shipped entry: add one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE bids (
        local_id       TEXT PRIMARY KEY,
        venue          TEXT NOT NULL,
        chain_id       TEXT NOT NULL,
        strategy       TEXT NOT NULL,
        opportunity_id TEXT,
        server_bid_id  TEXT,
        amount         TEXT NOT NULL,
        status         TEXT NOT NULL,
        result         TEXT,
        reason         TEXT,
        created_at     REAL NOT NULL,
        updated_at     REAL NOT NULL,
        detail         TEXT
    );
    CREATE INDEX bids_status ON bids (status);
    CREATE INDEX bids_strategy ON bids (strategy);
    CREATE UNIQUE INDEX bids_server_bid_id ON bids (venue, server_bid_id);
    CREATE TABLE bid_status_history (
        id       INTEGER PRIMARY KEY,
        local_id TEXT NOT NULL REFERENCES bids (local_id),
        status   TEXT NOT NULL,
        result   TEXT,
        reason   TEXT,
        source   TEXT NOT NULL,
        applied  INTEGER NOT NULL,
        at       REAL NOT NULL
    );
    CREATE INDEX bid_status_history_bid ON bid_status_history (local_id);
    CREATE TABLE orders (
        order_hash             TEXT PRIMARY KEY,
        src_chain_id           INTEGER,
        dst_chain_id           INTEGER,
        maker                  TEXT,
        making_amount          TEXT,
        taking_amount          TEXT,
        remaining_maker_amount TEXT,
        status                 TEXT NOT NULL,
        ours                   INTEGER NOT NULL DEFAULT 0,
        deadline               REAL,
        created_at             REAL NOT NULL,
        updated_at             REAL NOT NULL,
        detail                 TEXT
    );
    CREATE INDEX orders_status ON orders (status);
    CREATE TABLE order_events (
        id         INTEGER PRIMARY KEY,
        order_hash TEXT NOT NULL,
        event      TEXT NOT NULL,
        at         REAL NOT NULL,
        detail     TEXT
    );
    CREATE INDEX order_events_order ON order_events (order_hash);
    CREATE TABLE secrets (
        order_hash     TEXT NOT NULL,
        idx            INTEGER NOT NULL,
        secret         TEXT NOT NULL,
        src_immutables TEXT,
        dst_immutables TEXT,
        at             REAL NOT NULL,
        PRIMARY KEY (order_hash, idx)
    );
    CREATE TABLE fill_intents (
        id         INTEGER PRIMARY KEY,
        order_hash TEXT NOT NULL,
        strategy   TEXT NOT NULL,
        amount     TEXT NOT NULL,
        at         REAL NOT NULL,
        detail     TEXT
    );
    """,
    # Server bid ids are random UUIDs: their index took each new one on a random page, so every
    # commit rewrote a page per bid and the cost grew with the table (measured: 50 -> 18 us of
    # writer CPU per bid at 60,000 rows, 58 -> 22 at 150,000). Nothing looks bids up by it, and
    # the ids' uniqueness is the server's to keep.
    "DROP INDEX bids_server_bid_id",
    # Every read of bids asks for the newest first or those since a time (`searcherd bids`, the
    # restart's look-ups), which the status and strategy indexes did not serve: a listing sorted
    # the whole table (1.4 s at a million bids), and the open-bid query's `status NOT IN` uses no
    # index. Keeping them cost the writer an entry in each per bid, and a delete and an insert
    # in the status index per status change. Bids arrive in time order, so an index on
    # created_at grows at its end and costs almost nothing (measured on a replay of a daemon's
    # writes: 33 -> 28 us of writer CPU per bid; a listing at a million bids 1.4 s -> under 1 ms).
    """
    DROP INDEX bids_status;
    DROP INDEX bids_strategy;
    CREATE INDEX bids_created ON bids (created_at);
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(Exception):
    """The state database cannot be opened or written; the message says which file and why."""


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        # orjson stops at 64-bit integers and token amounts do not; the stdlib writes any int.
        return json.dumps(value, default=str, separators=(",", ":"))


def open_database(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (and for writers, create and migrate) the state database.

    Raises `StoreError` with the path and the reason: a missing folder that cannot be created, a
    read-only location, a file that is not a database, or one written by a newer searcherd.
    """
    if readonly and not path.exists():
        raise StoreError(f"{path}: no state database here (has the daemon run yet?)")
    try:
        conn = _connect(path, readonly=readonly)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the state database: {exc}") from None
    except OSError as exc:
        where = exc.filename or path.parent
        raise StoreError(
            f"{path}: cannot create the state folder {where}: {exc.strerror}"
        ) from None
    try:
        _prepare(conn, path, readonly=readonly)
    except BaseException as exc:
        conn.close()  # a failed open must not leave the file held open
        if isinstance(exc, sqlite3.DatabaseError):
            raise StoreError(f"{path}: cannot open the state database: {exc}") from None
        raise
    return conn


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _prepare(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    if readonly:
        conn.execute("PRAGMA busy_timeout=5000")
        if _check_version(conn, path) == 0:
            # An empty file or another program's database: every query would fail later with
            # "no such table", which tells the user nothing.
            raise StoreError(f"{path}: not a searcherd state database")
        return
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "busy_timeout=5000",
        "foreign_keys=ON",
    ):
        conn.execute(f"PRAGMA {pragma}")
    _migrate(conn, path)


def _check_version(conn: sqlite3.Connection, path: Path) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this searcherd knows "
            f"({SCHEMA_VERSION}); upgrade searcherd"
        )
    return int(version)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = _check_version(conn, path)
    for target, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        # One transaction per step: a crash mid-migration leaves the previous version intact.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        _log.info("state_migrated", path=str(path), version=target)


@attrs.frozen
class BidRecord:
    """One bid as first recorded: who made it, for what, and for how much."""

    local_id: str
    venue: str
    chain_id: str
    strategy: str
    opportunity_id: str | None
    amount: int
    status: str
    created_at: float
    server_bid_id: str | None = None
    detail: dict[str, Any] | None = None


class StateStore:
    """Queue-fed SQLite writer; see the module docstring for the durability contract."""

    def __init__(self, path: Path, *, commit_interval: float = 0.05, batch_max: int = 1000) -> None:
        self.path = path
        self._commit_interval = commit_interval
        self._batch_max = batch_max
        self._pending: list[Statement] = []
        self._wake = trio.Event()
        self._committed_seq = 0  # statements committed so far
        self._enqueued_seq = 0  # statements enqueued so far
        self._progress = trio.Event()
        self._urgent = False  # a flush() is waiting: skip the batch window
        self._limiter = trio.CapacityLimiter(1)
        self._background = BackgroundThread("searcherd-state-writer")
        self._conn: sqlite3.Connection | None = None
        self.commits = 0
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the database, report started, then commit batches until cancelled.

        On cancellation the queue is flushed under a shield: a SIGTERM must not lose rows the
        hot path already handed over.
        """
        self._conn = await trio.to_thread.run_sync(open_database, self.path)
        self._background.start()
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                # Let a batch gather, unless it is already big: fewer, larger transactions.
                if len(self._pending) < self._batch_max and not self._urgent:
                    with trio.move_on_after(self._commit_interval):
                        while len(self._pending) < self._batch_max and not self._urgent:
                            self._wake = trio.Event()
                            await self._wake.wait()
                    # Folding the batch is Python work on the event loop: do it in a quiet
                    # moment, not in front of an opportunity (bounded: rows must not wait long).
                    if not self._urgent:
                        await wait_for_idle(self._commit_interval)
                routine = not self._urgent and len(self._pending) < self._batch_max
                self._urgent = False
                await self._commit_pending(routine=routine)
        finally:
            # No routine commit is under way (they cannot be cancelled mid-call), and the rest
            # run on trio's threads.
            self._background.stop()
            with trio.CancelScope(shield=True):
                await self._commit_pending(routine=False)
                conn, self._conn = self._conn, None
                await trio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def _commit_pending(self, *, routine: bool) -> None:
        # Swap the queue before the thread hop: writers keep appending to the new list while
        # this batch commits.
        batch, self._pending = self._pending, []
        self._wake = trio.Event()
        if not batch or self._conn is None:
            return
        conn = self._conn
        folded = fold(batch)  # here, not in the worker: see searcherd._store_batch
        try:
            if routine:  # at idle priority: see the module docstring
                async with self._limiter:
                    skipped = await self._background.run_sync(write_batch, conn, batch, folded)
            else:
                skipped = await trio.to_thread.run_sync(
                    write_batch, conn, batch, folded, limiter=self._limiter
                )
        except sqlite3.Error as exc:
            # Keep the rows and retry on the next wake-up: losing them would break the
            # never-lose-a-bid promise, and a full disk may clear.
            self._pending[:0] = batch
            self.last_error = f"{type(exc).__name__}: {exc}"
            _log.error(
                "state_commit_failed",
                path=str(self.path),
                error=self.last_error,
                pending=len(self._pending),
            )
            await trio.sleep(1.0)
            self._wake.set()
            return
        except BaseException:
            # Cancelled while a read held the connection: nothing was written, so the batch
            # goes back to the queue for the final flush.
            self._pending[:0] = batch
            raise
        for error in skipped:
            _log.error("state_row_rejected", path=str(self.path), error=error)
        self.commits += 1
        self._committed_seq += len(batch)
        if self._committed_seq >= self._enqueued_seq:
            self._urgent = False  # every flush() waiting is satisfied by this commit
        self._progress.set()
        self._progress = trio.Event()

    async def flush(self) -> None:
        """Wait until everything enqueued before this call is committed."""
        target = self._enqueued_seq
        while self._committed_seq < target:
            self._urgent = True  # commit now, without waiting out the batch window
            self._wake.set()
            await self._progress.wait()

    async def query(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run a read function on the store's connection, off the trio thread."""
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is not running")
        return await trio.to_thread.run_sync(fn, self._conn, limiter=self._limiter)

    @property
    def pending(self) -> int:
        """Statements waiting for the next commit."""
        return len(self._pending)

    def _enqueue(self, sql: str, params: tuple[Any, ...]) -> None:
        pending = self._pending
        pending.append((sql, params))
        self._enqueued_seq += 1
        # Wake the writer for a batch's first statement (it opens the batch window) and when
        # the batch is full; statements in between just join it (a wake-up each would cost the
        # event loop a task switch per statement, several per bid).
        if len(pending) == 1 or len(pending) >= self._batch_max:
            self._wake.set()

    # -- writers: each appends to the queue and returns at once ---------------------------------

    def add_bid(self, bid: BidRecord) -> None:
        """Record a new bid (before it is sent, so a crash mid-send still leaves its row)."""
        self._enqueue(
            INSERT_BID,
            (
                bid.local_id,
                bid.venue,
                bid.chain_id,
                bid.strategy,
                bid.opportunity_id,
                bid.server_bid_id,
                str(bid.amount),
                bid.status,
                bid.created_at,
                bid.created_at,
                _json(bid.detail),
            ),
        )
        self._enqueue(INSERT_FIRST_STATUS, (bid.local_id, bid.status, bid.created_at))

    def set_server_bid_id(self, local_id: str, server_bid_id: str, at: float) -> None:
        """Attach the venue's id to a bid once the venue accepted it."""
        self._enqueue(SET_SERVER_BID_ID, (server_bid_id, at, local_id))

    def add_status(
        self,
        local_id: str,
        status: str,
        *,
        at: float,
        source: str,
        applied: bool = True,
        result: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Record a status transition; `applied=False` keeps an anomaly without applying it.

        `source` says where the status came from: `ws`, `http` (reconciliation), or `local`
        (the daemon's own decision: sent, rejected, timed out, dry run, blocked).
        """
        self._enqueue(INSERT_STATUS, (local_id, status, result, reason, source, int(applied), at))
        if applied:
            self._enqueue(UPDATE_STATUS, (status, result, reason, at, local_id))

    def upsert_order(
        self,
        order_hash: str,
        *,
        status: str,
        at: float,
        src_chain_id: int | None = None,
        dst_chain_id: int | None = None,
        maker: str | None = None,
        making_amount: int | None = None,
        taking_amount: int | None = None,
        remaining_maker_amount: int | None = None,
        ours: bool | None = None,
        deadline: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Insert a Fusion+ order or update the fields given (None leaves a field as it was)."""

        def text(value: int | None) -> str | None:
            return None if value is None else str(value)

        self._enqueue(
            "INSERT INTO orders (order_hash, src_chain_id, dst_chain_id, maker, making_amount,"
            " taking_amount, remaining_maker_amount, status, ours, deadline, created_at,"
            " updated_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, coalesce(?, 0), ?, ?, ?, ?)"
            " ON CONFLICT (order_hash) DO UPDATE SET"
            " src_chain_id = coalesce(excluded.src_chain_id, src_chain_id),"
            " dst_chain_id = coalesce(excluded.dst_chain_id, dst_chain_id),"
            " maker = coalesce(excluded.maker, maker),"
            " making_amount = coalesce(excluded.making_amount, making_amount),"
            " taking_amount = coalesce(excluded.taking_amount, taking_amount),"
            " remaining_maker_amount = coalesce(excluded.remaining_maker_amount,"
            " remaining_maker_amount),"
            " status = excluded.status, ours = coalesce(?, ours),"
            " deadline = coalesce(excluded.deadline, deadline),"
            " updated_at = excluded.updated_at, detail = coalesce(excluded.detail, detail)",
            (
                order_hash,
                src_chain_id,
                dst_chain_id,
                maker,
                text(making_amount),
                text(taking_amount),
                text(remaining_maker_amount),
                status,
                None if ours is None else int(ours),
                deadline,
                at,
                at,
                _json(detail),
                None if ours is None else int(ours),
            ),
        )

    def add_order_event(
        self, order_hash: str, event: str, *, at: float, detail: dict[str, Any] | None = None
    ) -> None:
        """Record one Fusion+ event for an order, as it arrived."""
        self._enqueue(
            "INSERT INTO order_events (order_hash, event, at, detail) VALUES (?, ?, ?, ?)",
            (order_hash, event, at, _json(detail)),
        )

    def add_secret(
        self,
        order_hash: str,
        idx: int,
        secret: str,
        *,
        at: float,
        src_immutables: dict[str, Any] | None = None,
        dst_immutables: dict[str, Any] | None = None,
    ) -> None:
        """Record a shared secret; the same (order, index) twice keeps the first."""
        self._enqueue(
            "INSERT OR IGNORE INTO secrets (order_hash, idx, secret, src_immutables,"
            " dst_immutables, at) VALUES (?, ?, ?, ?, ?, ?)",
            (order_hash, idx, secret, _json(src_immutables), _json(dst_immutables), at),
        )

    def add_fill_intent(
        self,
        order_hash: str,
        strategy: str,
        amount: int,
        *,
        at: float,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record what a strategy decided to fill, before the executor acts on it."""
        self._enqueue(
            "INSERT INTO fill_intents (order_hash, strategy, amount, at, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            (order_hash, strategy, str(amount), at, _json(detail)),
        )
