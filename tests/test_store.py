"""Tests for searcherd.store and searcherd.queries: schema, batching, durability, read-back.

All on real SQLite files in `tmp_path`; the crash test kills a real writer process.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from searcherd import queries as queries_module
from searcherd import store as store_module
from searcherd.queries import bid_history, list_bids, list_orders, list_secrets
from searcherd.store import SCHEMA_VERSION, BidRecord, StateStore, StoreError, open_database

if TYPE_CHECKING:
    import io
    from collections.abc import AsyncIterator, Callable

    from conftest import Child

_WRITER = Path(__file__).with_name("_store_writer.py")


def _bid(local_id: str, **changes: Any) -> BidRecord:
    """A bid with plausible defaults; keywords override fields."""
    fields: dict[str, Any] = {
        "local_id": local_id,
        "venue": "express_relay",
        "chain_id": "solana",
        "strategy": "fixed",
        "opportunity_id": f"opp-{local_id}",
        "amount": 1000,
        "status": "pending",
        "created_at": 1_700_000_000.0,
    }
    fields.update(changes)
    return BidRecord(**fields)


@asynccontextmanager
async def _running(path: Path, **options: Any) -> AsyncIterator[StateStore]:
    """A started StateStore; leaving the block cancels it (and so makes it flush and close)."""
    store = StateStore(path, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        yield store
        nursery.cancel_scope.cancel()


def _count(path: Path, table: str = "bids") -> int:
    """Rows in `table`, read through a separate read-only connection."""
    conn = open_database(path, readonly=True)
    try:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(count)
    finally:
        conn.close()


# -- opening and migrating ---------------------------------------------------------------------


def test_new_database_is_migrated_to_the_current_version(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """A new file gets every table and `PRAGMA user_version` = SCHEMA_VERSION, each step logged
    once."""
    path = tmp_path / "state" / "s.db"
    conn = open_database(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    finally:
        conn.close()
    assert version == SCHEMA_VERSION
    assert tables >= {
        "bids",
        "bid_status_history",
        "orders",
        "order_events",
        "secrets",
        "fill_intents",
    }
    open_database(path).close()  # already current: nothing to do
    migrated = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [(r["event"], r["version"]) for r in migrated] == [
        ("state_migrated", version) for version in range(1, SCHEMA_VERSION + 1)
    ]


def test_version_1_database_keeps_its_rows_and_gets_the_current_indexes(tmp_path: Path) -> None:
    """A file of the first schema is migrated in place: its rows stay, bids are no longer
    indexed by their (random) server ids, status or strategy, and are indexed by time."""
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.executescript(store_module._MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO bids (local_id, venue, chain_id, strategy, server_bid_id, amount, status,"
        " created_at, updated_at) VALUES ('a', 'express_relay', 'solana', 's', 'srv', '1',"
        " 'pending', 1.0, 1.0)"
    )
    conn.commit()
    conn.close()
    open_database(path).close()
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='bids'"
                " AND sql IS NOT NULL"
            )
        }
        rows = conn.execute("SELECT local_id, server_bid_id FROM bids").fetchall()
    finally:
        conn.close()
    assert version == SCHEMA_VERSION
    assert indexes == {"bids_created"}
    assert rows == [("a", "srv")]


@pytest.mark.parametrize(
    ("status", "strategy"), [(None, None), ("won", None), (None, "s1"), ("won", "s1")]
)
def test_bid_listings_walk_the_time_index_without_sorting(
    tmp_path: Path, status: str | None, strategy: str | None
) -> None:
    """`searcherd bids` (any filter) reads the newest bids along the created_at index: no sort
    of the whole table, which took seconds at a million bids."""
    path = tmp_path / "s.db"
    open_database(path).close()
    sql, params = queries_module._bids_query(status, strategy, 100)
    conn = sqlite3.connect(path)
    try:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        conn.close()
    assert "USING INDEX bids_created" in plan
    assert "TEMP B-TREE" not in plan


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    """Writers use WAL, so readers never block the writer and vice versa."""
    path = tmp_path / "s.db"
    open_database(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema_is_refused(tmp_path: Path, readonly: bool) -> None:
    """A database written by a newer searcherd is refused with a hint to upgrade."""
    path = tmp_path / "s.db"
    open_database(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=r"newer than this searcherd knows.*upgrade"):
        open_database(path, readonly=readonly)


def test_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """A text file where the database should be gives StoreError naming the path."""
    path = tmp_path / "s.db"
    path.write_text("not sqlite at all " * 100, encoding="utf-8")
    for readonly in (False, True):
        with pytest.raises(StoreError, match="cannot open the state database") as info:
            open_database(path, readonly=readonly)
        assert str(path) in str(info.value)


def test_readers_need_an_existing_searcherd_database(tmp_path: Path) -> None:
    """Read-only opens refuse a missing file and a database without our schema."""
    with pytest.raises(StoreError, match="no state database here"):
        open_database(tmp_path / "missing.db", readonly=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(StoreError, match="not a searcherd state database"):
        list_bids(other)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("under_file", id="folder-is-a-file"),
        pytest.param("proc", id="proc"),
    ],
)
async def test_unwritable_location_is_a_store_error(tmp_path: Path, where: str) -> None:
    """A state path that cannot be created fails with StoreError, from open and from run."""
    # chmod does not stop root; a path under a regular file, or under /proc, fails for anyone.
    if where == "under_file":
        (tmp_path / "afile").write_text("", encoding="utf-8")
        path = tmp_path / "afile" / "state.db"
    else:
        path = Path("/proc/searcherd-test-state/state.db")
    with pytest.raises(StoreError, match="cannot create the state folder") as info:
        open_database(path)
    assert str(path) in str(info.value)
    async with trio.open_nursery() as nursery:
        with pytest.raises(StoreError, match="cannot create the state folder"):
            await nursery.start(StateStore(path).run)


# -- batching and durability -------------------------------------------------------------------


async def test_many_writes_spread_over_time_commit_in_few_batches(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Writes arriving within one commit interval share one transaction."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=1.0, batch_max=100_000) as store:
        for n in range(200):
            store.add_bid(_bid(f"b{n}"))
            await trio.sleep(0.001)  # 0.2 s of (virtual) time in all, well within 1 s
        await store.flush()
        assert store.commits == 1
        assert store.pending == 0
        assert _count(path) == 200
        assert _count(path, "bid_status_history") == 200


class _WriterSteps(trio.abc.Instrument):
    """Counts how often the store's writer task runs (each run is a task switch)."""

    def __init__(self) -> None:
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("StateStore.run"):
            self.steps += 1


async def test_statements_within_a_batch_window_do_not_wake_the_writer(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The writer wakes for a batch's first statement and when the batch is full, not for each
    statement in between (otherwise several task switches per bid on the event loop)."""
    writer = _WriterSteps()
    trio.lowlevel.add_instrument(writer)
    try:
        async with _running(tmp_path / "s.db", commit_interval=1.0, batch_max=100_000) as store:
            before = writer.steps
            for n in range(200):  # 400 statements, one batch window
                store.add_bid(_bid(f"b{n}"))
                await trio.sleep(0.001)
            await store.flush()
            assert store.commits == 1
            assert writer.steps - before < 20
    finally:
        trio.lowlevel.remove_instrument(writer)


async def test_a_full_batch_commits_without_waiting_for_the_interval(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """`batch_max` waiting statements commit at once; fewer wait for `commit_interval`,
    unless someone calls `flush()`, which commits at once."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=3600.0, batch_max=10) as store:
        for n in range(5):  # two statements per bid: exactly batch_max
            store.add_bid(_bid(f"b{n}"))
        await trio.sleep(1.0)
        assert store.pending == 0  # the full batch was taken at once, not after the interval
        await store.flush()  # (its commit runs on a worker thread: wait for it by event)
        assert store.commits == 1
        store.add_bid(_bid("late"))
        await trio.sleep(3000.0)
        assert store.pending == 2  # a partial batch waits for the interval...
        await trio.sleep(700.0)  # ...and then commits, on a worker thread: wait for it by
        await store.flush()  # event, not by clock (autojump races a thread on the clock)
        assert store.commits == 2
        store.add_bid(_bid("flushed"))
        start = trio.current_time()
        await store.flush()
        assert trio.current_time() - start < 3600.0  # flush() does not wait out the window
        assert store.commits == 3
        assert _count(path) == 7


async def test_routine_commits_run_on_the_idle_writer_and_urgent_ones_do_not(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A batch that waited out its window commits on the store's idle-priority thread; a
    `flush()`, a full batch and the last batch (they cannot wait for a free core) commit on
    trio's threads."""
    committed_on: list[str] = []

    def trace(statement: str) -> None:
        if statement == "COMMIT":
            committed_on.append(threading.current_thread().name)

    path = tmp_path / "s.db"
    async with _running(path, commit_interval=1.0, batch_max=10) as store:
        await store.query(lambda conn: conn.set_trace_callback(trace))
        store.add_bid(_bid("routine"))
        await trio.sleep(2.0)  # the window passes and the batch commits...
        await store.flush()  # ...on a thread: wait for it by event, not by the clock
        store.add_bid(_bid("flushed"))
        await store.flush()
        for n in range(5):  # ten statements: a full batch, taken at once
            store.add_bid(_bid(f"full{n}"))
        await trio.sleep(0.5)  # the writer has taken it (well within the window)
        await store.flush()  # wait for its commit
        store.add_bid(_bid("last"))
    assert committed_on[0] == "searcherd-state-writer"
    assert len(committed_on) == 4
    assert "searcherd-state-writer" not in committed_on[1:]
    assert _count(path) == 8


async def test_a_batch_cancelled_while_waiting_for_the_connection_is_still_committed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A batch taken off the queue whose commit is cancelled before it got the connection (a
    read held it) goes back to the queue, and the final flush commits it."""
    path = tmp_path / "s.db"
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        store = StateStore(path, commit_interval=0.1, batch_max=100_000)
        await nursery.start(store.run)
        nursery.start_soon(store.query, lambda conn: release.wait())  # holds the connection
        store.add_bid(_bid("b0"))
        await trio.sleep(1.0)  # the batch window passes: the writer takes the batch...
        await trio.testing.wait_all_tasks_blocked()
        assert store.pending == 0  # ...and waits for the connection
        nursery.cancel_scope.cancel()
        release.set()
    assert _count(path) == 1


async def test_flush_makes_rows_visible_to_readers_while_the_writer_runs(tmp_path: Path) -> None:
    """After `flush()` returns, `queries.list_bids` (its own connection) sees every row."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=0.01) as store:
        for n in range(50):
            store.add_bid(_bid(f"b{n}", created_at=1000.0 + n))
        await store.flush()
        rows = list_bids(path, limit=1000)
        assert len(rows) == 50
        assert rows[0]["local_id"] == "b49"  # newest first
        store.add_bid(_bid("b50", created_at=2000.0))
        await store.flush()
        assert list_bids(path, limit=1)[0]["local_id"] == "b50"


async def test_cancellation_flushes_the_last_batch(tmp_path: Path) -> None:
    """Rows enqueued just before the store is cancelled are committed by its final flush."""
    path = tmp_path / "s.db"
    async with trio.open_nursery() as nursery:
        store = StateStore(path, commit_interval=3600.0, batch_max=100_000)
        await nursery.start(store.run)
        for n in range(30):
            store.add_bid(_bid(f"b{n}"))
        nursery.cancel_scope.cancel()
    assert store.commits == 1
    assert _count(path) == 30
    with pytest.raises(StoreError, match="not running"):
        await store.query(lambda conn: conn.execute("SELECT 1").fetchone())


async def test_a_rejected_statement_is_skipped_and_the_rest_commit(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """A constraint violation drops that statement only, logs it, and commits its batch-mates."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=0.01) as store:
        store.add_bid(_bid("a", amount=1))
        store.add_bid(_bid("a", amount=2))  # duplicate primary key
        store.add_status("ghost", "won", at=1.0, source="ws", applied=False)  # no such bid
        store.add_bid(_bid("b"))
        await store.flush()
        assert store.last_error is None
    rows = {row["local_id"]: row for row in list_bids(path)}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["amount"] == "1"
    rejected = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    rejected = [r for r in rejected if r["event"] == "state_row_rejected"]
    assert len(rejected) == 2
    assert all(r["level"] == "error" and r["path"] == str(path) for r in rejected)
    assert "UNIQUE constraint failed" in rejected[0]["error"]
    assert "FOREIGN KEY constraint failed" in rejected[1]["error"]


def test_sigkilled_writer_leaves_every_committed_row(
    tmp_path: Path, spawn: Callable[..., Child]
) -> None:
    """A writer killed with SIGKILL mid-stream leaves a sound database with all it committed."""
    path = tmp_path / "state" / "s.db"
    writer = spawn(str(_WRITER), str(path))
    committed = 0
    while committed < 1000:  # each line waits with a deadline; a stuck writer fails the test
        committed = int(writer.readline())
    writer.send_signal(signal.SIGKILL)  # mid-stream: it is writing the next batch by now
    assert writer.wait() == -signal.SIGKILL
    conn = open_database(path, readonly=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (bids,) = conn.execute("SELECT count(*) FROM bids").fetchone()
        (history,) = conn.execute("SELECT count(*) FROM bid_status_history").fetchone()
    finally:
        conn.close()
    assert bids >= committed
    assert history >= 2 * committed
    # A new writer recovers the WAL and carries on.
    open_database(path).close()
    assert _count(path) == bids


# -- what each writer records ------------------------------------------------------------------


async def test_bid_rows_round_trip_with_amounts_of_any_size(tmp_path: Path) -> None:
    """Amounts past 2**63 are kept exactly (as decimal text), detail too; filters work."""
    path = tmp_path / "s.db"
    big = 2**200 + 1
    async with _running(path, commit_interval=0.01) as store:
        store.add_bid(
            _bid("x", amount=big, strategy="s1", detail={"fee": big, "note": "n"}, created_at=1.0)
        )
        store.add_bid(_bid("y", strategy="s2", created_at=2.0))
        store.add_status("y", "won", at=3.0, source="ws", result="tx1")
        store.set_server_bid_id("x", "srv-1", at=4.0)
        await store.flush()
    (x,) = list_bids(path, strategy="s1")
    assert x["amount"] == str(big)
    assert int(x["amount"]) == big
    assert x["detail"] == {"fee": big, "note": "n"}
    assert x["server_bid_id"] == "srv-1"
    assert x["updated_at"] == 4.0
    assert [r["local_id"] for r in list_bids(path, status="won")] == ["y"]
    assert list_bids(path, status="won", strategy="s1") == []
    assert [r["local_id"] for r in list_bids(path, limit=1)] == ["y"]


async def test_status_history_keeps_anomalies_without_applying_them(tmp_path: Path) -> None:
    """Applied statuses update the bid; `applied=False` only goes to the history."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=0.01) as store:
        store.add_bid(_bid("x"))
        store.add_status("x", "sent", at=2.0, source="local")
        store.add_status("x", "lost", at=3.0, source="ws", reason="outbid")
        store.add_status("x", "won", at=4.0, source="http", applied=False)
        await store.flush()
    (bid,) = list_bids(path)
    assert (bid["status"], bid["reason"], bid["updated_at"]) == ("lost", "outbid", 3.0)
    history = bid_history(path, "x")
    assert [(h["status"], h["source"], h["applied"]) for h in history] == [
        ("pending", "local", 1),
        ("sent", "local", 1),
        ("lost", "ws", 1),
        ("won", "http", 0),
    ]


async def test_orders_upsert_keeps_fields_not_given(tmp_path: Path) -> None:
    """A later upsert changes only the fields it names; amounts stay exact; status filters."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=0.01) as store:
        store.upsert_order(
            "0xaa", status="active", at=1.0, src_chain_id=1, maker="0xm", making_amount=10**30
        )
        store.upsert_order("0xbb", status="active", at=2.0, ours=True)
        store.upsert_order("0xaa", status="filled", at=3.0, remaining_maker_amount=0)
        store.add_order_event("0xaa", "order_filled", at=3.0, detail={"tx": "0x1"})
        await store.flush()
        events = await store.query(lambda c: c.execute("SELECT event FROM order_events").fetchall())
    assert events == [("order_filled",)]
    rows = list_orders(path)
    assert [r["order_hash"] for r in rows] == ["0xaa", "0xbb"]  # most recently updated first
    aa = rows[0]
    assert (aa["status"], aa["src_chain_id"], aa["maker"]) == ("filled", 1, "0xm")
    assert aa["making_amount"] == str(10**30)
    assert aa["remaining_maker_amount"] == "0"
    assert aa["ours"] == 0
    assert rows[1]["ours"] == 1
    assert [r["order_hash"] for r in list_orders(path, status="active")] == ["0xbb"]


async def test_secrets_keep_the_first_value_and_fill_intents_are_recorded(tmp_path: Path) -> None:
    """The same (order, index) secret twice keeps the first; fill intents keep exact amounts."""
    path = tmp_path / "s.db"
    async with _running(path, commit_interval=0.01) as store:
        store.add_secret("0xaa", 1, "0xs1", at=1.0, src_immutables={"k": 1})
        store.add_secret("0xaa", 0, "0xs0", at=1.0)
        store.add_secret("0xaa", 1, "0xother", at=2.0)
        store.add_fill_intent("0xaa", "fill", 10**40, at=1.0, detail={"part": 1})
        await store.flush()
        intents = await store.query(
            lambda c: c.execute("SELECT strategy, amount FROM fill_intents").fetchall()
        )
    secrets = list_secrets(path, "0xaa")
    assert [(s["idx"], s["secret"]) for s in secrets] == [(0, "0xs0"), (1, "0xs1")]
    assert json.loads(secrets[1]["src_immutables"]) == {"k": 1}
    assert intents == [("fill", str(10**40))]
