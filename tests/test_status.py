"""Tests for searcherd.status: `searcherd status` against a real health listener."""

from __future__ import annotations

import io
import socket
from typing import Any

import orjson
import trio

from searcherd.config import Config, parse_config
from searcherd.health import serve_health
from searcherd.metrics import Metrics
from searcherd.status import (
    EXIT_HEALTHY,
    EXIT_UNHEALTHY,
    EXIT_UNREACHABLE,
    format_summary,
    health_url,
    run_status,
)

_SNAPSHOT: dict[str, Any] = {
    "healthy": True,
    "venues": {
        "express_relay": {
            "connected": True,
            "healthy": True,
            "last_message_age": 0.25,
            "reconnects": 2,
            "bids_in_flight_by_status": {"submitted": 3, "pending": 1},
            "last_error": None,
        },
    },
    "strategies": {
        "fixed_margin": {
            "state": "running",
            "quarantined": False,
            "errors": 1,
            "timeouts": 0,
            "drops": 4,
        },
    },
    "last_error": None,
    "version": "0.1.0",
}


def _config(listen: str) -> Config:
    return parse_config(f'[health]\nlisten = "{listen}"\n')


async def _status(config: Config, *, as_json: bool = False) -> tuple[int, str, str]:
    """run_status in a worker thread (it is synchronous), returning (code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(10):
        code = await trio.to_thread.run_sync(
            lambda: run_status(config, as_json=as_json, out=out, err=err)
        )
    return code, out.getvalue(), err.getvalue()


async def _serve(nursery: trio.Nursery, snapshot: dict[str, Any]) -> Config:
    port = await nursery.start(serve_health, "127.0.0.1:0", lambda: snapshot, Metrics())
    return _config(f"127.0.0.1:{port}")


async def test_healthy_daemon_exits_0_with_a_human_summary(nursery: trio.Nursery) -> None:
    """A 200 answer prints the summary and exits 0."""
    code, out, err = await _status(await _serve(nursery, _SNAPSHOT))
    assert code == EXIT_HEALTHY
    assert out.startswith("searcherd 0.1.0: healthy\n")
    assert "express_relay" in out
    assert "in flight: pending=1 submitted=3" in out
    assert "fixed_margin" in out
    assert err == ""


async def test_unhealthy_daemon_exits_3_and_json_is_the_snapshot(nursery: trio.Nursery) -> None:
    """A 503 answer exits 3; --json prints the snapshot as received."""
    snapshot = {**_SNAPSHOT, "healthy": False, "last_error": "express_relay: feed stale"}
    code, out, _ = await _status(await _serve(nursery, snapshot), as_json=True)
    assert code == EXIT_UNHEALTHY
    assert orjson.loads(out) == snapshot


async def test_no_daemon_exits_4_with_a_clear_message() -> None:
    """Nobody listening: exit 4 and a one-line hint on stderr, nothing on stdout."""
    with socket.socket() as probe:  # a port that was free a moment ago and is closed now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = await _status(_config(f"127.0.0.1:{port}"))
    assert code == EXIT_UNREACHABLE
    assert out == ""
    assert f"not reachable at http://127.0.0.1:{port}/healthz" in err
    assert "is the daemon running?" in err


async def test_listener_off_exits_4_and_says_so() -> None:
    """An empty `[health] listen` is exit 4 with a message naming the setting."""
    code, _, err = await _status(_config(""))
    assert code == EXIT_UNREACHABLE
    assert "[health] listen is empty" in err


def test_health_url_reaches_wildcards_through_loopback() -> None:
    """0.0.0.0 and :: are queried on loopback; IPv6 hosts are bracketed."""
    assert health_url("0.0.0.0:9464") == "http://127.0.0.1:9464/healthz"
    assert health_url("[::]:9464") == "http://[::1]:9464/healthz"
    assert health_url("10.0.0.5:80") == "http://10.0.0.5:80/healthz"


def test_format_summary_flags_trouble_in_capitals() -> None:
    """Unhealthy state, a disconnected venue and a quarantined strategy stand out."""
    snapshot = {
        "healthy": False,
        "venues": {"fusion_plus": {"connected": False, "last_message_age": None}},
        "strategies": {"bad": {"state": "stopped", "quarantined": True}},
        "last_error": "fusion_plus:\nhandshake failed",
    }
    text = format_summary(snapshot)
    assert text.splitlines()[0] == "searcherd ?: UNHEALTHY"
    assert "DISCONNECTED" in text
    assert "no messages" in text
    assert "stopped (QUARANTINED)" in text
    assert text.splitlines()[-1] == "last error: fusion_plus: handshake failed"
