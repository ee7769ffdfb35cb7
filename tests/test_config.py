"""Tests for searcherd.config: strict loading, every problem at once, defaults and paths."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import attrs
import pytest

from searcherd.config import Config, ConfigError, load_config, parse_config

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _problems(text: str) -> list[str]:
    """The problems `parse_config` reports for `text` (the test fails if it accepts it)."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, environ={})
    return info.value.problems


_MANY_PROBLEMS = """
bogus = 1

[daemon]
shutdown_grace = "5"
typo = 3

[log]
level = "verbose"
format = "xml"

[state]
commit_interval = -1
batch_max = 0

[health]
listen = "nohost"

[limits]
max_in_flight = "5"
max_amount = -3

[evaluator]
drop_policy = "middle"

[express_relay]
ws_url = "http://example.com/ws"
http_url = "not a url"

[fusion_plus]
page_limit = 5.0

[strategies.fixed]
enabled = "yes"
"""


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    """One bad file yields one ConfigError listing each problem under its `table.key` path."""
    problems = _problems(_MANY_PROBLEMS)
    paths = [p.partition(":")[0] for p in problems]
    assert sorted(paths) == sorted(
        [
            "bogus",
            "daemon.shutdown_grace",
            "daemon.typo",
            "log.level",
            "log.format",
            "state.commit_interval",
            "state.batch_max",
            "health.listen",
            "limits.max_in_flight",
            "limits.max_amount",
            "evaluator.drop_policy",
            "express_relay.ws_url",
            "express_relay.http_url",
            "fusion_plus.page_limit",
            "strategies.fixed.enabled",
        ]
    )


def test_render_lists_the_source_and_each_problem_on_its_own_line() -> None:
    """`render()` names the file, counts the problems and gives one indented line each."""
    with pytest.raises(ConfigError) as info:
        parse_config(_MANY_PROBLEMS, source="my.toml")
    text = info.value.render()
    lines = text.splitlines()
    assert lines[0] == f"my.toml: {len(info.value.problems)} problems:"
    assert lines[1:] == [f"  {p}" for p in info.value.problems]
    assert str(info.value).startswith("my.toml: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[daemon]\nnope = 1\n", "daemon.nope: unknown key"),
        ("nope = 1\n", "nope: unknown key"),
        ("[nope]\nx = 1\n", "nope: unknown key"),
        ('[limits]\nmax_in_flight = "5"\n', "limits.max_in_flight: expected int, got str"),
        ('[daemon]\ndry_run = "true"\n', "daemon.dry_run: expected bool, got str"),
        ("[daemon]\ndry_run = 1\n", "daemon.dry_run: expected bool, got int"),
        ("[daemon]\nstrategies_dir = 5\n", "daemon.strategies_dir: expected str, got int"),
        ('[state]\ncommit_interval = "0.05"\n', "state.commit_interval: expected a number"),
        ("[fusion_plus]\npage_limit = 5.0\n", "fusion_plus.page_limit: expected int, got float"),
        ("[limits]\nmax_amount = 1.5\n", "limits.max_amount: expected int, got float"),
        ("[health]\nlisten = 9464\n", "health.listen: expected str, got int"),
        ("daemon = 3\n", "daemon: must be a table"),
        ('[express_relay]\nchains = "solana"\n', "express_relay.chains: expected an array"),
        ("[express_relay]\nchains = [1]\n", "express_relay.chains: expected an array of strings"),
        ("strategies = 5\n", "strategies: must be [strategies.NAME] tables"),
        ("[strategies]\nfixed = 1\n", "strategies.fixed: must be a table"),
    ],
)
def test_wrong_types_are_errors_not_coerced(text: str, expected: str) -> None:
    """Unknown keys and wrong types are errors: "5" is not 5, 1 is not true, a str not a list."""
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[daemon]\nshutdown_grace = 0\n", "daemon.shutdown_grace: must be > 0, got 0"),
        ("[state]\ncommit_interval = -0.5\n", "state.commit_interval: must be > 0, got -0.5"),
        ("[state]\nbatch_max = 0\n", "state.batch_max: must be >= 1, got 0"),
        ("[evaluator]\ninbox_size = -1\n", "evaluator.inbox_size: must be >= 1, got -1"),
        ("[limits]\nmax_amount = -1\n", "limits.max_amount: must be >= 0 (0 = no cap), got -1"),
        ('[health]\nlisten = "localhost:99999"\n', 'health.listen: must be "host:port"'),
        ('[health]\nlisten = ":80"\n', 'health.listen: must be "host:port"'),
        ('[health]\nlisten = "host:http"\n', 'health.listen: must be "host:port"'),
    ],
)
def test_out_of_range_numbers_are_errors(text: str, expected: str) -> None:
    """Durations must be > 0, counts >= 1, amounts >= 0 and ports 0..65535."""
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[express_relay]\nws_url = "https://x.example/ws"\n', "must be a ws or wss URL"),
        ('[express_relay]\nws_url = "wss://"\n', "must be a ws or wss URL"),
        ('[express_relay]\nhttp_url = "ftp://x.example"\n', "must be a http or https URL"),
        ('[fusion_plus]\nhttp_url = "x.example"\n', "must be a http or https URL"),
    ],
)
def test_bad_urls_are_errors(text: str, expected: str) -> None:
    """A URL needs the right scheme and a host."""
    problems = _problems(text)
    assert len(problems) == 1
    assert expected in problems[0]


def test_url_with_a_password_is_refused_without_quoting_it() -> None:
    """A password in a URL is an error whose message does not repeat the password."""
    (problem,) = _problems('[express_relay]\nws_url = "http://user:hunter2@x.example/ws"\n')
    assert problem.startswith("express_relay.ws_url: must not carry a password")
    assert "hunter2" not in problem


def test_bad_log_level_names_the_allowed_values() -> None:
    """A log level outside the literal set lists the allowed ones."""
    assert _problems('[log]\nlevel = "verbose"\n') == [
        "log.level: must be one of 'debug', 'info', 'warning', 'error'"
    ]


def test_toml_syntax_error_gives_line_and_column() -> None:
    """Invalid TOML is one problem that says where: line and column."""
    (problem,) = _problems("[daemon]\ndry_run = false\nshutdown_grace = = 1\n")
    assert problem.startswith("invalid TOML:")
    assert "line 3" in problem
    assert "column" in problem


def test_cross_checks_are_reported() -> None:
    """Rules across keys: an enabled venue needs chains; a doubled version segment is caught."""
    problems = _problems(
        "[express_relay]\nchains = []\n"
        '[fusion_plus]\nws_url = "wss://api.1inch.com/fusion-plus/ws/v1.2/v1.2"\n'
    )
    assert problems == [
        "express_relay.chains: at least one chain id is needed",
        "fusion_plus.ws_url: the version segment is doubled (/v1.2/v1.2)",
    ]


def test_empty_chains_are_fine_when_the_venue_is_off() -> None:
    """`chains = []` is only a problem for an enabled venue."""
    config = parse_config("[express_relay]\nenabled = false\nchains = []\n")
    assert config.express_relay.chains == ()


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming the path and suggesting `searcherd init`."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert info.value.problems == ["file not found (create one with `searcherd init`)"]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A folder or non-UTF-8 bytes where the file should be is a ConfigError, not a crash."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[daemon]\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(binary)


def test_default_template_parses_to_the_defaults() -> None:
    """The shipped commented template means exactly `Config()`."""
    text = resources.files("searcherd").joinpath("default_config.toml").read_text("utf-8")
    assert parse_config(text) == Config()


def test_repo_searcher_toml_is_valid() -> None:
    """The example `searcher.toml` at the repository root loads."""
    config = load_config(_REPO_ROOT / "searcher.toml")
    assert config.base_dir == _REPO_ROOT


def test_base_dir_is_the_config_folder_and_not_part_of_equality(tmp_path: Path) -> None:
    """load_config records the file's folder; two configs differing only there are equal."""
    path = tmp_path / "conf" / "searcher.toml"
    path.parent.mkdir()
    path.write_text("", encoding="utf-8")
    config = load_config(path)
    assert config.base_dir == path.parent
    assert config == Config()


def test_resolve_path_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    """Relative paths join base_dir; absolute and `~` paths are left as they are."""
    config = attrs.evolve(Config(), base_dir=tmp_path)
    assert config.resolve_path("state/x.db") == tmp_path / "state" / "x.db"
    assert config.resolve_path("/var/lib/x.db") == Path("/var/lib/x.db")
    assert config.resolve_path("~/x.db") == Path("~/x.db").expanduser()


def test_values_from_the_file_are_read() -> None:
    """Valid values land in the right fields; integers are accepted for seconds."""
    config = parse_config(
        "[daemon]\nshutdown_grace = 2\ndry_run = true\n"
        '[express_relay]\nchains = ["solana", "development-solana"]\n'
        "[limits]\nmax_amount = 100000000000000000000000000\n"
        '[health]\nlisten = ""\n'
    )
    assert config.daemon.shutdown_grace == 2.0
    assert isinstance(config.daemon.shutdown_grace, float)
    assert config.daemon.dry_run is True
    assert config.express_relay.chains == ("solana", "development-solana")
    assert config.limits.max_amount == 10**26
    assert config.health.listen == ""


def test_enabled_strategies_keeps_only_enabled_tables() -> None:
    """Strategy tables are kept as read; `enabled_strategies` filters on `enabled = true`."""
    config = parse_config(
        "[strategies.a]\nenabled = true\nmargin = 5\n"
        "[strategies.b]\nenabled = false\n"
        "[strategies.c]\nmargin = 1\n"
    )
    assert set(config.strategies) == {"a", "b", "c"}
    assert config.enabled_strategies() == {"a": {"enabled": True, "margin": 5}}


def test_an_api_key_with_a_line_break_is_refused(tmp_path: Path) -> None:
    """An API key file with a second line would put a line break into an HTTP header: it is
    refused at load, by its reference, without its value."""
    key = tmp_path / "api.key"
    key.write_text("first-line-secret\nsecond-line\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse_config(f'[express_relay]\napi_key = "file:{key}"\n')
    (problem,) = caught.value.problems
    assert problem.startswith("express_relay.api_key: file:")
    assert "one line" in problem
    assert "first-line-secret" not in str(caught.value)
