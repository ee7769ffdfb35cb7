"""Helper process for test_signals.py: `searcherd` whose drain holds the whole grace period.

Usage: `python _slow_drain_daemon.py run -c CONFIG`. The real daemon with nothing in flight
drains at once; this one behaves as if a bid never settled, so the test can send a second
SIGTERM while the grace period is running.
"""

from __future__ import annotations

import sys

import trio

from searcherd import app, cli


class _SlowDrainDaemon(app.Daemon):
    """A Daemon whose in-flight work never settles within the grace period."""

    async def _shut_down(self) -> None:
        # The real shutdown (STOPPING, `daemon_stopping`, venues drained at once with nothing
        # in flight), then the rest of the grace period as if a bid never settled.
        await super()._shut_down()
        await trio.sleep(self.config.daemon.shutdown_grace)


if __name__ == "__main__":
    # `cmd_run` imports `Daemon` from `searcherd.app` when it runs, so this swap takes effect.
    app.Daemon = _SlowDrainDaemon  # type: ignore[misc]
    sys.exit(cli.main(sys.argv[1:]))
