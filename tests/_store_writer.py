"""Helper process for the crash test in test_store.py: write bids until killed.

Usage: `python _store_writer.py STATE_DB`. After each `flush()` it prints, on its own line, how
many bids it knows are committed. The test kills it with SIGKILL mid-stream and checks the
database still opens and holds at least the last number printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from searcherd._logging import configure_logging
from searcherd.store import BidRecord, StateStore

_PER_FLUSH = 25


async def _write_forever(path: Path) -> None:
    store = StateStore(path, commit_interval=0.001, batch_max=40)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        written = 0
        while True:
            for _ in range(_PER_FLUSH):
                store.add_bid(
                    BidRecord(
                        local_id=f"bid-{written}",
                        venue="express_relay",
                        chain_id="solana",
                        strategy="crash",
                        opportunity_id=f"opp-{written}",
                        amount=10**25 + written,
                        status="pending",
                        created_at=1_700_000_000.0 + written,
                    )
                )
                written += 1
                store.add_status(f"bid-{written - 1}", "sent", at=1.0, source="local")
            await store.flush()
            # Only now are these rows known committed; stdout is the test's only signal.
            print(written, flush=True)


def main() -> None:
    """Write bids to the database named on the command line until the process is killed."""
    configure_logging("warning", "json", sys.stderr)  # keep stdout for the counts
    trio.run(_write_forever, Path(sys.argv[1]))


if __name__ == "__main__":
    main()
