"""Tests for searcherd.cli: init/check, bids/orders, and exit codes.

Most commands run in-process through `main()`; the ones whose promise is about the process
(no traceback, exit status) also run as `python -m searcherd`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from searcherd.cli import main
from searcherd.config import Config, load_config
from searcherd.store import BidRecord, StateStore

if TYPE_CHECKING:
    from collections.abc import Callable

_REPO_ROOT = Path(__file__).resolve().parents[1]
_BIG = 10**30 + 1


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m searcherd *args` to completion (bounded), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "searcherd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def _fill_state_with(config_path: Path, fill: Callable[[StateStore], None]) -> None:
    """Run the store on the config's state path, apply `fill`, flush and stop."""
    config = load_config(config_path)
    store = StateStore(config.resolve_path(config.state.path), commit_interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        fill(store)
        await store.flush()
        nursery.cancel_scope.cancel()


def _some_rows(store: StateStore) -> None:
    """Four bids over two strategies and statuses, and two Fusion+ orders."""
    for n, (strategy, status) in enumerate(
        [("alpha", "won"), ("alpha", "lost"), ("beta", "won"), ("beta", "pending")]
    ):
        store.add_bid(
            BidRecord(
                local_id=f"bid-{n}",
                venue="express_relay",
                chain_id="solana",
                strategy=strategy,
                opportunity_id=None,
                amount=_BIG + n,
                status="pending",
                created_at=100.0 + n,
                detail={"n": n},
            )
        )
        store.add_status(f"bid-{n}", status, at=200.0 + n, source="ws")
    store.upsert_order("0xaa", status="active", at=1.0, src_chain_id=1, dst_chain_id=137)
    store.upsert_order("0xbb", status="filled", at=2.0, ours=True, remaining_maker_amount=0)


@pytest.fixture
async def filled_config(offline_config: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The offline config, its state table holding `_some_rows`; captured output cleared."""
    await _fill_state_with(offline_config, _some_rows)
    capsys.readouterr()  # the store's own log lines are not what the tests read
    return offline_config


# -- init and check ----------------------------------------------------------------------------


def test_init_then_check_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init` writes the template (creating folders) and `check` accepts what it wrote."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "etc" / "searcher.toml"
    assert main(["init", str(target)]) == 0
    template = resources.files("searcherd").joinpath("default_config.toml").read_text("utf-8")
    assert target.read_text(encoding="utf-8") == template
    assert f"wrote {target}" in capsys.readouterr().out
    assert main(["check", "-c", str(target)]) == 0
    assert capsys.readouterr().out.startswith(f"{target}: ok")
    assert main(["init"]) == 0  # the default name, in the current folder
    assert load_config(tmp_path / "searcher.toml") == Config()


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing file is kept (exit 1) unless `--force` is given."""
    target = tmp_path / "searcher.toml"
    target.write_text("# mine\n", encoding="utf-8")
    assert main(["init", str(target)]) == 1
    assert "exists; use --force" in capsys.readouterr().err
    assert target.read_text(encoding="utf-8") == "# mine\n"
    assert main(["init", "--force", str(target)]) == 0
    assert target.read_text(encoding="utf-8") != "# mine\n"


def test_init_into_an_unwritable_place_is_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that cannot be written gives a message and exit 1, not an OSError."""
    (tmp_path / "afile").write_text("", encoding="utf-8")
    assert main(["init", str(tmp_path / "afile" / "searcher.toml")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_check_reports_every_problem_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` on a bad file exits 1 and prints each problem, nothing on stdout."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[daemon]\nshutdown_grace = "5"\n[log]\nlevel = "loud"\n[oops]\n', encoding="utf-8"
    )
    assert main(["check", "-c", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"searcherd: {path}: 3 problems:\n")
    for key in ("daemon.shutdown_grace", "log.level", "oops: unknown key"):
        assert key in err


def test_check_as_a_process_exits_1_without_traceback(tmp_path: Path) -> None:
    """The real command prints the problems to stderr, exit status 1, and no traceback."""
    (tmp_path / "bad.toml").write_text(
        '[daemon]\nshutdown_grace = -1\n[state]\nbatch_max = "x"\n', encoding="utf-8"
    )
    result = _run("check", "-c", "bad.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "daemon.shutdown_grace: must be > 0" in result.stderr
    assert "state.batch_max: expected int, got str" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_missing_and_broken_files_exit_1(tmp_path: Path) -> None:
    """A missing file and a TOML syntax error are both exit 1 with a clear line."""
    missing = _run("check", "-c", "nope.toml", cwd=tmp_path)
    assert missing.returncode == 1
    assert "nope.toml: 1 problem:\n  file not found" in missing.stderr
    (tmp_path / "broken.toml").write_text("[daemon\n", encoding="utf-8")
    broken = _run("check", "-c", "broken.toml", cwd=tmp_path)
    assert broken.returncode == 1
    assert "invalid TOML" in broken.stderr
    assert "line 1" in broken.stderr
    assert "Traceback" not in missing.stderr + broken.stderr


def test_repo_searcher_toml_passes_check(capsys: pytest.CaptureFixture[str]) -> None:
    """The example config shipped at the repository root is valid."""
    assert main(["check", "-c", str(_REPO_ROOT / "searcher.toml")]) == 0
    assert capsys.readouterr().out.startswith(f"{_REPO_ROOT / 'searcher.toml'}: ok")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command, an unknown command or an unknown option is exit 2 (argparse usage)."""
    for argv in ([], ["fly"], ["bids", "--bogus"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# -- bids and orders ---------------------------------------------------------------------------


async def test_bids_lists_the_table_newest_first(
    filled_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bids` prints a header and one row per bid, newest first, with exact amounts."""
    assert main(["bids", "-c", str(filled_config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "local_id",
        "venue",
        "chain_id",
        "strategy",
        "amount",
        "status",
        "server_bid_id",
        "reason",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["bid-3", "bid-2", "bid-1", "bid-0"]
    assert lines[1].split()[4:6] == [str(_BIG + 3), "pending"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ["bid-3", "bid-2", "bid-1", "bid-0"]),
        (["--status", "won"], ["bid-2", "bid-0"]),
        (["--strategy", "alpha"], ["bid-1", "bid-0"]),
        (["--status", "won", "--strategy", "beta"], ["bid-2"]),
        (["--status", "nope"], []),
        (["--limit", "2"], ["bid-3", "bid-2"]),
    ],
)
async def test_bids_filters_as_json(
    filled_config: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    expected: list[str],
) -> None:
    """`--status`, `--strategy` and `--limit` filter; `--json` prints the rows as a JSON list."""
    assert main(["bids", "-c", str(filled_config), "--json", *options]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert [row["local_id"] for row in rows] == expected
    for row in rows:
        n = int(row["local_id"].removeprefix("bid-"))
        assert row["amount"] == str(_BIG + n)
        assert row["detail"] == {"n": n}


async def test_bids_json_keeps_big_integers_in_detail(
    offline_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A detail holding an integer past 64 bits comes out of `--json` exactly."""
    bid = BidRecord("b", "fusion_plus", "1", "s", None, _BIG, "pending", 1.0, detail={"x": _BIG})
    await _fill_state_with(offline_config, lambda store: store.add_bid(bid))
    capsys.readouterr()
    assert main(["bids", "-c", str(offline_config), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["detail"] == {"x": _BIG}


async def test_orders_lists_and_filters(
    filled_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`orders` prints the Fusion+ orders; `--status` filters; `--json` gives every column."""
    assert main(["orders", "-c", str(filled_config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "order_hash"
    assert [line.split()[0] for line in lines[1:]] == ["0xbb", "0xaa"]
    assert main(["orders", "-c", str(filled_config), "--status", "active", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["order_hash"], row["src_chain_id"], row["dst_chain_id"]) == ("0xaa", 1, 137)


def test_bids_and_orders_without_state_yet(
    offline_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the daemon ever ran there is no table: exit 1 with a clear message."""
    for command in ("bids", "orders"):
        assert main([command, "-c", str(offline_config)]) == 1
        assert "no state database here" in capsys.readouterr().err


def test_empty_tables_print_none(offline_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An existing but empty table prints `(none)`, or `[]` with --json, exit 0."""
    trio.run(_fill_state_with, offline_config, lambda store: None)
    capsys.readouterr()
    assert main(["bids", "-c", str(offline_config)]) == 0
    assert capsys.readouterr().out == "(none)\n"
    assert main(["orders", "-c", str(offline_config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_bids_with_a_bad_config_is_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bids` validates the config first and reports its problems."""
    path = tmp_path / "bad.toml"
    path.write_text("[state]\npath = 5\n", encoding="utf-8")
    assert main(["bids", "-c", str(path)]) == 1
    assert "state.path: expected str, got int" in capsys.readouterr().err


# -- run -----------------------------------------------------------------------------------------


def test_run_with_an_unwritable_state_path_exits_1_with_a_message(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """`run` whose state folder cannot be created logs why and exits 1, no traceback."""
    (tmp_path / "afile").write_text("", encoding="utf-8")
    write_config(state={"path": "afile/state.db"})
    result = _run("run", "-c", "searcher.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    assert f"{tmp_path / 'afile' / 'state.db'}: cannot create the state folder" in output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert "daemon_started" not in [r["event"] for r in records]


def test_run_with_a_bad_config_exits_1_without_starting(tmp_path: Path) -> None:
    """`run` refuses an invalid config like `check` does: problems on stderr, exit 1."""
    (tmp_path / "searcher.toml").write_text("[daemon]\nshutdown_grace = 0\n", encoding="utf-8")
    result = _run("run", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "daemon.shutdown_grace: must be > 0" in result.stderr
    assert "Traceback" not in result.stderr
