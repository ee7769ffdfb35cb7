"""Signals against a real `searcherd run` process.

Each test starts `python -m searcherd run -c <offline config>` (no venue, no health listener),
waits for the `daemon_started` JSON line, sends real signals and waits for the lines that must
follow. Nothing sleeps: every wait is for a line, with a deadline.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Child

_SLOW_DRAIN = Path(__file__).with_name("_slow_drain_daemon.py")


def _start(spawn: Callable[..., Child], config: Path, *, script: str = "-m searcherd") -> Child:
    """Start the daemon on `config` and wait until it says it started."""
    daemon = spawn(*script.split(), "run", "-c", str(config))
    started = daemon.wait_for_event("daemon_started")
    assert started["config"] == str(config)
    return daemon


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_gracefully(
    spawn: Callable[..., Child], offline_config: Path, signum: signal.Signals
) -> None:
    """SIGTERM or SIGINT: stop in order, log `daemon_stopped`, exit 0, no traceback."""
    daemon = _start(spawn, offline_config)
    daemon.send_signal(signum)
    received = daemon.wait_for_event("signal_received")
    assert (received["signal"], received["action"]) == (signum.name, "stop")
    stopped = daemon.wait_for_event("daemon_stopped")
    assert stopped["exit_code"] == 0
    assert daemon.wait() == 0
    assert daemon.events()[-3:] == ["signal_received", "daemon_stopping", "daemon_stopped"]
    assert "Traceback" not in daemon.stderr()
    assert "KeyboardInterrupt" not in daemon.stderr()


def test_sighup_with_a_good_config_reloads_and_keeps_running(
    spawn: Callable[..., Child], write_config: Callable[..., Path]
) -> None:
    """SIGHUP after a valid edit: `reload_done`, still serving, and the new config is in force."""
    config = write_config(daemon={"shutdown_grace": 1.5})
    daemon = _start(spawn, config)
    write_config(daemon={"shutdown_grace": 2.5})
    daemon.send_signal(signal.SIGHUP)
    assert daemon.wait_for_event("signal_received")["action"] == "reload"
    daemon.wait_for_event("reload_done")
    # Still alive and listening: a second reload is answered too.
    daemon.send_signal(signal.SIGHUP)
    daemon.wait_for_event("reload_done")
    assert daemon.proc.poll() is None
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait_for_event("daemon_stopping")["grace"] == 2.5  # the reloaded value
    assert daemon.wait() == 0
    assert daemon.events()[-1] == "daemon_stopped"


def test_sighup_with_a_broken_config_keeps_the_old_one(
    spawn: Callable[..., Child], write_config: Callable[..., Path]
) -> None:
    """SIGHUP after a bad edit: `reload_failed` names the problems; the old config stays."""
    config = write_config(daemon={"shutdown_grace": 1.5})
    daemon = _start(spawn, config)
    config.write_text(
        config.read_text(encoding="utf-8") + '\n[log]\nlevel = "loud"\n', encoding="utf-8"
    )
    daemon.send_signal(signal.SIGHUP)
    failed = daemon.wait_for_event("reload_failed")
    assert failed["level"] == "error"
    assert failed["problems"] == ["log.level: must be one of 'debug', 'info', 'warning', 'error'"]
    assert daemon.proc.poll() is None
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait_for_event("daemon_stopping")["grace"] == 1.5  # the old value
    assert daemon.wait() == 0
    assert "reload_done" not in daemon.events()


def test_missing_config_on_sighup_keeps_running(
    spawn: Callable[..., Child], offline_config: Path
) -> None:
    """A config file deleted before SIGHUP is a failed reload, not a crash."""
    daemon = _start(spawn, offline_config)
    offline_config.unlink()
    daemon.send_signal(signal.SIGHUP)
    assert "file not found" in daemon.wait_for_event("reload_failed")["problems"][0]
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_second_sigterm_during_the_grace_period_stops_at_once(
    spawn: Callable[..., Child], write_config: Callable[..., Path]
) -> None:
    """A second SIGTERM while in-flight work drains forces the stop (exit 1) without waiting.

    The daemon here holds its whole 60 s grace period (see `_slow_drain_daemon.py`); the test
    fails if it waits for it.
    """
    config = write_config(daemon={"shutdown_grace": 60.0})
    daemon = _start(spawn, config, script=str(_SLOW_DRAIN))
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait_for_event("daemon_stopping")["grace"] == 60.0
    forced_at = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    received = daemon.wait_for_event("signal_received")
    assert received["action"] == "force_stop"
    daemon.wait_for_event("daemon_force_stop")
    assert daemon.wait_for_event("daemon_stopped")["exit_code"] == 1
    assert daemon.wait(timeout=10.0) == 1
    assert time.monotonic() - forced_at < 10.0
    assert "Traceback" not in daemon.stderr()
