"""structlog setup: JSON lines off a TTY (journald keeps them), readable console on one.

Context such as venue, strategy and opportunity id is bound with structlog's contextvars
(`bound_contextvars`), and a bid's lines carry its ids (`bid`, `server_bid_id`), so at debug
level one `jq 'select(.bid==...)'` follows one bid from opportunity to final status (at info
level a bid has no lines of its own: searcherd._bid_summary). Tracebacks are rendered without
local variables: the submitter holds a signing key and a `show_locals` traceback would print it.
"""

from __future__ import annotations

import json
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
    # default=str: paths and enums must never break a log line.
    try:
        return orjson.dumps(obj, default=str)
    except orjson.JSONEncodeError:
        # orjson stops at 64-bit integers and token amounts do not; the stdlib writes any int.
        return json.dumps(obj, default=str, separators=(",", ":")).encode()


def _json_text(obj: Any, **_: Any) -> str:
    return _orjson_dumps(obj).decode()


def _exception_renderer() -> structlog.processors.ExceptionRenderer:
    """Tracebacks as structured data, without local variables (they may hold a key)."""
    return structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, cache: bool = True
) -> None:
    """Configure structlog (and the stdlib loggers of our libraries) for the daemon.

    `fmt` is "json", "console" or "auto" (console when `stream` is a TTY). `cache=False` lets a
    later call reconfigure loggers already handed out (tests).
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
        # plain_traceback: with `rich` installed the default would print local variables.
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        logger_factory: Any = structlog.PrintLoggerFactory(out)
        final = [*shared, structlog.dev.set_exc_info, renderer]
    else:
        if hasattr(out, "buffer"):  # a real file: orjson's bytes go straight to it
            renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
            logger_factory = structlog.BytesLoggerFactory(out.buffer)
        else:  # a text-only stream (tests)
            renderer = structlog.processors.JSONRenderer(serializer=_json_text)
            logger_factory = structlog.PrintLoggerFactory(out)
        final = [*shared, _exception_renderer(), renderer]
    structlog.configure(
        processors=final,
        # A filtering logger makes a disabled level cost one attribute lookup and a return.
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=cache,
    )
    # trio-websocket, hypercorn and httpx log through the stdlib; keep them quiet and in the
    # same format.
    foreign: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if use_console:
        foreign.append(
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        )
    else:
        foreign += [_exception_renderer(), structlog.processors.JSONRenderer(_json_text)]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=foreign)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
