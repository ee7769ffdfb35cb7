"""Strategy plugins: find, load and validate the `*.py` files of the strategies folder.

The folder is plain (not a package). Each file is compiled from its source bytes every time it is
loaded and executed into a fresh module named `searcherd_strategies.<stem>`. Going through the
normal import machinery would reuse `__pycache__` bytecode whenever the source's mtime (whole
seconds) and size are unchanged, so a quick edit followed by SIGHUP could run the old code.

A file that fails to import is reported with its file, line and traceback and does not stop the
other files from loading. The `[strategies.NAME]` tables are then matched to the strategies
found: `load_enabled` builds the enabled ones (parameters structured as strictly as the rest of
the config, errors with their `strategies.NAME.key` path) and raises `StrategyLoadError` listing
every problem, so the daemon refuses to start and a reload keeps the running set.

A plugin runs with the daemon's privileges, so world-writable files and folders are refused.
"""

from __future__ import annotations

import stat
import sys
import traceback
import types
from typing import TYPE_CHECKING, Any, Final

import attrs
import structlog
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from searcherd.config import error_lines, make_converter
from searcherd.strategy import Strategy, StrategyContext

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from searcherd.config import Config
    from searcherd.strategy import ExpressRelayView, FusionPlusView

__all__ = [
    "MODULE_PREFIX",
    "VENUES",
    "Discovery",
    "FileResult",
    "LoadedStrategies",
    "LoadedStrategy",
    "StrategyLoadError",
    "check_strategies",
    "describe",
    "discover",
    "load_enabled",
]

_log = structlog.get_logger(__name__)

MODULE_PREFIX: Final = "searcherd_strategies"
"""Strategy modules are registered in `sys.modules` as `searcherd_strategies.<stem>`."""
VENUES: Final = frozenset({"express_relay", "fusion_plus"})
"""The venues a strategy may name in `venues`."""

StrategyClass = type[Strategy[Any]]


class StrategyLoadError(Exception):
    """An enabled strategy cannot be loaded; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@attrs.frozen
class FileResult:
    """One strategy file: the strategy classes it defines, or why it failed to load.

    `error` is the import failure (`file:line: Type: message` then the traceback); `problems`
    are classes the file defines that are not usable (bad name, venues or Params).
    """

    path: Path
    classes: tuple[StrategyClass, ...] = ()
    error: str | None = None
    problems: tuple[str, ...] = ()


@attrs.frozen
class Discovery:
    """Everything found in the strategies folder.

    `folder_error` says why the folder itself could not be read (then `files` is empty);
    `problems` are problems across files (one name defined twice).
    """

    folder: Path
    files: tuple[FileResult, ...] = ()
    folder_error: str | None = None
    problems: tuple[str, ...] = ()

    def by_name(self) -> dict[str, StrategyClass]:
        """The usable strategy classes by `name` (a name defined twice is left out)."""
        counts: dict[str, int] = {}
        for result in self.files:
            for cls in result.classes:
                counts[cls.name] = counts.get(cls.name, 0) + 1
        return {
            cls.name: cls
            for result in self.files
            for cls in result.classes
            if counts[cls.name] == 1
        }

    def failed_files(self) -> list[FileResult]:
        """The files that failed to import."""
        return [result for result in self.files if result.error is not None]


@attrs.frozen
class LoadedStrategy:
    """One enabled strategy, built: its class, structured parameters and instance."""

    name: str
    cls: StrategyClass
    params: Any
    instance: Strategy[Any]
    path: Path

    @property
    def venues(self) -> tuple[str, ...]:
        """The venues whose opportunities it receives."""
        return self.cls.venues


@attrs.frozen
class LoadedStrategies:
    """The set of enabled strategies the evaluator runs (swapped as a whole on reload)."""

    strategies: tuple[LoadedStrategy, ...] = ()

    def __iter__(self) -> Iterator[LoadedStrategy]:
        return iter(self.strategies)

    def __len__(self) -> int:
        return len(self.strategies)

    @property
    def names(self) -> list[str]:
        """The names of the strategies, in load order."""
        return [s.name for s in self.strategies]


def _world_writable(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IWOTH)


def _error_text(path: Path, exc: BaseException) -> str:
    """`file:line: Type: message` and the traceback, trimmed to the plugin's own frames."""
    line: int | None = None
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        line = exc.lineno
    tb = exc.__traceback__
    # Skip our own frames (the exec call): the author wants to see their file.
    while tb is not None and tb.tb_frame.f_code.co_filename != str(path):
        tb = tb.tb_next
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == str(path):
            line = lineno
    where = f"{path}:{line}" if line is not None else str(path)
    head = f"{where}: {type(exc).__name__}: {exc}"
    body = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
    return f"{head}\n{body}"


def _load_module(path: Path) -> types.ModuleType:
    """Compile `path` from source and execute it into a fresh registered module.

    The module is in `sys.modules` before it executes (attrs, cattrs and typing look classes'
    modules up there), and on failure the entry it replaced, if any, is put back so that the
    running strategies' module stays resolvable.
    """
    name = f"{MODULE_PREFIX}.{path.stem}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except BaseException:
        if previous is not None:
            sys.modules[name] = previous
        else:
            sys.modules.pop(name, None)
        raise
    return module


def _class_problems(cls: StrategyClass, path: Path) -> list[str]:
    """Why a strategy class found in `path` cannot be used (empty when it can)."""
    name = cls.name
    where = f"{path.name}: class {cls.__qualname__}"
    if isinstance(name, str) and name:
        # The name in the text lets a table that names this class find why it is unusable.
        where += f" (name {name!r})"
    problems = []
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: `name` must be a non-empty string")
    venues = cls.venues
    if not isinstance(venues, tuple) or not venues:
        problems.append(f"{where}: `venues` must be a non-empty tuple")
    elif bad := [v for v in venues if v not in VENUES]:
        allowed = ", ".join(sorted(VENUES))
        problems.append(
            f"{where}: unknown venue(s) {', '.join(map(repr, bad))} (allowed: {allowed})"
        )
    if not isinstance(cls.Params, type) or not attrs.has(cls.Params):
        problems.append(f"{where}: `Params` must be an attrs class")
    return problems


def _load_file(path: Path) -> FileResult:
    """Load one strategy file; every failure ends up in the result, never raised."""
    try:
        if _world_writable(path):
            return FileResult(path, error=f"{path}: refused: the file is world-writable")
        module = _load_module(path)
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end the daemon
        return FileResult(path, error=_error_text(path, exc))
    classes: list[StrategyClass] = []
    problems: list[str] = []
    for obj in vars(module).values():
        # Only classes defined in this file: a base imported into it is not a second strategy.
        # Classes named `_X` are private helpers (an abstract base, say) and are skipped.
        if (
            isinstance(obj, type)
            and issubclass(obj, Strategy)
            and obj is not Strategy
            and obj.__module__ == module.__name__
            and not obj.__name__.startswith("_")
        ):
            found = _class_problems(obj, path)
            problems.extend(found)
            if not found:
                classes.append(obj)
    return FileResult(path, classes=tuple(classes), problems=tuple(problems))


def discover(folder: Path) -> Discovery:
    """Load every `*.py` of `folder` (not `_*.py`), in name order; never raises for a bad file."""
    try:
        if not folder.is_dir():
            return Discovery(folder, folder_error=f"{folder}: strategies folder not found")
        if _world_writable(folder):
            return Discovery(
                folder, folder_error=f"{folder}: refused: the strategies folder is world-writable"
            )
        paths = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    except OSError as exc:
        return Discovery(folder, folder_error=f"{folder}: cannot read: {exc}")
    files = tuple(_load_file(path) for path in paths)
    seen: dict[str, Path] = {}
    problems = []
    for result in files:
        for cls in result.classes:
            if cls.name in seen:
                problems.append(
                    f"strategy name {cls.name!r} is defined twice: in {seen[cls.name].name} "
                    f"and {result.path.name}"
                )
            else:
                seen[cls.name] = result.path
    return Discovery(folder, files, problems=tuple(problems))


def _structure_params(
    name: str, cls: StrategyClass, table: dict[str, Any]
) -> tuple[Any, list[str]]:
    """The table minus `enabled`, structured into `cls.Params`; problems as `strategies.NAME.key`."""
    raw = {k: v for k, v in table.items() if k != "enabled"}
    # A fresh converter per load: cattrs caches hooks per class, and a reload brings new classes.
    conv = make_converter()
    try:
        return conv.structure(raw, cls.Params), []
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        lines = error_lines(exc)
    except Exception as exc:
        return None, [f"strategies.{name}: cannot read its parameters: {exc}"]
    problems = []
    for line in lines:
        key, _, message = line.partition(": ")
        path = f"strategies.{name}" if key == "(top level)" else f"strategies.{name}.{key}"
        problems.append(f"{path}: {message}")
    return None, problems


def _missing(name: str, discovery: Discovery) -> str:
    """Why no class is available for the table `name`."""
    if discovery.folder_error is not None:
        return f"strategies.{name}: {discovery.folder_error}"
    where = str(discovery.folder)
    failed = discovery.failed_files()
    hint = ""
    if failed:
        # The first line of each failure: the table may be defined in one of those files.
        heads = "; ".join((f.error or "").partition("\n")[0] for f in failed)
        hint = f" ({len(failed)} file(s) failed to load: {heads})"
    for problem in discovery.problems:
        if f"{name!r}" in problem:
            return f"strategies.{name}: {problem}"
    for result in discovery.files:
        for problem in result.problems:
            if f"(name {name!r})" in problem:
                return f"strategies.{name}: {problem}"
    return f"strategies.{name}: no strategy file in {where} defines a strategy named {name!r}{hint}"


def _context(
    name: str, express_relay: ExpressRelayView | None, fusion_plus: FusionPlusView | None
) -> StrategyContext:
    log = structlog.get_logger(f"{MODULE_PREFIX}.{name}").bind(strategy=name)
    return StrategyContext(name, log, express_relay=express_relay, fusion_plus=fusion_plus)


def load_enabled(
    config: Config,
    *,
    express_relay: ExpressRelayView | None = None,
    fusion_plus: FusionPlusView | None = None,
) -> LoadedStrategies:
    """Load the folder and build every strategy whose table says `enabled = true`.

    Raises `StrategyLoadError` listing every problem of every enabled strategy (no file defines
    it, its file failed, bad parameters, its constructor raised). Files and tables not needed by
    an enabled strategy do not stop the load; their problems are logged as warnings.
    """
    folder = config.resolve_path(config.daemon.strategies_dir)
    enabled = config.enabled_strategies()
    if not enabled:
        return LoadedStrategies()
    discovery = discover(folder)
    classes = discovery.by_name()
    paths = {cls: r.path for r in discovery.files for cls in r.classes}
    problems: list[str] = []
    loaded: list[LoadedStrategy] = []
    for name, table in enabled.items():
        cls = classes.get(name)
        if cls is None:
            problems.append(_missing(name, discovery))
            continue
        params, bad = _structure_params(name, cls, table)
        if bad:
            problems.extend(bad)
            continue
        try:
            instance = cls(params, _context(name, express_relay, fusion_plus))
        except (Exception, SystemExit) as exc:
            problems.append(f"strategies.{name}: {_error_text(paths[cls], exc)}")
            continue
        loaded.append(LoadedStrategy(name, cls, params, instance, paths[cls]))
    if problems:
        raise StrategyLoadError(problems)
    # Reported, not fatal: nothing enabled needs these files.
    for result in discovery.failed_files():
        _log.warning("strategy_file_failed", file=str(result.path), error=result.error)
    for name in config.strategies.keys() - enabled.keys() - classes.keys():
        _log.warning("strategy_table_unmatched", strategy=name)
    return LoadedStrategies(tuple(loaded))


def check_strategies(config: Config) -> list[str]:
    """Every problem `searcherd check` should print about strategies (empty when all is well).

    Stricter than `load_enabled`: every file must load, every table must name a strategy some
    file defines, and every table's parameters must be valid, enabled or not.
    """
    if not config.strategies:
        return []
    discovery = discover(config.resolve_path(config.daemon.strategies_dir))
    if discovery.folder_error is not None:
        return [discovery.folder_error]
    problems: list[str] = [r.error for r in discovery.failed_files() if r.error is not None]
    problems += [p for r in discovery.files for p in r.problems]
    problems += discovery.problems
    classes = discovery.by_name()
    for name, table in config.strategies.items():
        cls = classes.get(name)
        if cls is None:
            problems.append(_missing(name, discovery))
        else:
            problems += _structure_params(name, cls, table)[1]
    return problems


def describe(config: Config) -> tuple[str, bool]:
    """Text for `searcherd strategies`: every file, its classes, enabled or not, failures.

    `ok` is False when any file failed, any table names no strategy, or any enabled strategy
    has bad parameters.
    """
    folder = config.resolve_path(config.daemon.strategies_dir)
    discovery = discover(folder)
    if discovery.folder_error is not None:
        return discovery.folder_error, not config.enabled_strategies()
    lines = [f"{folder}:"]
    ok = True
    enabled = config.enabled_strategies()
    classes = discovery.by_name()
    if not discovery.files:
        lines.append("  (no strategy files)")
    for result in discovery.files:
        if result.error is not None:
            ok = False
            lines.append(f"  {result.path.name}: FAILED")
            lines.extend(f"    {line}" for line in result.error.splitlines())
            continue
        lines.append(f"  {result.path.name}:" + ("" if result.classes else " (no strategies)"))
        for cls in result.classes:
            state = "enabled" if cls.name in enabled else "disabled"
            if cls.name in enabled:
                bad = _structure_params(cls.name, cls, enabled[cls.name])[1]
                if bad:
                    ok = False
                    state = "enabled, INVALID: " + "; ".join(bad)
            venues = ", ".join(cls.venues)
            lines.append(f"    {cls.name} ({cls.__qualname__}; {venues}): {state}")
        for problem in result.problems:
            ok = False
            lines.append(f"    problem: {problem}")
    for problem in discovery.problems:
        ok = False
        lines.append(f"  problem: {problem}")
    for name in config.strategies:
        if name not in classes:
            ok = False
            lines.append(f"  problem: {_missing(name, discovery)}")
    return "\n".join(lines), ok
