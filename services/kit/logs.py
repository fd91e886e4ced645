"""Structured JSON logs that carry the current OpenTelemetry trace and span ids.

One line per record, so that log shippers need no parsing rules; ``extra={"fields": {...}}``
adds structured fields to a record.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object, with trace context when a span is active."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(service: str, level: str = "INFO", stream=None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Chatty libraries stay at WARNING unless asked otherwise.
    for name in ("alembic", "nats", "sqlalchemy.engine", "uvicorn.access"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
