"""Tests for searcherd.plugins: discovery, loading from source, validation, reports."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import pytest

from searcherd.config import Config, DaemonConfig, parse_config
from searcherd.plugins import (
    MODULE_PREFIX,
    StrategyLoadError,
    check_strategies,
    describe,
    discover,
    load_enabled,
)

if TYPE_CHECKING:
    from pathlib import Path

_GOOD = """
import attrs
from searcherd.strategy import Strategy

@attrs.frozen
class Params:
    margin_bps: int = 30
    label: str = "x"

class Good(Strategy[Params]):
    name = "good"
    venues = ("express_relay",)
    Params = Params

    def on_opportunity(self, opp):
        return None
"""


def _write(folder: Path, filename: str, source: str) -> Path:
    """Write a strategy file (dedented) into `folder`."""
    folder.mkdir(exist_ok=True)
    path = folder / filename
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def _config(folder: Path, **strategies: dict[str, Any]) -> Config:
    """A config whose strategies folder is `folder`, with the given `[strategies.NAME]` tables."""
    return Config(daemon=DaemonConfig(strategies_dir=str(folder)), strategies=dict(strategies))


def test_discover_finds_classes_defined_in_each_file(tmp_path: Path) -> None:
    """Strategy subclasses defined in a file are found; imported and `_private` ones are not."""
    _write(tmp_path, "good.py", _GOOD)
    _write(
        tmp_path,
        "other.py",
        """
        from searcherd.strategy import Strategy
        from searcherd_strategies.good import Good  # imported, not defined here

        class _Base(Strategy[object]):
            pass

        class Other(_Base):
            name = "other"
            venues = ("fusion_plus", "express_relay")
        """,
    )
    _write(tmp_path, "_helper.py", "raise RuntimeError('never loaded')\n")
    found = discover(tmp_path)
    assert found.folder_error is None
    assert [r.path.name for r in found.files] == ["good.py", "other.py"]
    assert sorted(found.by_name()) == ["good", "other"]
    assert found.by_name()["other"].venues == ("fusion_plus", "express_relay")
    assert found.problems == ()


def test_syntax_error_reported_with_file_and_line_others_still_load(tmp_path: Path) -> None:
    """A file with a syntax error is reported with its path and line; other files load."""
    _write(tmp_path, "good.py", _GOOD)
    bad = _write(tmp_path, "broken.py", "x = 1\n\ndef f(:\n    pass\n")
    found = discover(tmp_path)
    [failed] = found.failed_files()
    assert failed.path == bad
    assert failed.error is not None
    assert failed.error.startswith(f"{bad}:3: SyntaxError")
    assert "good" in found.by_name()
    assert f"{MODULE_PREFIX}.broken" not in sys.modules


def test_import_error_reported_with_line_and_traceback(tmp_path: Path) -> None:
    """An exception at import time gives file:line, the type and the plugin's traceback."""
    bad = _write(
        tmp_path,
        "boom.py",
        """
        def helper():
            raise ValueError("bad constant")

        X = helper()
        """,
    )
    [failed] = discover(tmp_path).failed_files()
    assert failed.error is not None
    head, _, body = failed.error.partition("\n")
    assert head == f"{bad}:3: ValueError: bad constant"
    assert "Traceback (most recent call last)" in body
    assert f'File "{bad}", line 5' in body
    assert "plugins.py" not in body  # our exec frame is trimmed


def test_module_registered_before_exec_and_annotations_resolve(tmp_path: Path) -> None:
    """The module is in sys.modules while it runs, so postponed annotations in Params work."""
    _write(
        tmp_path,
        "late.py",
        """
        from __future__ import annotations
        import sys
        import attrs
        from searcherd.strategy import Strategy

        assert sys.modules[__name__].__dict__ is globals()

        @attrs.frozen
        class Params:
            size: int = 1

        class Late(Strategy[Params]):
            name = "late"
            Params = Params
        """,
    )
    loaded = load_enabled(_config(tmp_path, late={"enabled": True, "size": 7}))
    [only] = loaded
    assert only.params.size == 7
    assert only.instance.params is only.params
    assert type(only.instance).__module__ == f"{MODULE_PREFIX}.late"


def test_bad_parameters_reported_with_strategies_name_key_paths(tmp_path: Path) -> None:
    """Every parameter problem is reported with its path; scalars are not coerced."""
    _write(tmp_path, "good.py", _GOOD)
    config = _config(tmp_path, good={"enabled": True, "margin_bps": "30", "label": 5, "bogus": 1})
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(config)
    assert info.value.problems == [
        "strategies.good.margin_bps: expected int, got str",
        "strategies.good.label: expected str, got int",
        "strategies.good.bogus: unknown key",
    ]


def test_strategy_without_params_accepts_only_enabled(tmp_path: Path) -> None:
    """A strategy with NoParams rejects any key but `enabled`."""
    _write(
        tmp_path,
        "plain.py",
        """
        from searcherd.strategy import Strategy

        class Plain(Strategy[object]):
            name = "plain"
        """,
    )
    assert len(load_enabled(_config(tmp_path, plain={"enabled": True}))) == 1
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(_config(tmp_path, plain={"enabled": True, "x": 1}))
    assert info.value.problems == ["strategies.plain.x: unknown key"]


def test_only_enabled_tables_are_loaded(tmp_path: Path) -> None:
    """A strategy runs only when its table says enabled = true."""
    _write(tmp_path, "good.py", _GOOD)
    assert len(load_enabled(_config(tmp_path, good={"margin_bps": 1}))) == 0
    assert len(load_enabled(_config(tmp_path, good={"enabled": False}))) == 0
    loaded = load_enabled(_config(tmp_path, good={"enabled": True, "margin_bps": 5}))
    assert loaded.names == ["good"]
    [only] = loaded
    assert only.params.margin_bps == 5
    assert only.venues == ("express_relay",)
    assert only.instance.context.name == "good"


def test_enabled_table_naming_no_strategy_is_an_error(tmp_path: Path) -> None:
    """An enabled table with no matching class fails the load, naming the broken files."""
    _write(tmp_path, "good.py", _GOOD)
    _write(tmp_path, "broken.py", "import no_such_module_here\n")
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(_config(tmp_path, good={"enabled": True}, missing={"enabled": True}))
    [problem] = info.value.problems
    assert problem.startswith("strategies.missing: no strategy file in")
    assert "broken.py" in problem


def test_broken_file_not_needed_does_not_stop_loading(tmp_path: Path) -> None:
    """A file that fails to import does not stop the enabled strategies of other files."""
    _write(tmp_path, "good.py", _GOOD)
    _write(tmp_path, "broken.py", "1/0\n")
    assert load_enabled(_config(tmp_path, good={"enabled": True})).names == ["good"]


def test_class_problems_invalid_venue_empty_name_duplicates(tmp_path: Path) -> None:
    """Unknown venues, empty names and a name defined twice are reported, not loaded."""
    _write(tmp_path, "good.py", _GOOD)
    _write(
        tmp_path,
        "bad.py",
        """
        from searcherd.strategy import Strategy

        class NoName(Strategy[object]):
            venues = ("fusion_plus",)

        class Venue(Strategy[object]):
            name = "venue"
            venues = ("binance",)

        class Twin(Strategy[object]):
            name = "good"
        """,
    )
    found = discover(tmp_path)
    [bad] = [r for r in found.files if r.path.name == "bad.py"]
    assert any("class NoName: `name` must be a non-empty string" in p for p in bad.problems)
    assert any("'binance'" in p for p in bad.problems)
    assert found.problems == ("strategy name 'good' is defined twice: in bad.py and good.py",)
    assert "good" not in found.by_name()
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(_config(tmp_path, good={"enabled": True}, venue={"enabled": True}))
    assert info.value.problems[0].startswith("strategies.good: strategy name 'good' is defined")
    assert "unknown venue(s) 'binance'" in info.value.problems[1]


def test_constructor_error_is_a_load_problem(tmp_path: Path) -> None:
    """A strategy whose __init__ raises fails the load with the file and line."""
    path = _write(
        tmp_path,
        "ctor.py",
        """
        from searcherd.strategy import Strategy

        class Ctor(Strategy[object]):
            name = "ctor"

            def __init__(self, params, context):
                raise RuntimeError("no warm cache")
        """,
    )
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(_config(tmp_path, ctor={"enabled": True}))
    [problem] = info.value.problems
    assert problem.startswith(f"strategies.ctor: {path}:8: RuntimeError: no warm cache")


def test_world_writable_file_and_folder_refused(tmp_path: Path) -> None:
    """A world-writable strategy file or folder is refused with a clear message."""
    folder = tmp_path / "strategies"
    path = _write(folder, "good.py", _GOOD)
    path.chmod(0o666)
    [failed] = discover(folder).failed_files()
    assert failed.error == f"{path}: refused: the file is world-writable"
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(_config(folder, good={"enabled": True}))
    assert "world-writable" in info.value.problems[0]
    path.chmod(0o644)
    folder.chmod(0o777)
    try:
        found = discover(folder)
        assert found.folder_error == f"{folder}: refused: the strategies folder is world-writable"
        assert check_strategies(_config(folder, good={"enabled": True})) == [found.folder_error]
    finally:
        folder.chmod(0o755)


def test_reload_compiles_fresh_source_same_second_same_size(tmp_path: Path) -> None:
    """An edit keeping size and mtime is still picked up: source is compiled every time."""
    template = _GOOD.replace("margin_bps: int = 30", "margin_bps: int = {}")
    path = _write(tmp_path, "good.py", template.format(11))
    before = path.stat()
    config = _config(tmp_path, good={"enabled": True})
    [first] = load_enabled(config)
    _write(tmp_path, "good.py", template.format(22))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    [second] = load_enabled(config)
    assert (first.params.margin_bps, second.params.margin_bps) == (11, 22)
    assert first.cls is not second.cls


def test_failed_reload_keeps_previous_module_registered(tmp_path: Path) -> None:
    """A file that breaks on reload leaves the previously loaded module in sys.modules."""
    path = _write(tmp_path, "good.py", _GOOD)
    [first] = load_enabled(_config(tmp_path, good={"enabled": True}))
    module = sys.modules[f"{MODULE_PREFIX}.good"]
    path.write_text(_GOOD + "\nraise SystemExit('nope')\n", encoding="utf-8")
    with pytest.raises(StrategyLoadError):
        load_enabled(_config(tmp_path, good={"enabled": True}))
    assert sys.modules[f"{MODULE_PREFIX}.good"] is module
    assert first.cls.__module__ == module.__name__


def test_check_strategies_reports_everything(tmp_path: Path) -> None:
    """`check` reports broken files, unmatched tables and bad params of disabled strategies."""
    _write(tmp_path, "good.py", _GOOD)
    _write(tmp_path, "broken.py", "def f(:\n")
    config = _config(tmp_path, good={"enabled": False, "margin_bps": 1.5}, typo={})
    problems = check_strategies(config)
    assert problems[0].startswith(f"{tmp_path / 'broken.py'}:1: SyntaxError")
    assert problems[1] == "strategies.good.margin_bps: expected int, got float"
    assert problems[2].startswith("strategies.typo: no strategy file in")
    assert len(problems) == 3
    assert check_strategies(_config(tmp_path)) == []


def test_describe_lists_files_classes_and_failures(tmp_path: Path) -> None:
    """`searcherd strategies` text: every file, its classes, enabled or not, why one failed."""
    folder = tmp_path / "strategies"
    _write(folder, "good.py", _GOOD)
    _write(folder, "zz_broken.py", "1/0\n")
    config = parse_config(
        "[daemon]\nstrategies_dir = 'strategies'\n[strategies.good]\nenabled = true\n",
        base_dir=tmp_path,
    )
    text, ok = describe(config)
    assert not ok
    lines = text.splitlines()
    assert lines[0] == f"{folder}:"
    assert "  good.py:" in lines
    assert "    good (Good; express_relay): enabled" in lines
    assert "  zz_broken.py: FAILED" in lines
    assert any("ZeroDivisionError" in line for line in lines)
    (folder / "zz_broken.py").unlink()
    text, ok = describe(config)
    assert ok
    assert "FAILED" not in text


def test_missing_folder(tmp_path: Path) -> None:
    """A missing folder is fine with nothing enabled and an error for an enabled strategy."""
    folder = tmp_path / "nope"
    assert len(load_enabled(_config(folder))) == 0
    with pytest.raises(StrategyLoadError) as info:
        load_enabled(_config(folder, good={"enabled": True}))
    assert info.value.problems == [f"strategies.good: {folder}: strategies folder not found"]
    assert describe(_config(folder)) == (f"{folder}: strategies folder not found", True)
