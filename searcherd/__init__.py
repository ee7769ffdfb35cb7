"""searcherd: a searcher bidding daemon for Pyth Express Relay and 1inch Fusion+.

This module is the plugin API: strategy files import what they need from here.
"""

from searcherd.bids import BidIntent, BidUpdate, EvmBid, FillIntent, LimoBid, SwapBid
from searcherd.express_relay.messages import (
    EvmOpportunity,
    LimoOpportunity,
    SwapOpportunity,
)
from searcherd.fusion_plus.orderbook import FusionOrder
from searcherd.strategy import (
    ChainState,
    ExpressRelayView,
    FusionPlusView,
    NoParams,
    Strategy,
    StrategyContext,
)

__version__ = "0.1.0"

__all__ = [
    "BidIntent",
    "BidUpdate",
    "ChainState",
    "EvmBid",
    "EvmOpportunity",
    "ExpressRelayView",
    "FillIntent",
    "FusionOrder",
    "FusionPlusView",
    "LimoBid",
    "LimoOpportunity",
    "NoParams",
    "Strategy",
    "StrategyContext",
    "SwapBid",
    "SwapOpportunity",
    "__version__",
]
