"""The daemon's task tree: the only module that knows how the pieces are wired.

```
trio.run(Daemon.run)
└── root nursery
    ├── signal watcher      SIGTERM/SIGINT -> graceful stop (twice -> now); SIGHUP -> reload
    ├── state store         SQLite writer, flushed last
    └── service scope       cancelled after the grace period
        └── service nursery
            ├── simulators          (--simulate only) Express Relay and Fusion+ on loopback
            ├── venues              per venue: connection, submitter, reconciler
            ├── evaluator           one task per strategy
            ├── health + metrics    /healthz, /metrics
            ├── systemd notifier    READY once every venue is up; STATUS; WATCHDOG while fresh
            └── garbage collector   young collections in idle moments (searcherd._gc)
```

Shutdown order matters and is the reason for the two scopes: intake stops first (strategies get
`on_stop`, the submitters take no new bids), in-flight bids get `daemon.shutdown_grace` seconds
to be answered, the services are cancelled, and only then does the store (outside the service
scope) flush its last batch and close.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import structlog
import trio

from searcherd import __version__
from searcherd._bid_summary import log_bid_summaries
from searcherd._gc import collect_between_frames
from searcherd._sdnotify import Notifier, format_status, run_watchdog
from searcherd._signals import watch_signals
from searcherd.config import Config, ConfigError, load_config
from searcherd.evaluator import Evaluator
from searcherd.express_relay.venue import ExpressRelayVenue
from searcherd.fusion_plus.venue import FusionPlusVenue
from searcherd.health import HealthError, serve_health
from searcherd.metrics import Metrics
from searcherd.plugins import StrategyLoadError, load_enabled
from searcherd.risk import RiskGate
from searcherd.simulate import start_simulators
from searcherd.store import StateStore, StoreError
from searcherd.svm.keys import KeyLoadError, SearcherKey, load_searcher_key, throwaway_keypair

if TYPE_CHECKING:
    from pathlib import Path

    from searcherd.bids import BidIntent

__all__ = ["Daemon", "RunOptions"]

_log = structlog.get_logger(__name__)

_STATUS_EVERY = 10.0  # seconds between STATUS= updates to systemd


@attrs.frozen
class RunOptions:
    """What `searcherd run` was asked on the command line."""

    config_path: Path
    dry_run: bool = False
    simulate: bool = False


class _Venue(Protocol):
    """What the daemon needs of a venue (Express Relay and Fusion+ both provide it)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    async def wait_ready(self) -> None: ...
    def submit(self, strategy: str, bid: Any, received_at: float) -> None: ...
    async def drain(self) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...
    def is_fresh(self) -> bool: ...


class _StartupError(Exception):
    """The daemon cannot start; the message says why (printed, no traceback)."""


def _with_resolved_paths(config: Config) -> Config:
    kill_file = config.limits.kill_file
    if kill_file:
        limits = attrs.evolve(config.limits, kill_file=str(config.resolve_path(kill_file)))
        return attrs.evolve(config, limits=limits)
    return config


class Daemon:
    """One run of the daemon, from loaded config to exit code."""

    def __init__(self, options: RunOptions, config: Config) -> None:
        self.options = options
        self.config = _with_resolved_paths(config)
        self.metrics = Metrics()
        self.risk = RiskGate(self.config.limits)
        self.notifier = Notifier()
        self.store = StateStore(
            self.config.resolve_path(self.config.state.path),
            commit_interval=self.config.state.commit_interval,
            batch_max=self.config.state.batch_max,
        )
        self.evaluator = Evaluator(self.config.evaluator, self.metrics, sink=self)
        self.venues: dict[str, _Venue] = {}
        self._stop = trio.Event()
        self._root: trio.CancelScope | None = None
        self._last_error: str | None = None
        self._started_at = 0.0
        windows = [
            venue.liveness_window
            for venue in (self.config.express_relay, self.config.fusion_plus)
            if venue.enabled
        ]
        self._first_window = min(windows, default=0.0)
        # Fixed at start: the venues' submitters are built with it (a reload cannot change it).
        self._dry_run = options.dry_run or self.config.daemon.dry_run
        self.exit_code = 0

    @property
    def dry_run(self) -> bool:
        """Dry run from the command line or the config file."""
        return self._dry_run

    # -- the task tree -----------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped; return the process exit code."""
        self._started_at = trio.current_time()
        with trio.CancelScope() as root:
            self._root = root
            async with trio.open_nursery() as nursery:
                # The signal handlers go in first: a SIGTERM during startup must stop us
                # cleanly, and a SIGHUP right after READY=1 must reload, not kill.
                await nursery.start(watch_signals, self._request_stop, self._force_stop,
                                    self.reload)  # fmt: skip
                try:
                    await nursery.start(self.store.run)
                    with trio.CancelScope() as services:
                        async with trio.open_nursery() as service_nursery:
                            await self._start_services(service_nursery)
                            await self._stop.wait()
                            await self._shut_down()
                            services.cancel()
                except* (_StartupError, StoreError, HealthError) as group:
                    self._fail(str(group.exceptions[0]))
                # Services are gone; nothing enqueues any more. Cancelling the root nursery
                # makes the store flush under its shield and close.
                nursery.cancel_scope.cancel()
        _log.info("daemon_stopped", exit_code=self.exit_code)
        return self.exit_code

    def _fail(self, message: str) -> None:
        _log.error("daemon_cannot_start", error=message)
        print(f"searcherd: {message}", file=sys.stderr)
        self.exit_code = 1

    async def _start_services(self, nursery: trio.Nursery) -> None:
        config = self.config
        if self.options.simulate:
            config = await start_simulators(nursery, config)
            self.config = config
        signer = self._signer(config)
        if config.express_relay.enabled:
            self.venues["express_relay"] = ExpressRelayVenue(
                config.express_relay, store=self.store, metrics=self.metrics, risk=self.risk,
                sink=self.evaluator, dry_run=self.dry_run, signer=signer,
                max_opportunity_age=config.evaluator.max_opportunity_age,
            )  # fmt: skip
        if config.fusion_plus.enabled:
            self.venues["fusion_plus"] = FusionPlusVenue(
                config.fusion_plus, store=self.store, metrics=self.metrics, risk=self.risk,
                sink=self.evaluator, dry_run=self.dry_run,
            )  # fmt: skip
        try:
            strategies = load_enabled(config, **self._views())
        except StrategyLoadError as exc:
            raise _StartupError(
                "an enabled strategy cannot load:\n  " + "\n  ".join(exc.problems)
            ) from None
        # Strategies run before the venues connect: their inboxes must exist when the first
        # opportunity arrives.
        await nursery.start(self.evaluator.run, strategies)
        for venue in self.venues.values():
            await nursery.start(venue.run)
        await nursery.start(serve_health, config.health.listen, self.snapshot, self.metrics)
        await nursery.start(run_watchdog, self.notifier, self.is_fresh)
        nursery.start_soon(self._announce_ready)
        nursery.start_soon(log_bid_summaries, self.metrics, config.log.summary_interval)
        # Last: what is built by now lives as long as the process, and the collector freezes
        # it on starting (searcherd._gc).
        await nursery.start(collect_between_frames)
        _log.info(
            "daemon_started", config=str(self.options.config_path), version=__version__,
            dry_run=self.dry_run, simulate=self.options.simulate, state=str(self.store.path),
            venues=list(self.venues), strategies=strategies.names,
        )  # fmt: skip

    def _signer(self, config: Config) -> SearcherKey | None:
        if not config.express_relay.enabled:
            return None
        ref = config.express_relay.signing_key
        if ref is None:  # throwaway_keypair() logs the throwaway key's public half
            return throwaway_keypair()
        try:
            return load_searcher_key(str(ref))
        except KeyLoadError as exc:
            raise _StartupError(f"express_relay.signing_key: {exc}") from None

    def _views(self) -> dict[str, Any]:
        er = self.venues.get("express_relay")
        fp = self.venues.get("fusion_plus")
        return {
            "express_relay": getattr(er, "view", None),
            "fusion_plus": getattr(fp, "view", None),
        }

    async def _announce_ready(self) -> None:
        """READY=1 once every venue is connected and set up, then STATUS= every few seconds."""
        for venue in self.venues.values():
            await venue.wait_ready()
        self.notifier.ready(format_status(self.snapshot()))
        _log.info("daemon_ready", venues=list(self.venues))
        while True:
            await trio.sleep(_STATUS_EVERY)
            self.notifier.status(format_status(self.snapshot()))

    async def _shut_down(self) -> None:
        """Stop intake, then give in-flight bids the grace period to be answered."""
        self.notifier.stopping()
        _log.info("daemon_stopping", grace=self.config.daemon.shutdown_grace)
        self.evaluator.stop()
        with trio.move_on_after(self.config.daemon.shutdown_grace) as grace:
            async with trio.open_nursery() as nursery:
                for venue in self.venues.values():
                    nursery.start_soon(venue.drain)
        if grace.cancelled_caught:
            _log.warning("shutdown_grace_expired", in_flight=self.risk.in_flight())

    # -- callbacks -------------------------------------------------------------------------

    def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
        """Route a strategy's bid intent to its venue's submitter (the evaluator's sink)."""
        venue = self.venues.get(bid.venue)
        if venue is None:
            self.metrics.drops.labels(bid.venue, strategy, "venue_disabled").inc()
            _log.warning("bid_for_disabled_venue", strategy=strategy, venue=bid.venue)
            return
        venue.submit(strategy, bid, received_at)

    def snapshot(self) -> dict[str, Any]:
        """The /healthz document: healthy only when every venue is set up and no strategy is
        quarantined."""
        venues = {name: venue.snapshot() for name, venue in self.venues.items()}
        strategies = self.evaluator.status()
        errors = [v.get("last_error") for v in venues.values() if v.get("last_error")]
        healthy = all(v.get("healthy") for v in venues.values()) and not any(
            s["quarantined"] for s in strategies.values()
        )
        return {
            "healthy": healthy,
            "version": __version__,
            "dry_run": self.dry_run,
            "venues": venues,
            "strategies": strategies,
            "state": {"pending_rows": self.store.pending, "last_error": self.store.last_error},
            "last_error": self.store.last_error or (errors[0] if errors else self._last_error),
        }

    def is_fresh(self) -> bool:
        """Every enabled feed has received data within its liveness window (watchdog).

        During the first liveness window after start a feed still connecting counts as fresh:
        systemd must not restart a daemon that has not had the chance to connect yet.
        """
        if trio.current_time() - self._started_at < self._first_window:
            return True
        return all(venue.is_fresh() for venue in self.venues.values())

    def _request_stop(self) -> None:
        self._stop.set()

    def _force_stop(self) -> None:
        _log.warning("daemon_force_stop")
        self.exit_code = 1
        if self._root is not None:
            self._root.cancel()

    async def reload(self) -> None:
        """Read the config and the strategies again; apply them only if all of it is valid.

        Venue settings (URLs, keys, chains) are read at start: a change there is logged as
        needing a restart, and the running venues keep their settings.
        """
        if self._stop.is_set() or not self.evaluator.running:
            # Starting up or stopping: there is no running set to replace.
            _log.warning("reload_skipped", reason="the daemon is starting or stopping")
            return
        self.notifier.reloading()
        try:
            await self._reload()
        except Exception:
            # A reload must never take the daemon down: keep what runs, say why.
            self._last_error = "reload failed: internal error"
            _log.exception("reload_failed", kept="previous config and strategies")
            self.notifier.ready("reload failed; previous config kept")

    async def _reload(self) -> None:
        try:
            new = _with_resolved_paths(load_config(self.options.config_path))
        except ConfigError as exc:
            self._last_error = "reload failed: invalid config"
            _log.error("reload_failed", problems=exc.problems, kept="previous config")
            self.notifier.ready("reload failed: invalid config; previous config kept")
            return
        if self.options.simulate:  # keep the simulators' endpoints
            new = attrs.evolve(new, express_relay=self.config.express_relay,
                               fusion_plus=self.config.fusion_plus)  # fmt: skip
        if not await self.evaluator.reload(new, **self._views()):
            self._last_error = "reload failed: strategies"
            self.notifier.ready("reload failed: strategies; previous set kept")
            _log.error("reload_failed", kept="previous config and strategies")
            return
        # Loggers are cached on first use (the hot path must not rebuild them per call), so
        # [log] changes, like the venues' settings, take effect at the next start.
        for table in ("express_relay", "fusion_plus", "state", "health", "log", "evaluator"):
            if getattr(new, table) != getattr(self.config, table):
                _log.warning("reload_needs_restart", table=table)
        if new.daemon.dry_run != self.config.daemon.dry_run:
            _log.warning("reload_needs_restart", table="daemon", key="dry_run")
        self.risk.limits = new.limits
        self.config = new
        self._last_error = None
        self.notifier.ready(format_status(self.snapshot()))
        _log.info("reload_done", strategies=list(self.evaluator.status()))
