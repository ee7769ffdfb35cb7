"""The benchmark's daemon configuration: one strategy bidding on every swap, against the simulator.

The file is a normal ``searcher.toml``: Express Relay pointed at the simulator (its URLs and its
deployment's program id and relayer accounts, so no Solana RPC is needed), Fusion+ off, no
health listener, the state table in the run's temporary folder, logs at info level, and a risk
gate and inbox wide enough that nothing the benchmark offers is dropped or blocked (a dropped
opportunity would show up as a missing bid, not as latency). No signing key: the daemon signs
with a throwaway key, as the floor client does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import tomli_w

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["STRATEGIES_DIR", "STRATEGY_NAME", "daemon_config", "write_daemon_config"]

STRATEGIES_DIR: Final = Path(__file__).resolve().parent / "strategies"
STRATEGY_NAME: Final = "bench_swap"


def daemon_config(
    state_dir: Path,
    ws_url: str,
    http_url: str,
    deployment: Mapping[str, str],
    *,
    burst: int,
    log_level: str = "info",
) -> dict[str, Any]:
    """The config tables of a benchmark daemon run (see the module docstring).

    ``deployment`` holds the simulator's ``program_id``, ``relayer_signer`` and
    ``fee_receiver_relayer``.
    """
    return {
        "daemon": {"strategies_dir": str(STRATEGIES_DIR), "shutdown_grace": 2.0},
        "log": {"level": log_level, "format": "json"},
        "state": {"path": str(state_dir / "searcherd.db")},
        "health": {"listen": ""},
        "limits": {"max_in_flight": 10_000_000, "max_bids_per_second": 10_000_000},
        "evaluator": {
            # A whole burst fits in the inbox; the default (64, drop oldest) would drop most of it.
            "inbox_size": max(64, 2 * burst),
            "max_opportunity_age": 10.0,
        },
        "express_relay": {
            "enabled": True,
            "ws_url": ws_url,
            "http_url": http_url,
            "chains": ["solana"],
            "program_id": deployment["program_id"],
            "relayer_signer": deployment["relayer_signer"],
            "fee_receiver_relayer": deployment["fee_receiver_relayer"],
            # The simulator keeps swap quotes for 5 s in benchmark mode; match it so the daemon
            # does not discard the tail of a burst as expired.
            "swap_auction_window": 5.0,
        },
        "fusion_plus": {"enabled": False},
        "strategies": {STRATEGY_NAME: {"enabled": True}},
    }


def write_daemon_config(
    folder: Path,
    ws_url: str,
    http_url: str,
    deployment: Mapping[str, str],
    *,
    burst: int,
    log_level: str = "info",
) -> Path:
    """Write ``folder/searcher.toml`` for a benchmark run and return its path."""
    state = folder / "state"
    state.mkdir(parents=True, exist_ok=True)
    path = folder / "searcher.toml"
    tables = daemon_config(state, ws_url, http_url, deployment, burst=burst, log_level=log_level)
    path.write_text(tomli_w.dumps(tables), encoding="utf-8")
    return path
