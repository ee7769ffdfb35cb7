"""Tests for searcherd._store_batch: the folded fast path writes what the statements say.

Every test compares real SQLite files: one batch committed by `write_batch` (folded) against the
same batch run statement by statement, in order (`write_rows`, the careful path).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from searcherd._store_batch import (
    INSERT_BID,
    INSERT_FIRST_STATUS,
    INSERT_STATUS,
    SET_SERVER_BID_ID,
    UPDATE_STATUS,
    Statement,
    fold,
    write_batch,
    write_rows,
)
from searcherd.store import open_database


def _new_bid(local_id: str, at: float, server_bid_id: str | None = None) -> list[Statement]:
    """The two statements `StateStore.add_bid` queues for a new bid."""
    row = (local_id, "express_relay", "solana", "s", f"opp-{local_id}", server_bid_id, "1000",
           "submitting", at, at, '{"kind":"swap"}')  # fmt: skip
    return [(INSERT_BID, row), (INSERT_FIRST_STATUS, (local_id, "submitting", at))]


def _status(
    local_id: str, status: str, at: float, *, result: str | None = None,
    reason: str | None = None, applied: bool = True,
) -> list[Statement]:  # fmt: skip
    """The statements `StateStore.add_status` queues for one transition."""
    out: list[Statement] = [
        (INSERT_STATUS, (local_id, status, result, reason, "ws", int(applied), at))
    ]
    if applied:
        out.append((UPDATE_STATUS, (status, result, reason, at, local_id)))
    return out


def _dump(path: Path) -> tuple[list[Any], list[Any]]:
    conn = sqlite3.connect(path)
    try:
        bids = conn.execute("SELECT * FROM bids ORDER BY local_id").fetchall()
        history = conn.execute("SELECT * FROM bid_status_history ORDER BY id").fetchall()
    finally:
        conn.close()
    return bids, history


def _one_by_one(conn: sqlite3.Connection, batch: list[Statement]) -> list[str]:
    conn.execute("BEGIN")
    skipped = write_rows(conn, batch)
    conn.execute("COMMIT")
    return skipped


def _both_ways(
    earlier: list[Statement], batch: list[Statement]
) -> tuple[tuple[list[Any], list[Any]], tuple[list[Any], list[Any]], list[str], list[str]]:
    """Commit `earlier`, then `batch`, folded in one file and one by one in another."""
    with tempfile.TemporaryDirectory() as folder:
        folded_path, plain_path = Path(folder, "folded.db"), Path(folder, "plain.db")
        folded, plain = open_database(folded_path), open_database(plain_path)
        try:
            write_batch(folded, earlier, fold(earlier))
            _one_by_one(plain, earlier)
            folded_skipped = write_batch(folded, batch, fold(batch))
            plain_skipped = _one_by_one(plain, batch)
        finally:
            folded.close()
            plain.close()
        return _dump(folded_path), _dump(plain_path), folded_skipped, plain_skipped


_STATUSES = st.sampled_from(["pending", "awaiting_signature", "submitted", "won", "lost"])
_TEXT = st.none() | st.sampled_from(["sig-1", "sig-2", "deadline_passed", "other"])


@st.composite
def _bid_batches(draw: st.DrawFn) -> tuple[list[Statement], list[Statement]]:
    """An earlier batch of bids, then a batch that adds bids and changes old and new ones."""
    old = [f"old-{i}" for i in range(draw(st.integers(0, 4)))]
    earlier = [s for i, local_id in enumerate(old) for s in _new_bid(local_id, float(i))]
    batch: list[Statement] = []
    known = list(old)
    server_ids = iter(f"server-{i}" for i in range(1000))
    for step in range(draw(st.integers(1, 40))):
        at = 100.0 + step
        action = draw(st.sampled_from(["new", "status", "server_id"] if known else ["new"]))
        if action == "new":
            known.append(f"new-{step}")
            batch += _new_bid(known[-1], at)
            continue
        local_id = draw(st.sampled_from(known))
        if action == "server_id":
            batch.append((SET_SERVER_BID_ID, (next(server_ids), at, local_id)))
        else:
            batch += _status(local_id, draw(_STATUSES), at, result=draw(_TEXT),
                             reason=draw(_TEXT), applied=draw(st.booleans()))  # fmt: skip
    return earlier, batch


@settings(max_examples=150, deadline=None)
@given(_bid_batches())
def test_folded_batch_writes_the_same_rows_as_its_statements_in_order(
    batches: tuple[list[Statement], list[Statement]],
) -> None:
    """Any mix of new bids, status changes and server ids: same bids, same history, same order."""
    folded, plain, folded_skipped, plain_skipped = _both_ways(*batches)
    assert folded == plain
    assert folded_skipped == plain_skipped == []


def test_a_refused_write_in_a_folded_batch_skips_only_that_statement() -> None:
    """A status row for a bid the table does not have (foreign key) is refused; the batch's
    new bid and its statuses still land.

    Folded, the refused row shares one multi-row insert with its batch-mates and would take
    them down with it: the batch must fall back to the careful path, which skips only that row.
    """
    earlier = _new_bid("a", 1.0)
    batch = [
        *_new_bid("b", 2.0),
        *_status("ghost", "won", 3.0, applied=False),
        *_status("b", "pending", 4.0),
    ]
    folded, plain, folded_skipped, plain_skipped = _both_ways(earlier, batch)
    assert folded == plain
    bids = {row[0]: row for row in folded[0]}
    assert set(bids) == {"a", "b"}
    assert bids["b"][7] == "pending"  # the later status still applied
    assert [row[1] for row in folded[1]] == ["a", "b", "b"]  # no row for the ghost
    assert len(folded_skipped) == 1
    assert "FOREIGN KEY constraint failed" in folded_skipped[0]
    assert folded_skipped == plain_skipped


def test_a_bid_inserted_twice_in_one_batch_keeps_the_first_row() -> None:
    """A duplicate local id cannot be folded: the careful path keeps the first and reports one."""
    first = _new_bid("a", 1.0)
    second = [(INSERT_BID, (*first[0][1][:6], "2000", *first[0][1][7:]))]
    assert fold([*first, *second]) is None
    folded, plain, folded_skipped, _ = _both_ways([], [*first, *second])
    assert folded == plain
    assert [row[6] for row in folded[0]] == ["1000"]
    assert len(folded_skipped) == 1


def test_large_batches_keep_every_row_in_queue_order() -> None:
    """Hundreds of bids and statuses in one batch: every row lands and history keeps its order."""
    batch = [s for i in range(300) for s in _new_bid(f"b{i:03}", float(i))]
    batch += [s for i in range(300) for s in _status(f"b{i:03}", "pending", 1000.0 + i)]
    folded, plain, _, _ = _both_ways([], batch)
    assert folded == plain
    assert len(folded[0]) == 300
    history_ids = [row[1] for row in folded[1]]
    assert history_ids == [f"b{i:03}" for i in range(300)] * 2


def test_changes_to_many_earlier_bids_each_land_on_their_own_bid() -> None:
    """One update for a batch's changes to 150 earlier bids: each bid gets its own changes."""
    earlier = [s for i in range(150) for s in _new_bid(f"b{i:03}", float(i))]
    batch = [(SET_SERVER_BID_ID, (f"server-{i}", 500.0 + i, f"b{i:03}")) for i in range(150)]
    batch += [s for i in range(0, 150, 2) for s in _status(f"b{i:03}", "won", 900.0 + i,
                                                           result=f"sig-{i}")]  # fmt: skip
    folded, plain, folded_skipped, _ = _both_ways(earlier, batch)
    assert folded == plain
    assert folded_skipped == []
    bids = {row[0]: row for row in folded[0]}
    assert bids["b149"][5] == "server-149"
    assert bids["b148"][7:9] == ("won", "sig-148")
    assert bids["b149"][7:9] == ("submitting", None)


@settings(max_examples=150, deadline=None)
@given(
    reasons=st.lists(st.text(), min_size=1, max_size=6),
    times=st.lists(st.floats(), min_size=1, max_size=6),
)
def test_any_text_and_any_float_are_written_as_the_statements_would(
    reasons: list[str], times: list[float]
) -> None:
    """Texts with quotes, escapes, NULs or any Unicode, floats to the last bit, NaN and the
    infinities: the folded batch gives the rows the statements give, or falls back to them."""
    batch = [s for i, at in enumerate(times) for s in _new_bid(f"b{i}", at)]
    batch += [
        s
        for i, reason in enumerate(reasons)
        for s in _status(f"b{i % len(times)}", "lost", times[i % len(times)], reason=reason)
    ]
    folded, plain, folded_skipped, plain_skipped = _both_ways([], batch)
    assert folded == plain
    assert folded_skipped == plain_skipped


def test_a_folded_batch_is_a_few_statements_whatever_its_size() -> None:
    """The worker's calls into SQLite (each one takes the GIL back) do not grow with the batch:
    new bids, changes to earlier bids and history are one statement each."""
    earlier = [s for i in range(400) for s in _new_bid(f"old{i:03}", float(i))]
    with tempfile.TemporaryDirectory() as folder:
        conn = open_database(Path(folder, "state.db"))
        try:
            write_batch(conn, earlier, fold(earlier))
            counts = []
            for size in (1, 10, 400):
                batch = [s for i in range(size) for s in _new_bid(f"new{size}-{i:03}", 1e3 + i)]
                batch += [s for i in range(size) for s in _status(f"old{i:03}", "won", 2e3 + i)]
                statements: list[str] = []
                conn.set_trace_callback(statements.append)
                assert write_batch(conn, batch, fold(batch)) == []
                conn.set_trace_callback(None)
                counts.append(len(statements))
        finally:
            conn.close()
    assert counts == [5, 5, 5]  # BEGIN, bids, updates, history, COMMIT
    # The rows go as JSON text: SQLite 3.45 and later would read a blob as binary JSONB.
    assert not any("x'" in statement for statement in statements)
