"""Tests for searcherd.health: /healthz and /metrics served by hypercorn on 127.0.0.1:0."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import orjson
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from searcherd.health import HealthError, encode_snapshot, parse_listen, serve_health
from searcherd.metrics import Metrics


class _Snapshot:
    """A snapshot source the test can flip and break."""

    def __init__(self) -> None:
        self.value: dict[str, Any] = {"healthy": True, "venues": {}, "version": "0.1.0"}
        self.broken = False

    def __call__(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("snapshot bug")
        return self.value


async def _start(nursery: trio.Nursery, snapshot: _Snapshot, metrics: Metrics) -> str:
    port = await nursery.start(serve_health, "127.0.0.1:0", snapshot, metrics)
    assert isinstance(port, int)
    assert port > 0
    return f"http://127.0.0.1:{port}"


def _client() -> httpx.AsyncClient:
    # trust_env=False: a proxy from the environment must not intercept loopback.
    return httpx.AsyncClient(trust_env=False, timeout=5)


async def test_healthz_is_200_when_healthy_then_503_when_not(nursery: trio.Nursery) -> None:
    """/healthz returns the snapshot as JSON, 200 while healthy, 503 after it flips."""
    snapshot = _Snapshot()
    base = await _start(nursery, snapshot, Metrics())
    with trio.fail_after(10):
        async with _client() as client:
            ok = await client.get(f"{base}/healthz")
            snapshot.value = {**snapshot.value, "healthy": False, "last_error": "feed stale"}
            bad = await client.get(f"{base}/healthz")
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/json"
    assert ok.json() == {"healthy": True, "venues": {}, "version": "0.1.0"}
    assert bad.status_code == 503
    assert bad.json()["last_error"] == "feed stale"


async def test_metrics_exposes_incremented_counters(nursery: trio.Nursery) -> None:
    """/metrics is Prometheus text from the daemon's own registry, with current values."""
    metrics = Metrics()
    metrics.bids_submitted.labels(strategy="fixed_margin", venue="express_relay").inc(3)
    metrics.reconnects.labels(venue="fusion_plus").inc()
    base = await _start(nursery, _Snapshot(), metrics)
    with trio.fail_after(10):
        async with _client() as client:
            response = await client.get(f"{base}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    key = (
        "searcherd_bids_submitted_total",
        (("strategy", "fixed_margin"), ("venue", "express_relay")),
    )
    assert samples[key] == 3.0
    assert samples[("searcherd_reconnects_total", (("venue", "fusion_plus"),))] == 1.0


def test_a_bound_child_is_reused_and_counts_in_the_registry() -> None:
    """`Metrics.child` binds each label set once and counts where `.labels()` would."""
    metrics = Metrics()
    first = metrics.child(metrics.bids_final, "s", "express_relay", "won")
    assert metrics.child(metrics.bids_final, "s", "express_relay", "won") is first
    assert metrics.child(metrics.bids_final, "s", "express_relay", "lost") is not first
    first.inc(2)
    assert metrics.bids_final.labels("s", "express_relay", "won")._value.get() == 2.0


async def test_unknown_path_is_404_and_other_methods_405(nursery: trio.Nursery) -> None:
    """Any other path is 404; POST on a known path is 405 with `Allow: GET`."""
    base = await _start(nursery, _Snapshot(), Metrics())
    with trio.fail_after(10):
        async with _client() as client:
            missing = await client.get(f"{base}/nope")
            post = await client.post(f"{base}/healthz", content=b"{}")
            delete = await client.delete(f"{base}/metrics")
    assert missing.status_code == 404
    assert post.status_code == 405
    assert post.headers["allow"] == "GET"
    assert delete.status_code == 405


async def test_big_integers_survive_as_decimal_strings(nursery: trio.Nursery) -> None:
    """An amount past 64 bits is served exactly, as a string, not rounded or a 500."""
    snapshot = _Snapshot()
    snapshot.value = {"healthy": True, "amount": 2**100, "small": [2**63 - 1, -(2**63)]}
    base = await _start(nursery, snapshot, Metrics())
    with trio.fail_after(10):
        async with _client() as client:
            response = await client.get(f"{base}/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "healthy": True,
        "amount": str(2**100),
        "small": [2**63 - 1, -(2**63)],
    }


def test_encode_snapshot_handles_nested_big_ints_and_tuples() -> None:
    """Big ints deep inside dicts and tuples become strings; booleans stay booleans."""
    data = orjson.loads(encode_snapshot({"a": {"b": (True, -(2**70))}, "healthy": False}))
    assert data == {"a": {"b": [True, str(-(2**70))]}, "healthy": False}


async def test_a_failing_snapshot_is_a_500_and_the_listener_survives(
    nursery: trio.Nursery,
) -> None:
    """snapshot() raising gives a logged 500; the next request is answered normally."""
    snapshot = _Snapshot()
    base = await _start(nursery, snapshot, Metrics())
    snapshot.broken = True
    with trio.fail_after(10), capture_logs() as logs:
        async with _client() as client:
            failed = await client.get(f"{base}/healthz")
            snapshot.broken = False
            ok = await client.get(f"{base}/healthz")
    assert failed.status_code == 500
    assert failed.json() == {"healthy": False, "error": "snapshot failed"}
    assert ok.status_code == 200
    assert "health_snapshot_failed" in [e["event"] for e in logs]


async def test_a_port_in_use_is_a_clear_health_error() -> None:
    """Binding an address already taken raises HealthError naming it, not a traceback group."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        async with trio.open_nursery() as nursery:
            # nursery.start re-raises an error from before started() as itself, ungrouped.
            with pytest.raises(HealthError, match=r"cannot bind: Address already in use"):
                await nursery.start(serve_health, listen, _Snapshot(), Metrics())


@pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:port", ":9464", "127.0.0.1:70000"])
def test_malformed_listen_is_refused(listen: str) -> None:
    """parse_listen refuses anything but host:port, quoting the value."""
    with pytest.raises(HealthError, match="host:port"):
        parse_listen(listen)


def test_parse_listen_accepts_bracketed_ipv6() -> None:
    """`[::1]:9464` is host ::1, port 9464."""
    assert parse_listen("[::1]:9464") == ("::1", 9464)


async def test_empty_listen_means_off() -> None:
    """An empty listen address starts nothing: started(None) and return."""
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            assert await nursery.start(serve_health, "", _Snapshot(), Metrics()) is None


async def test_cancelling_stops_serving_and_frees_the_port() -> None:
    """Cancelling the task closes the listener: the same port can be bound again."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_health, "127.0.0.1:0", _Snapshot(), Metrics())
            nursery.cancel_scope.cancel()
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))
        async with _client() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/healthz")
