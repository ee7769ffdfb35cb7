"""End-to-end tests of the example strategies in the repo's `strategies/` folder.

Each strategy file is loaded by the real plugin loader with its table from the repo's
`searcher.toml`, run by the real evaluator, and its intents go through the real venue (risk
gate, builder, signer, state table) to the real simulator, which checks every bid as the server
does. A bid counts only if the simulator accepted it and it reached a final status in the state
table.
"""

from __future__ import annotations

import json
import re
import signal
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import tomli_w
import trio
import trio.testing

from searcherd import cli
from searcherd._secrets import Secret, SecretRef
from searcherd.bids import FINAL_STATUSES, EvmBid, FillIntent, LimoBid, SwapBid
from searcherd.config import (
    Config,
    DaemonConfig,
    EvaluatorConfig,
    FusionPlusConfig,
    LimitsConfig,
    Seconds,
)
from searcherd.evaluator import Evaluator
from searcherd.express_relay.messages import (
    EvmOpportunity,
    LimoOpportunity,
    SwapOpportunity,
    TokensSearcherSpecified,
    TokensUserSpecified,
)
from searcherd.express_relay.venue import ExpressRelayVenue
from searcherd.fusion_plus.simulator import SimulatorConfig as FpSimulatorConfig
from searcherd.fusion_plus.simulator import serve as fp_serve
from searcherd.fusion_plus.venue import FusionPlusVenue
from searcherd.plugins import LoadedStrategies, discover, load_enabled
from searcherd.risk import RiskGate
from searcherd.svm.limo import TAKE_ORDER_DISCRIMINATOR as TAKE_ORDER
from searcherd.svm.limo import decode_order

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest
    from conftest import Child, ErHarness

    from searcherd.bids import BidIntent

REPO = Path(__file__).resolve().parent.parent
STRATEGIES = REPO / "strategies"
SEARCHER_TOML = REPO / "searcher.toml"
EVM_CHAIN = "op_sepolia"
_FAR_FUTURE = 600.0  # seconds of (autojump) trio time a bid gets to reach a final status


def _tables() -> dict[str, dict[str, Any]]:
    """The `[strategies.NAME]` tables of the repo's searcher.toml."""
    with SEARCHER_TOML.open("rb") as f:
        tables: dict[str, dict[str, Any]] = tomllib.load(f)["strategies"]
    return tables


def _config(name: str, **overrides: Any) -> Config:
    """A config enabling only `name`, with its searcher.toml table plus `overrides`."""
    table = {**_tables()[name], **overrides, "enabled": True}
    return Config(daemon=DaemonConfig(strategies_dir=str(STRATEGIES)), strategies={name: table})


class _VenueSink:
    """The evaluator's sink: forwards every intent to the venue started after it."""

    def __init__(self) -> None:
        self.venue: ExpressRelayVenue | None = None
        self.intents: list[BidIntent] = []

    def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
        """Record the intent and hand it to the venue's submitter."""
        assert self.venue is not None
        assert isinstance(bid, SwapBid | LimoBid | EvmBid)
        self.intents.append(bid)
        self.venue.submit(strategy, bid, received_at)


class _Running:
    """One strategy, run by the real evaluator, bidding through the real venue."""

    def __init__(self, er: ErHarness, loaded: LoadedStrategies, sink: _VenueSink) -> None:
        self.er = er
        self.loaded = loaded
        self.sink = sink
        assert sink.venue is not None
        self.venue = sink.venue

    @property
    def strategy(self) -> Any:
        """The strategy instance the evaluator runs."""
        return self.loaded.strategies[0].instance

    async def bids(self) -> list[dict[str, Any]]:
        """The strategy's rows of the state table."""
        rows = await self.er.rows(
            "SELECT local_id, strategy, opportunity_id, server_bid_id, amount, status, reason"
            " FROM bids ORDER BY created_at"
        )
        names = ("local_id", "strategy", "opportunity_id", "server_bid_id", "amount", "status",
                 "reason")  # fmt: skip
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def wait_final(self, count: int) -> list[dict[str, Any]]:
        """Wait until `count` bids are recorded and every one of them is final; return them."""
        with trio.fail_after(_FAR_FUTURE):
            while True:
                rows = await self.bids()
                if len(rows) >= count and all(r["status"] in FINAL_STATUSES for r in rows):
                    return rows
                await trio.sleep(0.1)


async def _run(er: ErHarness, name: str, **overrides: Any) -> _Running:
    """Start the simulator (SVM + EVM chains), the venue and the evaluator running `name`."""
    await er.start(evm_chains=(EVM_CHAIN,), outcomes={"won": 1.0, "lost": 1.0, "failed": 1.0})
    sink = _VenueSink()
    evaluator = Evaluator(EvaluatorConfig(max_opportunity_age=Seconds(5.0)), er.metrics, sink)
    venue = ExpressRelayVenue(
        er.config(),
        store=er.store,
        metrics=er.metrics,
        risk=RiskGate(LimitsConfig()),
        sink=evaluator,
        dry_run=False,
        signer=er.signer,
        max_opportunity_age=5.0,
    )
    sink.venue = venue
    loaded = load_enabled(_config(name, **overrides), express_relay=venue.view)
    assert loaded.names == [name]
    await er.nursery.start(evaluator.run, loaded)
    await er.nursery.start(venue.run)
    with trio.fail_after(120):
        await venue.wait_ready()
    # SVM bids need a blockhash; the first chain update comes with the subscription's first tick.
    await er.wait_until(lambda: venue.view.chain("solana") is not None)
    return _Running(er, loaded, sink)


def _assert_accepted(running: _Running, rows: list[dict[str, Any]], name: str) -> None:
    """Every bid row is the strategy's, accepted by the simulator, final as the simulator says."""
    sim = running.er.sim
    assert sim is not None
    assert not sim.internal_errors
    for row in rows:
        assert row["strategy"] == name
        assert row["server_bid_id"] in sim.bids, row  # accepted: the server gave it an id
        record = sim.bids[row["server_bid_id"]]
        assert record.final_status is not None
        assert row["status"] == record.final_status.type
        assert record.opportunity_id == row["opportunity_id"]


# -- the files themselves -------------------------------------------------------------------------


def test_every_example_loads_with_its_table() -> None:
    """Each example file loads cleanly, defines one strategy, and its searcher.toml table is valid."""
    found = discover(STRATEGIES)
    assert not found.folder_error
    assert not found.failed_files()
    assert not found.problems
    assert sorted(found.by_name()) == ["evm_raw_bid", "fixed_margin", "fusion_threshold",
                                       "limo_taker"]  # fmt: skip
    for result in found.files:
        assert not result.problems
        assert len(result.classes) == 1
        assert result.classes[0].__doc__
    for name in found.by_name():
        assert load_enabled(_config(name)).names == [name]


# -- Express Relay swap: fixed margin -----------------------------------------------------------


async def test_fixed_margin_swap_bids_are_accepted_and_final(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """fixed_margin quotes swap opportunities; the simulator accepts every bid; all end final."""
    running = await _run(er, "fixed_margin")
    assert er.sim is not None
    pushed = [er.sim.push_opportunity(program="swap") for _ in range(12)]
    # Limo and EVM opportunities are not this strategy's business.
    er.sim.push_opportunity(program="limo")
    er.sim.push_opportunity(program="evm")
    strategy = running.strategy
    expected = [o for o in pushed if strategy.quote(o) is not None]
    assert len(expected) >= 6  # the reference table prices most of the simulator's pairs
    rows = await running.wait_final(len(expected))
    await trio.sleep(1.0)  # nothing more comes: skipped quotes stay skipped
    rows = await running.wait_final(len(expected))
    assert len(rows) == len(expected)
    assert {r["opportunity_id"] for r in rows} == {o.opportunity_id for o in expected}
    _assert_accepted(running, rows, "fixed_margin")
    assert {r["status"] for r in rows} <= {"won", "lost", "failed"}
    by_id = {o.opportunity_id: o for o in expected}
    for row in rows:
        assert int(row["amount"]) == strategy.quote(by_id[row["opportunity_id"]])


def _swap(sample: SwapOpportunity, tokens: Any, balance: int) -> SwapOpportunity:
    return attrs.evolve(sample, tokens=tokens, user_mint_user_balance=balance)


async def test_fixed_margin_quotes_the_margin_on_the_right_side(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """Side "user": give fair less the margin (rounded down); side "searcher": ask fair plus the
    margin (rounded up); unpriced pairs and quotes the user cannot pay are skipped."""
    running = await _run(er, "fixed_margin", margin_bps=100)
    assert er.sim is not None
    strategy = running.strategy
    sample = er.sim.push_opportunity(program="swap")
    assert isinstance(sample, SwapOpportunity)
    sol, usdc = ("So11111111111111111111111111111111111111112",
                 "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")  # fmt: skip
    prog = sample.tokens.token_program_user
    # The user pays 1 SOL (10**9 lamports) for USDC at 150 USD/SOL: fair 150 USDC, less 1 %.
    user_side = TokensUserSpecified(usdc, sol, 10**9, 10**9, prog, prog)
    assert strategy.quote(_swap(sample, user_side, 10**9)) == 148_500_000
    assert strategy.quote(_swap(sample, user_side, 10**9 - 1)) is None  # cannot pay
    # The user wants 1 SOL and pays in USDC: fair 150 USDC, plus 1 %, rounded up.
    searcher_side = TokensSearcherSpecified(sol, 10**9, usdc, prog, prog)
    assert strategy.quote(_swap(sample, searcher_side, 10**12)) == 151_500_000
    assert strategy.quote(_swap(sample, searcher_side, 151_499_999)) is None  # cannot pay
    odd = TokensSearcherSpecified(sol, 3, usdc, prog, prog)  # 0.00045 micro-USDC, +1 %: ask 1
    assert strategy.quote(_swap(sample, odd, 10**12)) == 1
    unknown = TokensUserSpecified(usdc, str(sample.user_wallet_address), 10, 10, prog, prog)
    assert strategy.quote(_swap(sample, unknown, 10**12)) is None


# -- Express Relay limo: take orders --------------------------------------------------------------


async def test_limo_taker_bids_with_take_order_and_is_accepted(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """limo_taker prices limo orders, bids with the Limo take_order instructions of our own key,
    and the simulator accepts every bid; all end final."""
    running = await _run(er, "limo_taker", taker=str(er.signer.pubkey()))
    assert er.sim is not None
    pushed = [er.sim.push_opportunity(program="limo") for _ in range(10)]
    er.sim.push_opportunity(program="swap")
    strategy = running.strategy
    expected = [o for o in pushed if strategy.price(o) is not None]
    assert 3 <= len(expected) < len(pushed)  # some orders are worth taking, some are not
    rows = await running.wait_final(len(expected))
    await trio.sleep(1.0)
    rows = await running.wait_final(len(expected))
    assert {r["opportunity_id"] for r in rows} == {o.opportunity_id for o in expected}
    _assert_accepted(running, rows, "limo_taker")
    intents = running.sink.intents
    assert len(intents) == len(expected)
    for intent in intents:
        assert isinstance(intent, LimoBid)
        opp = intent.opportunity
        assert isinstance(opp, LimoOpportunity)
        priced = strategy.price(opp)
        assert priced is not None
        assert intent.amount == priced.bid_lamports <= 10**8
        (take,) = [ix for ix in intent.instructions if bytes(ix.data)[:8] == TAKE_ORDER]
        # Limo's take_order: the taker is our own key, the order account is the permission.
        assert str(take.accounts[0].pubkey) == str(er.signer.pubkey())
        assert str(take.accounts[4].pubkey) == opp.order_address
        order = decode_order(opp.order)
        assert int.from_bytes(bytes(take.data)[8:16], "little") == order.remaining_input_amount


async def test_limo_taker_without_a_taker_takes_the_signing_key_from_the_view(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """With no `taker` configured, limo_taker fills as the venue's signing key (the view gives
    its public half), and the simulator accepts those bids."""
    running = await _run(er, "limo_taker", taker="")
    assert er.sim is not None
    pushed = [er.sim.push_opportunity(program="limo") for _ in range(10)]
    expected = [o for o in pushed if running.strategy.price(o) is not None]
    assert expected
    rows = await running.wait_final(len(expected))
    _assert_accepted(running, rows, "limo_taker")
    for intent in running.sink.intents:
        assert isinstance(intent, LimoBid)
        (take,) = [ix for ix in intent.instructions if bytes(ix.data)[:8] == TAKE_ORDER]
        assert str(take.accounts[0].pubkey) == str(er.signer.pubkey())


# -- Express Relay on EVM: raw bids ---------------------------------------------------------------


async def test_evm_raw_bid_bids_are_accepted_and_final(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """evm_raw_bid answers every EVM opportunity with its permission key and target call; the
    simulator accepts every bid; all end final."""
    running = await _run(er, "evm_raw_bid")
    assert er.sim is not None
    pushed = [er.sim.push_opportunity(program="evm") for _ in range(4)]
    er.sim.push_opportunity(program="swap")
    rows = await running.wait_final(len(pushed))
    await trio.sleep(1.0)
    rows = await running.wait_final(len(pushed))
    assert len(rows) == len(pushed)
    _assert_accepted(running, rows, "evm_raw_bid")
    assert {r["opportunity_id"] for r in rows} == {o.opportunity_id for o in pushed}
    assert all(int(r["amount"]) == 10**16 for r in rows)
    for intent in running.sink.intents:
        assert isinstance(intent, EvmBid)
        opp = intent.opportunity
        assert isinstance(opp, EvmOpportunity)
        assert intent.permission_key == opp.permission_key
        assert intent.target_contract == opp.target_contract
        assert intent.target_calldata == opp.target_calldata
    for record in er.sim.bids.values():
        assert record.amount == 10**16


async def test_evm_raw_bid_watches_only_its_chains(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """An EVM opportunity of a chain not in `chains` gets no bid; one with a call value above
    `max_call_value` neither."""
    running = await _run(er, "evm_raw_bid", chains=["base_sepolia"])
    assert er.sim is not None
    er.sim.push_opportunity(program="evm")
    await trio.sleep(2.0)
    assert running.sink.intents == []
    sample = er.sim.push_opportunity(program="evm")
    assert isinstance(sample, EvmOpportunity)
    strategy = running.strategy
    assert strategy.on_opportunity(sample) is None
    strategy.params = attrs.evolve(strategy.params, chains=(EVM_CHAIN,))
    assert isinstance(strategy.on_opportunity(sample), EvmBid)
    costly = attrs.evolve(sample, target_call_value=1)
    assert strategy.on_opportunity(costly) is None


# -- Fusion+: fill when the auction price crosses the threshold -----------------------------------

FP_KEY = "sim-key-0123456789"
RESOLVER = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"
T0 = 1_767_225_600


def _wall() -> float:
    """Unix seconds that move with the (autojump) trio clock."""
    return T0 + trio.current_time()


class _FusionSink:
    """The evaluator's sink: forwards every fill intent to the Fusion+ venue."""

    def __init__(self) -> None:
        self.venue: FusionPlusVenue | None = None
        self.intents: list[BidIntent] = []

    def submit(self, strategy: str, bid: BidIntent, received_at: float) -> None:
        """Record the intent and hand it to the venue."""
        assert self.venue is not None
        self.intents.append(bid)
        self.venue.submit(strategy, bid, received_at)


async def test_fusion_threshold_records_a_fill_intent_once_the_price_crosses(
    er: ErHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """No fill intent while the required taking amount is above the threshold; one (and only
    one) once it has fallen below, recorded in the state table and handed to the executor."""
    nursery, store = er.nursery, er.store
    await nursery.start(store.run)
    sim = await nursery.start(fp_serve, FpSimulatorConfig(api_keys=(FP_KEY,), clock=_wall))
    sink = _FusionSink()
    evaluator = Evaluator(EvaluatorConfig(max_opportunity_age=Seconds(5.0)), er.metrics, sink)
    venue = FusionPlusVenue(
        FusionPlusConfig(
            ws_url=sim.ws_url, http_url=sim.http_url, resolver_address=RESOLVER,
            api_key=Secret(SecretRef("env", "FUSION_KEY"), value=FP_KEY),
        ),
        store=store, metrics=er.metrics, risk=RiskGate(LimitsConfig()), sink=evaluator,
        dry_run=False, clock=_wall,
    )  # fmt: skip
    sink.venue = venue
    config = _config("fusion_threshold", threshold_bps=9940, resolver_address=RESOLVER)
    loaded = load_enabled(config, fusion_plus=venue.view)
    strategy = loaded.strategies[0].instance
    strategy.clock = _wall  # type: ignore[attr-defined]  # FusionThreshold's time seam
    await nursery.start(evaluator.run, loaded)
    await nursery.start(venue.run)
    with trio.fail_after(60):
        await venue.wait_ready()

    async def event_seen(action: Any) -> None:
        before = evaluator.status()["fusion_threshold"]["evaluated"]
        action()
        await er.wait_until(lambda: evaluator.status()["fusion_threshold"]["evaluated"] > before)

    # 100 made for 99 taken, rate bump 0.5 % falling to 0.3 % after 60 s: the required taking
    # amount starts at 9949.5 bps of the making amount and crosses 9940 bps ~29 s in. (No state
    # table query until the end: waiting on its thread would let the clock jump.)
    start = sim.now()
    order = sim.create_order(auction_start=start)
    await er.wait_until(lambda: evaluator.status()["fusion_threshold"]["evaluated"] >= 1)
    assert sink.intents == []
    await trio.sleep(start + 20 - _wall())
    await event_seen(lambda: sim.change_balance(order.order_hash, 10**9))
    assert sink.intents == []  # 9942.9 bps: not yet
    await trio.sleep(start + 40 - _wall())
    await event_seen(lambda: sim.change_balance(order.order_hash, 10**9 + 1))
    (intent,) = sink.intents
    assert isinstance(intent, FillIntent)
    assert (intent.order_hash, intent.making_amount) == (order.order_hash, 100_000_000)
    assert intent.taking_amount is not None
    assert intent.taking_amount * 10_000 <= 100_000_000 * 9940
    # Once per order: later events of the same order decide nothing new.
    await event_seen(lambda: sim.change_balance(order.order_hash, 10**9 + 2))
    assert len(sink.intents) == 1
    # An order whose auction is already below the threshold is decided on its first event.
    late = sim.create_order(auction_start=sim.now() - 100)
    await er.wait_until(lambda: len(sink.intents) == 2)
    await er.wait_until(lambda: len(venue.executor.executed) == 2)  # type: ignore[attr-defined]
    # Both are recorded in the state table, handed to the executor.
    rows = await er.rows(
        "SELECT order_hash, strategy, amount, detail FROM fill_intents ORDER BY id"
    )
    assert [(r[0], r[1], int(r[2])) for r in rows] == [
        (order.order_hash, "fusion_threshold", 100_000_000),
        (late.order_hash, "fusion_threshold", 100_000_000),
    ]
    details = [orjson.loads(r[3]) for r in rows]
    assert [d["status"] for d in details] == ["submitted", "submitted"]
    assert details[0]["taking_amount"] == intent.taking_amount


# -- the configs that enable them ------------------------------------------------------------------

_TOML_LINE = re.compile(r'^# (?=\[strategies\.|[a-z_]+ = |"[^"]+" = )')


def test_repo_searcher_toml_enables_every_example_and_passes_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`searcherd check` accepts searcher.toml, which enables all four examples and Fusion+."""
    assert cli.main(["check", "-c", str(SEARCHER_TOML)]) == 0
    assert "ok (4 strategies enabled)" in capsys.readouterr().out
    with SEARCHER_TOML.open("rb") as f:
        raw = tomllib.load(f)
    assert all(table["enabled"] for table in raw["strategies"].values())
    assert raw["fusion_plus"]["enabled"] is True
    assert EVM_CHAIN in raw["express_relay"]["chains"]


def test_init_template_passes_check_and_its_example_tables_are_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `searcherd init` writes passes `check` as is (the example tables are commented out),
    and with those tables uncommented and pointed at the examples it passes too, every table
    the same as in searcher.toml."""
    target = tmp_path / "searcher.toml"
    assert cli.main(["init", str(target)]) == 0
    assert cli.main(["check", "-c", str(target)]) == 0
    assert "ok (0 strategies enabled)" in capsys.readouterr().out
    head, marker, tail = target.read_text(encoding="utf-8").partition("# One table per strategy")
    assert marker
    text = head + marker + "\n".join(_TOML_LINE.sub("", line) for line in tail.splitlines()) + "\n"
    text = text.replace('strategies_dir = "strategies"', f'strategies_dir = "{STRATEGIES}"')
    target.write_text(text, encoding="utf-8")
    assert cli.main(["check", "-c", str(target)]) == 0
    assert "ok (4 strategies enabled)" in capsys.readouterr().out
    assert tomllib.loads(text)["strategies"] == _tables()


# -- the daemon itself -------------------------------------------------------------------------------


def test_run_simulate_with_the_repo_config_bids_and_records_final_statuses(
    tmp_path: Path, spawn: Callable[..., Child], capsys: pytest.CaptureFixture[str]
) -> None:
    """`searcherd run --simulate` on (a copy of) searcher.toml bids at once; after SIGTERM,
    `searcherd bids --json` shows the examples' bids, accepted, with final statuses."""
    with SEARCHER_TOML.open("rb") as f:
        raw = tomllib.load(f)
    raw["daemon"].update(strategies_dir=str(STRATEGIES), shutdown_grace=2.0)
    raw["state"]["path"] = str(tmp_path / "state" / "searcherd.db")
    raw["health"]["listen"] = ""
    raw["log"].update(format="json", level="debug")  # for `bid_final`, a debug line
    config = tmp_path / "searcher.toml"
    config.write_text(tomli_w.dumps(raw), encoding="utf-8")
    child = spawn("-m", "searcherd", "run", "--simulate", "-c", str(config))
    child.wait_for_event("daemon_ready")
    finals = 0
    while finals < 5:  # bounded: each wait fails the test after its own deadline
        record = child.wait_for_event("bid_final")
        finals += 1
        assert record["status"] not in ("invalid", "rejected", "blocked"), record
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 0
    assert "daemon_stopped" in child.events()
    assert cli.main(["bids", "--json", "-c", str(config)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows
    assert {r["strategy"] for r in rows} <= {"fixed_margin", "limo_taker", "evm_raw_bid"}
    final = [r for r in rows if r["status"] in FINAL_STATUSES]
    assert len(final) >= 5
    assert all(r["server_bid_id"] for r in rows)  # every bid was accepted by the simulator
    assert all(r["status"] in {"won", "lost", "failed", "expired"} for r in final)
