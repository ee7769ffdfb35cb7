"""Start the bundled venue simulators on loopback: for `run --simulate` and `searcherd simulate`.

Both simulators are real servers speaking the venue protocols (WebSocket + HTTP), so the daemon
runs exactly the code it runs in production, offline. For `run --simulate` the config's venue
endpoints, API keys and relayer accounts are replaced by the simulators' own.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import attrs
import structlog
import trio

from searcherd._secrets import Secret, SecretRef
from searcherd.express_relay import simulator as er_sim
from searcherd.fusion_plus import simulator as fp_sim

if TYPE_CHECKING:
    from searcherd.config import Config

__all__ = ["run_simulators", "start_simulators"]

_log = structlog.get_logger(__name__)


def _sim_key(name: str) -> tuple[str, Secret]:
    value = f"sim-{secrets.token_hex(8)}"
    return value, Secret(SecretRef("env", name), value)


async def start_simulators(
    nursery: trio.Nursery, config: Config, *, opportunity_interval: float = 0.5
) -> Config:
    """Start a simulator for every enabled venue; return `config` pointed at them."""
    if config.express_relay.enabled:
        er = config.express_relay
        key, secret = _sim_key("SIMULATED_EXPRESS_RELAY_KEY")
        sim = await nursery.start(
            er_sim.serve,
            er_sim.SimulatorConfig(
                svm_chains=tuple(c for c in er.chains if not c.startswith("op_")),
                evm_chains=tuple(c for c in er.chains if c.startswith("op_")),
                api_keys=(key,),
                opportunity_interval=opportunity_interval,
                seed=secrets.randbits(32),
            ),
        )
        config = attrs.evolve(
            config,
            express_relay=attrs.evolve(
                er, ws_url=sim.ws_url, http_url=sim.http_url, api_key=secret,
                relayer_signer=str(sim.relayer_signer),
                fee_receiver_relayer=str(sim.fee_receiver_relayer), solana_rpc_url="",
            ),
        )  # fmt: skip
        _log.info("simulator_started", venue="express_relay", ws_url=sim.ws_url,
                  http_url=sim.http_url)  # fmt: skip
    if config.fusion_plus.enabled:
        fp = config.fusion_plus
        key, secret = _sim_key("SIMULATED_FUSION_PLUS_KEY")
        sim_fp = await nursery.start(
            fp_sim.serve,
            fp_sim.SimulatorConfig(
                api_keys=(key,),
                resolver_address=fp.resolver_address or fp_sim.DEFAULT_RESOLVER,
                flow_interval=max(opportunity_interval * 4, 1.0),
                seed=secrets.randbits(32),
            ),
        )
        config = attrs.evolve(
            config,
            fusion_plus=attrs.evolve(
                fp, ws_url=sim_fp.ws_url, http_url=sim_fp.http_url, api_key=secret,
                resolver_address=fp.resolver_address or fp_sim.DEFAULT_RESOLVER,
            ),
        )  # fmt: skip
        _log.info("simulator_started", venue="fusion_plus", ws_url=sim_fp.ws_url,
                  http_url=sim_fp.http_url)  # fmt: skip
    return config


def _key(secret: Secret | None) -> str:
    return "" if secret is None else secret.reveal()


async def run_simulators(config: Config) -> None:
    """`searcherd simulate`: run the simulators alone and print how to connect, until stopped."""
    async with trio.open_nursery() as nursery:
        simulated = await start_simulators(nursery, config)
        # A config snippet to paste: the simulators' endpoints and accounts. The keys are the
        # simulators' own throwaway keys for this run, not anyone's secret.
        er, fp = simulated.express_relay, simulated.fusion_plus
        if er.enabled:
            print(f"[express_relay]\nws_url = \"{er.ws_url}\"\nhttp_url = \"{er.http_url}\"\n"
                  f"relayer_signer = \"{er.relayer_signer}\"\n"
                  f"fee_receiver_relayer = \"{er.fee_receiver_relayer}\"\n"
                  f"api_key = \"env:SIMULATED_EXPRESS_RELAY_KEY\"\n"
                  f"# export SIMULATED_EXPRESS_RELAY_KEY={_key(er.api_key)}", flush=True)  # fmt: skip
        if fp.enabled:
            print(f"[fusion_plus]\nws_url = \"{fp.ws_url}\"\nhttp_url = \"{fp.http_url}\"\n"
                  f"resolver_address = \"{fp.resolver_address}\"\n"
                  f"api_key = \"env:SIMULATED_FUSION_PLUS_KEY\"\n"
                  f"# export SIMULATED_FUSION_PLUS_KEY={_key(fp.api_key)}", flush=True)  # fmt: skip
        await trio.sleep_forever()
