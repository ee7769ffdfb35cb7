"""The `searcherd` command line.

Exit codes (stable, documented in the README): 0 success; 1 a problem the user must fix (bad
config, unreadable state, a failed strategy); 2 wrong usage; 3 `status`: the daemon answers but
is not healthy; 4 `status`: the daemon cannot be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog
import trio

from searcherd import __version__
from searcherd._logging import configure_logging
from searcherd.config import Config, ConfigError, load_config
from searcherd.queries import list_bids, list_orders
from searcherd.store import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["console_main", "main"]

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


def _print_error(message: str) -> None:
    print(f"searcherd: {message}", file=sys.stderr)


def _load(path: Path, *, resolve_secrets: bool = True) -> Config | None:
    try:
        return load_config(path, resolve_secrets=resolve_secrets)
    except ConfigError as exc:
        _print_error(exc.render())
        return None


def cmd_init(args: argparse.Namespace) -> int:
    """Write the commented default config."""
    path = Path(args.path)
    if path.exists() and not args.force:
        _print_error(f"{path} exists; use --force to overwrite it")
        return EXIT_PROBLEM
    text = resources.files("searcherd").joinpath("default_config.toml").read_text("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        _print_error(f"cannot write {path}: {exc.strerror}")
        return EXIT_PROBLEM
    print(f"wrote {path}; check it with: searcherd check -c {path}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config, the signing key and every strategy; print every problem at once."""
    from searcherd.plugins import check_strategies
    from searcherd.svm.keys import KeyLoadError, load_searcher_key

    config = _load(Path(args.config))
    if config is None:
        return EXIT_PROBLEM
    problems = check_strategies(config)
    key = config.express_relay.signing_key
    if config.express_relay.enabled and key is not None:
        try:
            load_searcher_key(str(key))
        except KeyLoadError as exc:
            problems.insert(0, f"express_relay.signing_key: {exc}")
    if problems:
        _print_error(ConfigError(str(args.config), problems).render())
        return EXIT_PROBLEM
    print(f"{args.config}: ok ({len(config.enabled_strategies())} strategies enabled)")
    return EXIT_OK


def cmd_strategies(args: argparse.Namespace) -> int:
    """List every strategy file, its classes, and why a failed one failed."""
    from searcherd.plugins import describe

    config = _load(Path(args.config), resolve_secrets=False)
    if config is None:
        return EXIT_PROBLEM
    text, ok = describe(config)
    print(text)
    return EXIT_OK if ok else EXIT_PROBLEM


def cmd_status(args: argparse.Namespace) -> int:
    """Print the running daemon's health summary."""
    from searcherd.status import run_status

    config = _load(Path(args.config), resolve_secrets=False)
    if config is None:
        return EXIT_PROBLEM
    return run_status(config, as_json=args.json, out=sys.stdout)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the venue simulators alone until Ctrl-C."""
    from searcherd.simulate import run_simulators

    config = _load(Path(args.config), resolve_secrets=False)
    if config is None:
        return EXIT_PROBLEM
    configure_logging(config.log.level, config.log.format, sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run_simulators, config)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    from searcherd.app import Daemon, RunOptions

    config = _load(Path(args.config))
    if config is None:
        return EXIT_PROBLEM
    configure_logging(config.log.level, config.log.format)
    options = RunOptions(Path(args.config), dry_run=args.dry_run, simulate=args.simulate)
    try:
        return trio.run(Daemon(options, config).run)
    except Exception:
        # A bug, not bad input: log it whole (one JSON line under systemd) and exit non-zero so
        # systemd's Restart=on-failure brings the daemon back.
        structlog.get_logger("searcherd").exception("daemon_crashed")
        return EXIT_PROBLEM


def _emit(rows: list[dict[str, Any]], as_json: bool, columns: Sequence[str]) -> None:
    if as_json:
        try:
            out = orjson.dumps(rows, option=orjson.OPT_INDENT_2)
        except orjson.JSONEncodeError:  # an integer past 64 bits in a detail column
            out = json.dumps(rows, indent=2).encode()
        sys.stdout.buffer.write(out + b"\n")
        return
    if not rows:
        print("(none)")
        return
    table = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _state_path(args: argparse.Namespace) -> Path | None:
    config = _load(Path(args.config), resolve_secrets=False)
    return None if config is None else config.resolve_path(config.state.path)


def cmd_bids(args: argparse.Namespace) -> int:
    """List bids from the state table (works while the daemon runs)."""
    path = _state_path(args)
    if path is None:
        return EXIT_PROBLEM
    try:
        rows = list_bids(path, status=args.status, strategy=args.strategy, limit=args.limit)
    except StoreError as exc:
        _print_error(str(exc))
        return EXIT_PROBLEM
    _emit(
        rows,
        args.json,
        (
            "local_id",
            "venue",
            "chain_id",
            "strategy",
            "amount",
            "status",
            "server_bid_id",
            "reason",
        ),
    )
    return EXIT_OK


def cmd_orders(args: argparse.Namespace) -> int:
    """List Fusion+ orders from the state table."""
    path = _state_path(args)
    if path is None:
        return EXIT_PROBLEM
    try:
        rows = list_orders(path, status=args.status, limit=args.limit)
    except StoreError as exc:
        _print_error(str(exc))
        return EXIT_PROBLEM
    _emit(
        rows,
        args.json,
        ("order_hash", "src_chain_id", "dst_chain_id", "status", "ours", "remaining_maker_amount"),
    )
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="searcherd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"searcherd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help_: str, *, config: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if config:
            p.add_argument(
                "-c",
                "--config",
                default="searcher.toml",
                help="config file (default: ./searcher.toml)",
            )
        p.set_defaults(func=func)
        return p

    p = command("run", cmd_run, "run the daemon")
    p.add_argument("--dry-run", action="store_true", help="build and record bids, never send")
    p.add_argument(
        "--simulate",
        action="store_true",
        help="start the bundled venue simulators on loopback and use them",
    )
    command("check", cmd_check, "validate the config and load every strategy")
    command("strategies", cmd_strategies, "list strategy files, their classes and failures")
    p = command("status", cmd_status, "health summary of the running daemon")
    p.add_argument("--json", action="store_true", help="the /healthz JSON instead of a summary")
    command("simulate", cmd_simulate, "run the venue simulators alone (for strategy authors)")
    p = command("init", cmd_init, "write a commented default config", config=False)
    p.add_argument("path", nargs="?", default="searcher.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    for name, func, help_ in (
        ("bids", cmd_bids, "list bids from the state table"),
        ("orders", cmd_orders, "list Fusion+ orders from the state table"),
    ):
        p = command(name, func, help_)
        p.add_argument("--status", help="only this status")
        if name == "bids":
            p.add_argument("--strategy", help="only this strategy")
        p.add_argument("--limit", type=int, default=100, help="at most this many rows")
        p.add_argument("--json", action="store_true", help="JSON instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `searcherd` console script and `python -m searcherd`."""
    args = _parser().parse_args(argv)
    result: int = args.func(args)
    return result


def console_main() -> None:
    """Console-script wrapper: exit with `main`'s code."""
    sys.exit(main())
