"""Tests for searcherd._logging: JSON lines off a TTY, levels, context, tracebacks."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from searcherd._logging import configure_logging


class _TTY(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    """Each output line parsed as JSON (the test fails on a line that is not JSON)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_not_a_tty(log_stream: io.StringIO) -> None:
    """Off a TTY every event is one JSON object per line, with event, level and UTC timestamp."""
    log = structlog.get_logger("t")
    log.info("bid_sent", amount=5, venue="express_relay")
    log.warning("feed_stale")
    first, second = _records(log_stream)
    assert first["event"] == "bid_sent"
    assert first["level"] == "info"
    assert first["amount"] == 5
    assert first["venue"] == "express_relay"
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "feed_stale"
    assert second["level"] == "warning"


@pytest.mark.usefixtures("restore_logging")
def test_auto_format_picks_json_for_a_pipe() -> None:
    """`auto` writes JSON to a stream that is not a terminal."""
    stream = io.StringIO()
    configure_logging("info", "auto", stream, cache=False)
    structlog.get_logger("t").info("hello")
    assert _records(stream)[0]["event"] == "hello"


@pytest.mark.usefixtures("restore_logging")
def test_auto_format_picks_console_on_a_tty() -> None:
    """`auto` on a terminal writes readable lines, not JSON."""
    stream = _TTY()
    configure_logging("info", "auto", stream, cache=False)
    structlog.get_logger("t").info("hello", venue="fusion_plus")
    line = stream.getvalue()
    assert "hello" in line
    assert "fusion_plus" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


@pytest.mark.usefixtures("restore_logging")
def test_json_format_is_json_even_on_a_tty() -> None:
    """An explicit `json` format wins over the terminal check."""
    stream = _TTY()
    configure_logging("info", "json", stream, cache=False)
    structlog.get_logger("t").info("hello")
    assert _records(stream)[0]["event"] == "hello"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["d", "i", "w", "e"]),
        ("info", ["i", "w", "e"]),
        ("warning", ["w", "e"]),
        ("error", ["e"]),
    ],
)
def test_level_filtering(level: str, expected: list[str]) -> None:
    """Events below the configured level are dropped."""
    stream = io.StringIO()
    configure_logging(level, "json", stream, cache=False)
    log = structlog.get_logger("t")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [r["event"] for r in _records(stream)] == expected


def test_bound_contextvars_appear_in_every_line(log_stream: io.StringIO) -> None:
    """Context bound with contextvars (venue, bid_id...) is in each line until unbound."""
    log = structlog.get_logger("t")
    with structlog.contextvars.bound_contextvars(venue="express_relay", chain_id="solana"):
        with structlog.contextvars.bound_contextvars(bid_id="b-1", strategy="fixed"):
            log.info("bid_sent")
        log.info("opportunity_seen")
    log.info("idle")
    sent, seen, idle = _records(log_stream)
    assert sent["venue"] == "express_relay"
    assert sent["chain_id"] == "solana"
    assert sent["bid_id"] == "b-1"
    assert sent["strategy"] == "fixed"
    assert seen["venue"] == "express_relay"
    assert "bid_id" not in seen
    assert "venue" not in idle


def test_integers_of_any_size_are_logged_exactly(log_stream: io.StringIO) -> None:
    """Token amounts past 64 bits are written as exact JSON numbers, not an exception."""
    amount = 10**30 + 7
    structlog.get_logger("t").info("bid_built", amount=amount, small=1)
    (record,) = _records(log_stream)
    assert record["amount"] == amount
    assert record["small"] == 1


def test_non_json_values_are_written_as_strings(log_stream: io.StringIO, tmp_path: Path) -> None:
    """Paths and other objects become their str(), never a failed log call."""
    structlog.get_logger("t").info("opened", path=tmp_path, kind=set)
    (record,) = _records(log_stream)
    assert record["path"] == str(tmp_path)
    assert record["kind"] == str(set)


def test_exception_is_structured_without_locals(log_stream: io.StringIO) -> None:
    """A logged exception carries its type, message and frames, but no local variables."""

    def fail() -> None:
        signing_key = "do-not-print-me"
        raise ValueError(f"bad input ({len(signing_key)})")

    try:
        fail()
    except ValueError:
        structlog.get_logger("t").exception("handler_failed")
    (record,) = _records(log_stream)
    assert record["event"] == "handler_failed"
    assert record["level"] == "error"
    (exc,) = record["exception"]
    assert exc["exc_type"] == "ValueError"
    assert exc["exc_value"] == "bad input (15)"
    assert [frame["name"] for frame in exc["frames"]][-1] == "fail"
    assert all("locals" not in frame for frame in exc["frames"])
    assert "do-not-print-me" not in log_stream.getvalue()


def test_stdlib_loggers_share_the_format_at_warning_and_above(log_stream: io.StringIO) -> None:
    """Libraries' stdlib logs come out as JSON lines too; their info chatter is dropped."""
    lib = logging.getLogger("trio_websocket.test")
    lib.info("chatter")
    lib.warning("connection reset %s", "x")
    try:
        Path("/nonexistent-searcherd-test/x").read_text(encoding="utf-8")
    except OSError:
        lib.exception("read failed")
    warning, error = _records(log_stream)
    assert warning["event"] == "connection reset x"
    assert warning["level"] == "warning"
    assert error["event"] == "read failed"
    assert error["exception"][0]["exc_type"] == "FileNotFoundError"


@pytest.mark.usefixtures("restore_logging")
def test_real_file_gets_json_bytes(tmp_path: Path) -> None:
    """A real file (with a binary buffer) receives the same JSON lines, written as bytes."""
    path = tmp_path / "log.jsonl"
    with path.open("w", encoding="utf-8") as out:
        configure_logging("info", "json", out, cache=False)
        structlog.get_logger("t").info("first", amount=2**70)
        structlog.get_logger("t").info("second")
        structlog.reset_defaults()
    records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [r["event"] for r in records] == ["first", "second"]
    assert records[0]["amount"] == 2**70
