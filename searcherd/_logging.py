"""structlog setup: JSON lines off a TTY (journald keeps them), readable console on one.

Context such as venue, chain, strategy, opportunity id and bid id is bound with structlog's
contextvars (`bound_contextvars`), so one `grep bid_id=...` or `jq 'select(.bid_id==...)'`
follows one bid from opportunity to final status. Tracebacks are rendered without local
variables: the submitter holds a signing key and a `show_locals` traceback would print it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog

__all__ = ["configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _orjson_dumps(obj: Any, **_: Any) -> bytes:
    # default=str: ints of any size, paths and enums must never break a log line.
    return orjson.dumps(obj, default=str)


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, cache: bool = True
) -> None:
    """Configure structlog (and the stdlib loggers of our libraries) for the daemon.

    `fmt` is "json", "console" or "auto" (console when `stream` is a TTY). `cache=False` lets a
    later call reconfigure loggers already handed out (tests, SIGHUP reload of `[log]`).
    """
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        logger_factory: Any = structlog.PrintLoggerFactory(out)
        final = [*shared, structlog.dev.set_exc_info, renderer]
    else:
        if hasattr(out, "buffer"):  # a real file: orjson's bytes go straight to it
            renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
            logger_factory = structlog.BytesLoggerFactory(out.buffer)
        else:  # a text-only stream (tests)
            renderer = structlog.processors.JSONRenderer(
                serializer=lambda obj, **_: _orjson_dumps(obj).decode()
            )
            logger_factory = structlog.PrintLoggerFactory(out)
        final = [
            *shared,
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            renderer,
        ]
    structlog.configure(
        processors=final,
        # A filtering logger makes a disabled level cost one attribute lookup and a return.
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=cache,
    )
    # trio-websocket, hypercorn and httpx log through the stdlib; keep them quiet and in the
    # same format.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=False)
                if use_console
                else structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
