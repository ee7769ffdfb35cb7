"""The daemon's task tree: the only module that knows how the pieces are wired.

```
trio.run(Daemon.run)
└── root nursery
    ├── signal watcher      SIGTERM/SIGINT -> graceful stop (twice -> now); SIGHUP -> reload
    ├── state store         SQLite writer, flushed last
    └── service scope       cancelled after the grace period
        └── service nursery (venues, evaluator, health, notifier)
```

Shutdown order matters and is the reason for the two scopes: intake stops first, in-flight bids
get `daemon.shutdown_grace` seconds to settle, the services are cancelled, and only then does the
store (outside the service scope) flush its last batch and close.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from searcherd._logging import configure_logging
from searcherd._signals import watch_signals
from searcherd.config import Config, ConfigError, load_config
from searcherd.store import StateStore, StoreError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Daemon", "RunOptions"]

_log = structlog.get_logger(__name__)


@attrs.frozen
class RunOptions:
    """What `searcherd run` was asked on the command line."""

    config_path: Path
    dry_run: bool = False
    simulate: bool = False


class Daemon:
    """One run of the daemon, from loaded config to exit code."""

    def __init__(self, options: RunOptions, config: Config) -> None:
        self.options = options
        self.config = config
        self.store = StateStore(
            config.resolve_path(config.state.path),
            commit_interval=config.state.commit_interval,
            batch_max=config.state.batch_max,
        )
        self._stop = trio.Event()
        self._root: trio.CancelScope | None = None
        self.exit_code = 0

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        with trio.CancelScope() as root:
            self._root = root
            async with trio.open_nursery() as nursery:
                await nursery.start(watch_signals, self._stop.set, self._force_stop, self.reload)
                try:
                    await nursery.start(self.store.run)
                except StoreError as exc:
                    _log.error("state_unavailable", error=str(exc))
                    self.exit_code = 1
                    nursery.cancel_scope.cancel()
                    return self.exit_code
                _log.info(
                    "daemon_started",
                    config=str(self.options.config_path),
                    dry_run=self.dry_run,
                    simulate=self.options.simulate,
                    state=str(self.store.path),
                )
                with trio.CancelScope() as services:
                    async with trio.open_nursery() as service_nursery:
                        await self._start_services(service_nursery)
                        await self._stop.wait()
                        _log.info("daemon_stopping", grace=self.config.daemon.shutdown_grace)
                        await self._drain()
                        services.cancel()
                # Services are gone; now nothing enqueues any more. Cancelling the root
                # nursery makes the store flush under its shield and close.
                nursery.cancel_scope.cancel()
        _log.info("daemon_stopped", exit_code=self.exit_code)
        return self.exit_code

    @property
    def dry_run(self) -> bool:
        """Dry run from the command line or the config file."""
        return self.options.dry_run or self.config.daemon.dry_run

    async def _start_services(self, nursery: trio.Nursery) -> None:
        """Start the venues, the evaluator and the health server."""

    async def _drain(self) -> None:
        """Stop intake and give in-flight work the grace period to settle."""
        with trio.move_on_after(self.config.daemon.shutdown_grace):
            await self.store.flush()

    def _force_stop(self) -> None:
        _log.warning("daemon_force_stop")
        self.exit_code = 1
        if self._root is not None:
            self._root.cancel()

    async def reload(self) -> None:
        """Read the config again; apply it only if it is valid as a whole."""
        try:
            new = load_config(self.options.config_path)
        except ConfigError as exc:
            _log.error("reload_failed", problems=exc.problems, kept="previous config")
            return
        configure_logging(new.log.level, new.log.format)
        self.config = new
        _log.info("reload_done")
