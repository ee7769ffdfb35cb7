"""Tests for searcherd._sdnotify: the datagram protocol, the watchdog task, the STATUS line."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
from structlog.testing import capture_logs

from searcherd._sdnotify import Notifier, format_status, run_watchdog
from searcherd.config import DaemonConfig

if TYPE_CHECKING:
    from collections.abc import Iterator


class _Receiver:
    """The systemd side: a bound AF_UNIX datagram socket that collects notifications."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def drain(self) -> list[list[str]]:
        """Every datagram received so far, each split into its KEY=VALUE lines."""
        out: list[list[str]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            out.append(data.decode().split("\n"))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[_Receiver]:
    """A notify socket bound to a path in tmp_path."""
    rx = _Receiver(str(tmp_path / "notify"))
    yield rx
    rx.sock.close()


def _env(receiver: _Receiver, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(receiver.sock.getsockname()), **extra}


def test_everything_is_a_noop_without_notify_socket() -> None:
    """With $NOTIFY_SOCKET unset nothing is sent, nothing raises, and there is no watchdog."""
    notifier = Notifier({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready("running")
    assert not notifier.status("x")
    assert not notifier.reloading()
    assert not notifier.stopping()
    assert not notifier.watchdog()


def test_ready_sends_one_datagram_with_status(receiver: _Receiver) -> None:
    """ready(status) is a single datagram READY=1 + STATUS= to a path socket."""
    notifier = Notifier(_env(receiver))
    assert notifier.enabled
    assert notifier.ready("running")
    assert receiver.drain() == [["READY=1", "STATUS=running"]]


def test_status_is_kept_on_one_line(receiver: _Receiver) -> None:
    """A newline in the status text cannot smuggle in another KEY=VALUE line."""
    Notifier(_env(receiver)).status("venue down\nREADY=1")
    assert receiver.drain() == [["STATUS=venue down READY=1"]]


def test_abstract_namespace_socket() -> None:
    """An `@name` address reaches a socket in the Linux abstract namespace."""
    name = f"searcherd-test-{os.getpid()}-{time.monotonic_ns()}"
    rx = _Receiver(b"\0" + name.encode())
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert rx.drain() == [["WATCHDOG=1"]]
    finally:
        rx.sock.close()


def test_reloading_carries_monotonic_usec(receiver: _Receiver) -> None:
    """reloading() sends RELOADING=1 and the CLOCK_MONOTONIC time in microseconds."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier(_env(receiver)).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [[reloading, usec]] = receiver.drain()
    assert reloading == "RELOADING=1"
    key, _, value = usec.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_stopping_sends_stopping_and_status(receiver: _Receiver) -> None:
    """stopping() sends STOPPING=1 with a STATUS line."""
    Notifier(_env(receiver)).stopping()
    assert receiver.drain() == [["STOPPING=1", "STATUS=stopping"]]


def test_send_failure_is_logged_not_raised(tmp_path: Path) -> None:
    """A socket path nobody listens on makes notify() return False and log, not raise."""
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with capture_logs() as logs:
        assert not notifier.ready("running")
    assert [e["event"] for e in logs] == ["sd_notify_failed"]


def test_unsupported_address_disables_notifications() -> None:
    """A non-AF_UNIX address (vsock:...) is refused with a log line, not a crash."""
    with capture_logs() as logs:
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert logs[0]["event"] == "sd_notify_unsupported_socket"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(
    receiver: _Receiver, extra: dict[str, str], expected: float | None
) -> None:
    """WATCHDOG_USEC/2, only when WATCHDOG_PID is unset or names this process."""
    assert Notifier(_env(receiver, **extra)).watchdog_interval == expected


async def test_watchdog_pings_every_half_period(
    receiver: _Receiver, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """While fresh, WATCHDOG=1 goes out at t=0 and then every WATCHDOG_USEC/2 seconds."""
    notifier = Notifier(_env(receiver, WATCHDOG_USEC="20000000"))
    start = trio.current_time()
    await nursery.start(run_watchdog, notifier, lambda: True)
    counts = []
    for t in (5, 15, 25, 35):
        await trio.sleep_until(start + t)
        counts.append(len(receiver.drain()))
    assert counts == [1, 1, 1, 1]


async def test_watchdog_is_withheld_while_not_fresh_and_resumes(
    receiver: _Receiver, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """No ping while a feed is stale (logged once); pings and a log line return with freshness."""
    fresh = [True]
    notifier = Notifier(_env(receiver, WATCHDOG_USEC="20000000"))
    start = trio.current_time()
    with capture_logs() as logs:
        await nursery.start(run_watchdog, notifier, lambda: fresh[0])
        await trio.sleep_until(start + 5)
        assert len(receiver.drain()) == 1
        fresh[0] = False
        await trio.sleep_until(start + 45)  # ticks at 10, 20, 30 and 40: all withheld
        assert receiver.drain() == []
        fresh[0] = True
        await trio.sleep_until(start + 55)
        assert receiver.drain() == [["WATCHDOG=1"]]
    events = [e["event"] for e in logs]
    assert events.count("watchdog_withheld") == 1
    assert events.count("watchdog_resumed") == 1
    assert events.index("watchdog_withheld") < events.index("watchdog_resumed")


async def test_watchdog_survives_a_failing_freshness_check(
    receiver: _Receiver, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A check that raises counts as not fresh and is logged; the task keeps running."""
    calls = [0]

    def flaky() -> bool:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("bug")
        return True

    notifier = Notifier(_env(receiver, WATCHDOG_USEC="20000000"))
    start = trio.current_time()
    with capture_logs() as logs:
        await nursery.start(run_watchdog, notifier, flaky)
        await trio.sleep_until(start + 5)
        assert receiver.drain() == []
        await trio.sleep_until(start + 15)
        assert receiver.drain() == [["WATCHDOG=1"]]
    assert "watchdog_check_failed" in [e["event"] for e in logs]


async def test_watchdog_task_returns_when_systemd_wants_none(receiver: _Receiver) -> None:
    """Without WATCHDOG_USEC, run_watchdog reports started and returns without sending."""
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_watchdog, Notifier(_env(receiver)), lambda: True)
    assert receiver.drain() == []


def test_format_status_summarises_venues_bids_and_last_error() -> None:
    """Venues up/total with the down ones named, in-flight bids summed, the last error cut."""
    summary = {
        "venues": {
            "express_relay": {"connected": True, "bids_in_flight_by_status": {"submitted": 2}},
            "fusion_plus": {"connected": False, "bids_in_flight_by_status": {"pending": 1}},
        },
        "last_error": "timeout\nwaiting for " + "x" * 200,
    }
    text = format_status(summary)
    assert text.startswith("venues up 1/2 (fusion_plus down) | bids in flight 3 | last error: ")
    assert "\n" not in text
    assert text.endswith("...")
    assert len(text) < 160


def test_format_status_tolerates_an_empty_summary() -> None:
    """An empty or partial summary still gives a line, without raising."""
    assert format_status({}) == "no venues"
    assert format_status({"venues": {"a": "junk"}}) == "venues up 0/1 (a down) | bids in flight 0"


# The unit file in contrib/ is the other half of this protocol; its keys are checked here.

_UNIT = Path(__file__).resolve().parents[1] / "contrib" / "searcherd.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(_UNIT, encoding="utf-8")
    return parser


def _seconds(value: str) -> float:
    """A systemd time span such as `20s`, `1min 30s` or `45`, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60}
    total = 0.0
    for part in value.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(number) * units[part[len(number) :]]
    return total


def test_unit_file_is_type_notify_with_reload_watchdog_and_restart() -> None:
    """The service section has the keys the daemon's notify and reload handling rely on."""
    service = _unit()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecStart"].endswith(" run --config /etc/searcherd/searcher.toml")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert _seconds(service["WatchdogSec"]) == 30
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "searcherd"
    assert service["ConfigurationDirectory"] == "searcherd"
    assert service["User"] == "searcherd"


def test_unit_stop_timeout_exceeds_the_default_shutdown_grace() -> None:
    """TimeoutStopSec leaves room for the grace period plus closing the venue connections."""
    grace = DaemonConfig().shutdown_grace
    assert _seconds(_unit()["Service"]["TimeoutStopSec"]) >= grace + 10


def test_unit_loads_api_keys_and_signing_key_as_credentials() -> None:
    """Every secret arrives through LoadCredential=, never through the environment."""
    lines = _UNIT.read_text(encoding="utf-8").splitlines()
    names = {
        line.partition("=")[2].partition(":")[0]
        for line in lines
        if line.startswith("LoadCredential=")
    }
    assert names == {"express-relay-api-key", "fusion-plus-api-key", "signing-key"}
    assert not any(line.startswith("Environment=") for line in lines)


def test_unit_keeps_the_hardening_set() -> None:
    """The sandboxing keys are present, and AF_UNIX (the notify socket) stays allowed."""
    service = _unit()["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "SystemCallArchitectures": "native",
        "UMask": "0077",
    }.items():
        assert service[key] == value, key
    assert "AF_UNIX" in service["RestrictAddressFamilies"].split()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (with ExecStart pointed at a real binary)."""
    text = _UNIT.read_text(encoding="utf-8")
    unit = tmp_path / "searcherd.service"
    unit.write_text(text.replace("/opt/searcherd/venv/bin/searcherd", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
