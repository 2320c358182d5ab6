"""Pure rules of logging and storage: redaction, JSON lines, per-tenant object keys."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from server.logs import JsonFormatter, redact_url
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


def test_object_keys_live_under_the_tenant_prefix():
    """Every object key is prefixed by its tenant."""
    tenant = uuid.UUID(int=1)
    assert tenant_object_key(tenant, "receipts/p1.json") == f"tenants/{tenant}/receipts/p1.json"


@pytest.mark.parametrize("key", ["", "../other/x", "a/../../b", "a//b", "/abs", "a/./b"])
def test_object_keys_cannot_escape_the_tenant_prefix(key):
    """Keys with empty, `.` or `..` segments are refused."""
    with pytest.raises(ValueError):
        tenant_object_key(uuid.UUID(int=1), key)
