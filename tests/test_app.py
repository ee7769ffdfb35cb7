"""The daemon's wiring: what a reload does when there is nothing running to replace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from structlog.testing import capture_logs

from searcherd.app import Daemon, RunOptions
from searcherd.config import load_config

if TYPE_CHECKING:
    from pathlib import Path


async def test_a_sighup_before_the_strategies_run_is_skipped_not_fatal(
    offline_config: Path,
) -> None:
    """A reload that arrives while the daemon is still starting (or already stopping) has no
    running set to replace: it is logged and skipped, and nothing raises."""
    daemon = Daemon(RunOptions(offline_config), load_config(offline_config))
    with capture_logs() as logs:
        await daemon.reload()
    assert [e["event"] for e in logs] == ["reload_skipped"]
    assert daemon.exit_code == 0
