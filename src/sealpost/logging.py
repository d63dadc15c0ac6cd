"""Structured logging (structlog) for every role: key=value on a terminal, JSON in production.

``SEALPOST_LOG_FORMAT=json`` writes one JSON object per line on stderr.  Lines about one
communication carry its ``communication_id`` (and ``tenant_id``): the code that handles a
communication binds them in structlog's context variables (``bound_contextvars``) for the
time it works on it, so every line logged meanwhile, at any depth, names it.  Standard
library loggers (aiosmtpd, asyncio, SQLAlchemy) go through the same renderer, at WARNING and
above only: their lower levels carry URLs, SMTP commands and credentials.
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


_LIBRARIES = ("httpx", "httpcore", "mail.log", "aiosmtpd", "botocore", "boto3", "urllib3")
"""Loggers kept at WARNING whatever ``SEALPOST_LOG_LEVEL`` says (see below)."""


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
        # libraries speak at WARNING, as on a terminal (Python's last-resort handler): their
        # INFO and DEBUG lines carry what must not reach a log (httpx: a gateway URL with the
        # SMS text and one-time code, an api_key or user:password; aiosmtpd's mail.log: every
        # SMTP command, AUTH LOGIN's base64 credentials at DEBUG) and name no communication
        root.setLevel(max(numeric, logging.WARNING))
        for name in _LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
