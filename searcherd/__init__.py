"""searcherd: a searcher bidding daemon for Pyth Express Relay and 1inch Fusion+."""

__version__ = "0.1.0"
