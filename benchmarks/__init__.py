"""Benchmarks of searcherd: tick-to-bid latency against the Express Relay simulator, and decoding.

- ``python -m benchmarks.tick_to_bid``: opportunity frame out -> bid frame back, timed by the
  simulator in its own process, for the daemon and for a bare client (the floor).
- ``python -m benchmarks.decode``: frames per second of each wire message decoder.

Nothing here is imported by the daemon; the modules are run as programs.
"""
