"""The daemon's configuration: `searcher.toml` read into frozen attrs classes.

Loading is strict on purpose: an unknown key is an error (a typo must not silently fall back to a
default), scalars are not coerced (`port = "80"` is an error, not 80), and every problem in the
file is reported in one run, each with its `table.key` path. Secrets are references resolved at
load time (see `searcherd._secrets`); their values never reach a message.

`load_config` is the one entry point: `searcherd check`, `searcherd run` and the SIGHUP reload
all call it, so they agree on what a valid file is.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, NewType, TypeVar
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from searcherd._secrets import Secret, SecretError, SecretRef, parse_secret_ref, resolve_secret

__all__ = [
    "Config",
    "ConfigError",
    "DaemonConfig",
    "EvaluatorConfig",
    "ExpressRelayConfig",
    "FusionPlusConfig",
    "HealthConfig",
    "LimitsConfig",
    "LogConfig",
    "StateConfig",
    "error_lines",
    "load_config",
    "make_converter",
    "parse_config",
]

Seconds = NewType("Seconds", float)
"""A duration in seconds, > 0; TOML integers are accepted."""
Count = NewType("Count", int)
"""A count, >= 1."""
WsUrl = NewType("WsUrl", str)
"""A `ws://` or `wss://` URL."""
HttpUrl = NewType("HttpUrl", str)
"""An `http://` or `https://` URL."""
Listen = NewType("Listen", str)
"""`host:port` to listen on, or empty to turn the listener off."""
Amount = NewType("Amount", int)
"""An amount in a venue's units, >= 0."""

DropPolicy = Literal["oldest", "newest"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["auto", "json", "console"]


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def render(self) -> str:
        """The problems as a block of text for a terminal or a log line."""
        lines = "\n".join(f"  {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        return f"{self.source}: {len(self.problems)} {noun}:\n{lines}"


@attrs.frozen
class DaemonConfig:
    """`[daemon]`: where strategies live and how the daemon stops."""

    strategies_dir: str = "strategies"
    shutdown_grace: Seconds = Seconds(5.0)
    dry_run: bool = False


@attrs.frozen
class LogConfig:
    """`[log]`: level, format (JSON lines off a TTY, readable console on one), and how often
    the info-level `bids_summary` line sums up the bids (a bid's own lines are debug lines)."""

    level: LogLevel = "info"
    format: LogFormat = "auto"
    summary_interval: Seconds = Seconds(60.0)


@attrs.frozen
class StateConfig:
    """`[state]`: the SQLite state table and how often it commits."""

    path: str = "state/searcherd.db"
    commit_interval: Seconds = Seconds(0.05)
    batch_max: Count = Count(1000)


@attrs.frozen
class HealthConfig:
    """`[health]`: the /healthz and /metrics listener; empty `listen` turns it off."""

    listen: Listen = Listen("127.0.0.1:9464")


@attrs.frozen
class LimitsConfig:
    """`[limits]`: the submitter's risk gate, applied to every strategy.

    `max_amount = 0` means no cap. `kill_switch = true`, or the existence of `kill_file`, stops
    every bid at the gate (recorded as `blocked`) without restarting the daemon.
    """

    max_in_flight: Count = Count(100)
    max_bids_per_second: Count = Count(50)
    max_amount: Amount = Amount(0)
    kill_switch: bool = False
    kill_file: str = ""


@attrs.frozen
class EvaluatorConfig:
    """`[evaluator]`: strategy inboxes, call deadlines and quarantine."""

    inbox_size: Count = Count(64)
    drop_policy: DropPolicy = "oldest"
    call_timeout: Seconds = Seconds(0.5)
    max_consecutive_failures: Count = Count(5)
    max_opportunity_age: Seconds = Seconds(2.0)


@attrs.frozen
class ExpressRelayConfig:
    """`[express_relay]`: the Pyth Express Relay venue."""

    enabled: bool = True
    ws_url: WsUrl = WsUrl("wss://per-mainnet.dourolabs.app/v1/ws")
    http_url: HttpUrl = HttpUrl("https://per-mainnet.dourolabs.app")
    api_key: Secret | None = None
    chains: tuple[str, ...] = ("solana",)
    program_id: str = ""
    signing_key: SecretRef | None = None
    solana_rpc_url: str = ""
    relayer_signer: str = ""
    fee_receiver_relayer: str = ""
    request_timeout: Seconds = Seconds(5.0)
    max_in_flight_per_connection: Count = Count(150)
    liveness_window: Seconds = Seconds(20.0)
    ping_interval: Seconds = Seconds(10.0)
    ping_timeout: Seconds = Seconds(5.0)
    backoff_max: Seconds = Seconds(30.0)
    swap_auction_window: Seconds = Seconds(0.25)
    reconcile_interval: Seconds = Seconds(5.0)


@attrs.frozen
class FusionPlusConfig:
    """`[fusion_plus]`: the 1inch Fusion+ venue."""

    enabled: bool = False
    ws_url: WsUrl = WsUrl("wss://api.1inch.com/fusion-plus/ws/v1.2")
    http_url: HttpUrl = HttpUrl("https://api.1inch.com/fusion-plus")
    api_key: Secret | None = None
    resolver_address: str = ""
    page_limit: Count = Count(100)
    rpc_timeout: Seconds = Seconds(10.0)
    liveness_window: Seconds = Seconds(60.0)
    ping_interval: Seconds = Seconds(20.0)
    ping_timeout: Seconds = Seconds(10.0)
    backoff_max: Seconds = Seconds(30.0)
    window_alarm: Seconds = Seconds(300.0)


@attrs.frozen
class Config:
    """The whole `searcher.toml`.

    `strategies` keeps each `[strategies.NAME]` table as read; the plugin loader validates each
    one against the parameters its strategy declares. `base_dir` is the config file's folder:
    relative paths in the file are relative to it, so a systemd unit and a shell agree.
    """

    daemon: DaemonConfig = DaemonConfig()
    log: LogConfig = LogConfig()
    state: StateConfig = StateConfig()
    health: HealthConfig = HealthConfig()
    limits: LimitsConfig = LimitsConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    express_relay: ExpressRelayConfig = ExpressRelayConfig()
    fusion_plus: FusionPlusConfig = FusionPlusConfig()
    strategies: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    base_dir: Path = attrs.field(default=Path(), eq=False)

    def resolve_path(self, value: str) -> Path:
        """A path from the file, made absolute against the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def enabled_strategies(self) -> dict[str, dict[str, Any]]:
        """The `[strategies.NAME]` tables that say `enabled = true`."""
        return {name: table for name, table in self.strategies.items() if table.get("enabled")}


_T = TypeVar("_T")


def _strict(kind: type[_T]) -> Any:
    """A structure hook that refuses other types (cattrs would coerce "5" to 5)."""

    def hook(value: Any, _: Any) -> _T:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


def _seconds(value: Any, _: Any) -> Seconds:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"must be > 0, got {value}")
    return Seconds(float(value))


def _count(value: Any, _: Any) -> Count:
    if type(value) is not int:
        raise TypeError(f"expected int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return Count(value)


def _amount(value: Any, _: Any) -> Amount:
    if type(value) is not int:
        raise TypeError(f"expected int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"must be >= 0 (0 = no cap), got {value}")
    return Amount(value)


def _url(schemes: tuple[str, ...]) -> Any:
    def hook(value: Any, _: Any) -> str:
        if type(value) is not str:
            raise TypeError(f"expected str, got {type(value).__name__}")
        parts = urlsplit(value)
        # The password check comes first: the other message quotes the URL.
        if parts.password:
            raise ValueError("must not carry a password; use api_key")
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"must be a {' or '.join(schemes)} URL, got {value!r}")
        return value

    return hook


def _listen(value: Any, _: Any) -> Listen:
    if type(value) is not str:
        raise TypeError(f"expected str, got {type(value).__name__}")
    if value:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f'must be "host:port" or empty, got {value!r}')
    return Listen(value)


def _secret_ref(value: Any, _: Any) -> SecretRef:
    if type(value) is not str:
        raise TypeError(f"expected str, got {type(value).__name__}")
    return parse_secret_ref(value)


def _str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    # cattrs would turn the string "solana" into ("s", "o", ...): only a TOML array will do.
    if type(value) is not list:
        raise TypeError(f"expected an array of strings, got {type(value).__name__}")
    if not all(type(item) is str for item in value):
        raise TypeError("expected an array of strings")
    return tuple(value)


def _strategy_tables(value: Any, _: Any) -> dict[str, dict[str, Any]]:
    # Per-table problems are reported by `_strategy_problems`, with their full paths.
    if not isinstance(value, dict) or not all(isinstance(t, dict) for t in value.values()):
        raise TypeError("expected [strategies.NAME] tables")
    return dict(value)


def _strategy_problems(raw: Any) -> list[str]:
    """Problems in the `[strategies.NAME]` tables that the loader cannot check later."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return ["strategies: must be [strategies.NAME] tables"]
    problems = []
    for name, table in raw.items():
        if not isinstance(table, dict):
            problems.append(f"strategies.{name}: must be a table")
        elif type(table.get("enabled", False)) is not bool:
            problems.append(f"strategies.{name}.enabled: must be true or false")
    return problems


_UNKNOWN = "unknown key(s): "


def _format_exception(exc: BaseException, type_: Any) -> str:
    """cattrs' error line, with our own message for the errors our hooks raise."""
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, ForbiddenExtraKeysError):
        return _UNKNOWN + ", ".join(sorted(exc.extra_fields))
    if attrs.has(type_) and isinstance(exc, (TypeError, AttributeError)):
        return "must be a table"
    if isinstance(exc, cattrs.errors.CattrsError) and "not in literal" in str(exc):
        return f"must be one of {', '.join(map(repr, type_.__args__))}"
    return str(exc)


def _single_line(secret: Secret) -> Secret:
    # API keys go into an HTTP header, where a line break is an error (or an injection).
    if "\n" in secret.reveal() or "\r" in secret.reveal():
        raise SecretError(f"{secret.ref}: the secret must be one line (it holds a line break)")
    return secret


def _unresolved_secret(value: Any, _: Any) -> Secret:
    # Read-only commands (`bids`, `status`) must work without access to the secrets (systemd
    # credentials are only readable by the service): keep the reference, no value.
    return Secret(parse_secret_ref(_strict(str)(value, None)), "")


def make_converter(
    environ: dict[str, str] | None = None, *, resolve_secrets: bool = True
) -> cattrs.Converter:
    """The strict converter every config table goes through (strategy parameters included)."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _strict(kind))
    conv.register_structure_hook(Seconds, _seconds)
    conv.register_structure_hook(Count, _count)
    conv.register_structure_hook(WsUrl, _url(("ws", "wss")))
    conv.register_structure_hook(HttpUrl, _url(("http", "https")))
    conv.register_structure_hook(Listen, _listen)
    conv.register_structure_hook(Amount, _amount)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _str_tuple)
    conv.register_structure_hook(SecretRef, _secret_ref)
    if resolve_secrets:
        conv.register_structure_hook(
            Secret,
            lambda value, _: _single_line(resolve_secret(_strict(str)(value, None), environ)),
        )
    else:
        conv.register_structure_hook(Secret, _unresolved_secret)
    conv.register_structure_hook_func(lambda t: t == dict[str, dict[str, Any]], _strategy_tables)
    return conv


def error_lines(exc: ClassValidationError | ForbiddenExtraKeysError) -> list[str]:
    """cattrs' error tree as `table.key: message` lines, in file order."""
    lines: list[str] = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format_exception):
        message, _, where = line.rpartition(" @ ")
        table = where.removeprefix("$").removeprefix(".")
        if message.startswith(_UNKNOWN):
            prefix = f"{table}." if table else ""
            keys = message.removeprefix(_UNKNOWN).split(", ")
            lines.extend(f"{prefix}{key}: unknown key" for key in keys)
        else:
            lines.append(f"{table or '(top level)'}: {message}")
    return lines


def parse_config(
    text: str,
    *,
    source: str = "searcher.toml",
    base_dir: Path | None = None,
    environ: dict[str, str] | None = None,
    resolve_secrets: bool = True,
) -> Config:
    """Parse and validate config text; raise `ConfigError` listing every problem.

    `environ` replaces `os.environ` for `env:` secret references (tests use it);
    `resolve_secrets=False` checks the references' form only (for read-only commands).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"invalid TOML: {exc}"]) from None
    conv = make_converter(environ, resolve_secrets=resolve_secrets)
    problems = _strategy_problems(raw.get("strategies"))
    try:
        config = conv.structure(raw, Config)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        lines = [line for line in error_lines(exc) if not line.startswith("strategies: ")]
        raise ConfigError(source, lines + problems) from None
    problems += _cross_checks(config)
    if problems:
        raise ConfigError(source, problems)
    return attrs.evolve(config, base_dir=base_dir or Path())


def _cross_checks(config: Config) -> list[str]:
    """Rules that involve more than one key."""
    problems = []
    er = config.express_relay
    if er.enabled and not er.chains:
        problems.append("express_relay.chains: at least one chain id is needed")
    if config.fusion_plus.page_limit > 500:
        problems.append("fusion_plus.page_limit: must be at most 500 (the server's maximum)")
    if config.fusion_plus.ws_url.rstrip("/").endswith("/v1.2/v1.2"):
        problems.append("fusion_plus.ws_url: the version segment is doubled (/v1.2/v1.2)")
    return problems


def load_config(
    path: Path, environ: dict[str, str] | None = None, *, resolve_secrets: bool = True
) -> Config:
    """Read and validate `path`; raise `ConfigError` for a missing file or any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(path), ["file not found (create one with `searcherd init`)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read: {exc}"]) from None
    return parse_config(
        text,
        source=str(path),
        base_dir=path.resolve().parent,
        environ=environ,
        resolve_secrets=resolve_secrets,
    )
