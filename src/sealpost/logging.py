"""Structured logging (structlog) for every role: key=value on a terminal, JSON in production.

``SEALPOST_LOG_FORMAT=json`` writes one JSON object per line on stderr.  Lines about one
communication carry its ``communication_id`` (and ``tenant_id``): the code that handles a
communication binds them in structlog's context variables (``bound_contextvars``) for the
time it works on it, so every line logged meanwhile, at any depth, names it.  Standard
library loggers (aiosmtpd, asyncio, SQLAlchemy) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys

import structlog

SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*SHARED, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    if fmt == "json":  # the standard library's lines too: every stderr line is JSON
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[*SHARED, structlog.stdlib.add_logger_name],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            )
        )
        root = logging.getLogger()
        root.handlers = [handler]
        root.setLevel(numeric)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
