"""Express Relay SVM bids: keys, program constants, instructions, transactions and rules.

Strategies use the key-less pieces (`LimoBidParams`, `SwapBidParams`, `SwapQuote`,
`decode_order`, `take_order_instructions`); the submitter, which holds the `SearcherKey`, uses
`build_limo_bid_transaction` / `build_swap_bid_transaction`; the simulator uses
`check_bid_transaction` to reject bids the way the server does.
"""

from searcherd.svm.bids import (
    LimoBidParams,
    SwapBidParams,
    build_limo_bid_transaction,
    build_swap_bid_transaction,
    onchain_bid_payload,
    swap_bid_payload,
)
from searcherd.svm.keys import (
    KeyLoadError,
    SearcherKey,
    load_searcher_key,
    throwaway_keypair,
)
from searcherd.svm.limo import (
    LimoOrder,
    OrderDecodeError,
    OrderStatus,
    decode_order,
    encode_order,
    limo_router,
    take_order_instructions,
)
from searcherd.svm.metadata import (
    ExpressRelayConstants,
    ExpressRelayConstantsProvider,
    MetadataError,
)
from searcherd.svm.rules import (
    BidRuleError,
    CheckedBid,
    check_bid_transaction,
)
from searcherd.svm.swap import QuoteError, SwapQuote
from searcherd.svm.transaction import (
    decode_transaction,
    encode_transaction,
)

__all__ = [
    "BidRuleError",
    "CheckedBid",
    "ExpressRelayConstants",
    "ExpressRelayConstantsProvider",
    "KeyLoadError",
    "LimoBidParams",
    "LimoOrder",
    "MetadataError",
    "OrderDecodeError",
    "OrderStatus",
    "QuoteError",
    "SearcherKey",
    "SwapBidParams",
    "SwapQuote",
    "build_limo_bid_transaction",
    "build_swap_bid_transaction",
    "check_bid_transaction",
    "decode_order",
    "decode_transaction",
    "encode_order",
    "encode_transaction",
    "limo_router",
    "load_searcher_key",
    "onchain_bid_payload",
    "swap_bid_payload",
    "take_order_instructions",
    "throwaway_keypair",
]
