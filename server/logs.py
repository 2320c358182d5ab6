"""Structured JSON logs: one object per line, with the call's request id.

Secrets never reach the log: settings that hold them are `repr=False`, and
connection strings are logged only after `redact_url`.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import datetime, timezone
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from interceptors.call_state import current_request_id

_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


# One encoder for every line: json.dumps(..., default=str) would build a new one per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def utc_time(self, created: float) -> str:
        """`created` as ISO 8601 UTC to the millisecond, as datetime.isoformat(timespec="milliseconds")
        writes it; the date and time of day are formatted once per second (a server logs every call)."""
        fraction, whole = math.modf(created)  # rounded the way datetime.fromtimestamp rounds
        seconds, microseconds = divmod(int(whole) * 1_000_000 + round(fraction * 1_000_000), 1_000_000)
        second, text = self._second
        if second != seconds:
            text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (seconds, text)
        return f"{text}.{microseconds // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


class BatchedStreamHandler(logging.StreamHandler):
    """A stream handler that writes its lines in batches instead of one write per line.

    Why: a server logs one access line per call, and under load one write system call per line cost
    more than the line itself (a write releases the GIL, which gRPC's poller thread is waiting for;
    measured in a gRPC server pinned to one core: 135 µs of CPU per call with a write per line). Lines
    are written when `flush()` is called — every `FLUSH_INTERVAL_S` by the server (server/__main__.py),
    and by `logging.shutdown()` at exit — when `max_lines` are waiting, and at once for a WARNING or
    worse together with everything before it. A process killed outright (SIGKILL) loses at most the
    last interval's INFO lines; a warning or an error is never held back."""

    def __init__(self, stream: TextIO, max_lines: int = 256) -> None:
        super().__init__(stream)
        self._max_lines = max_lines
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            self._lines.append(self.format(record))
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING or len(self._lines) >= self._max_lines:
            self._write()

    def flush(self) -> None:
        with self.lock:
            self._write()

    def _write(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        self._lines.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the stream is gone (closed at exit, a broken pipe): nowhere to log
            pass


# How often the server writes the log lines gathered since the last time (BatchedStreamHandler).
FLUSH_INTERVAL_S = 0.1


def configure_logging(level: str) -> logging.Handler:
    """JSON lines on stderr, written in batches; the handler, for the server to flush regularly."""
    # What no line shows is not gathered (the logging HOWTO's "Optimization"): the caller's file and
    # line (a walk up the stack per record), and thread and process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def redact_url(url: str) -> str:
    """Drop the password from a connection URL before it is logged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # The hosts as written: a libpq multi-host URL (h1:p1,h2:p2) has no single hostname and port.
    hosts = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + hosts, parts.path, parts.query, parts.fragment))
