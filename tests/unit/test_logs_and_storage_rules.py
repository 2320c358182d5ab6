"""Pure rules of logging and storage: redaction, JSON lines, per-tenant object keys."""

from __future__ import annotations

import io
import json
import logging
import random
import uuid
from datetime import datetime, timezone

import pytest

from server.logs import BatchedStreamHandler, JsonFormatter, redact_url
from storage.object_store import tenant_object_key


def test_redact_url_hides_passwords():
    """Connection strings are logged without their password."""
    assert redact_url("postgresql://app:s3cret@127.0.0.1:5432/emoney") == "postgresql://app:***@127.0.0.1:5432/emoney"
    assert redact_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert redact_url("postgresql://app@127.0.0.1/emoney") == "postgresql://app@127.0.0.1/emoney"


def test_json_formatter_writes_one_object_with_extras():
    """Each log record is one JSON object including structured extras."""
    record = logging.LogRecord("emoney.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.method = "/x.Y/Z"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world" and entry["method"] == "/x.Y/Z" and entry["level"] == "INFO"


def test_the_time_of_a_line_is_what_datetime_writes():
    """The formatter's per-second cache writes each time exactly as datetime.isoformat does, to the ms,
    rounding included (10,000 random instants, and the edges of a second)."""
    formatter = JsonFormatter()
    generator = random.Random(14)
    instants = [generator.uniform(0, 4e9) for _ in range(10_000)] + [1e9, 1e9 + 0.9995, 1e9 + 0.9999996, 1e9 - 1e-7]
    for created in instants:
        expected = datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
        assert formatter.utc_time(created) == expected, created


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("emoney.test", level, __file__, 1, message, None, None)


def test_lines_are_written_in_batches_and_a_warning_at_once():
    """INFO lines wait for a flush (or a full batch); a WARNING is written at once, after the lines before it."""
    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, max_lines=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(_record(logging.INFO, "a"))
    handler.handle(_record(logging.INFO, "b"))
    assert stream.getvalue() == ""
    handler.handle(_record(logging.WARNING, "c"))
    assert stream.getvalue() == "a\nb\nc\n"
    for message in "def":
        handler.handle(_record(logging.INFO, message))
    assert stream.getvalue() == "a\nb\nc\nd\ne\nf\n"  # the third line filled the batch
    handler.handle(_record(logging.INFO, "g"))
    handler.flush()
    assert stream.getvalue().endswith("f\ng\n")
    handler.flush()  # nothing waiting: nothing written
    assert stream.getvalue().count("g") == 1


def test_object_keys_live_under_the_tenant_prefix():
    """Every object key is prefixed by its tenant."""
    tenant = uuid.UUID(int=1)
    assert tenant_object_key(tenant, "receipts/p1.json") == f"tenants/{tenant}/receipts/p1.json"


@pytest.mark.parametrize("key", ["", "../other/x", "a/../../b", "a//b", "/abs", "a/./b"])
def test_object_keys_cannot_escape_the_tenant_prefix(key):
    """Keys with empty, `.` or `..` segments are refused."""
    with pytest.raises(ValueError):
        tenant_object_key(uuid.UUID(int=1), key)
