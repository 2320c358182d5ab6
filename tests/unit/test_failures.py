"""One catalogue of failures (domain/failures.py): every reason the code gives a client is in it, and the
tables that used to repeat it are built from it."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2

from domain.errors import FailedPrecondition, InvalidArgument, NotFound
from domain.failures import CATALOGUE, FAILURES, HTTP_STATUS, by_sqlstate
from interceptors.error_mapping import SQLSTATE_TABLE
from envoy_config.local_replies import LOCAL_REPLY_DEFAULT, LOCAL_REPLY_GRPC_CODES
from storage.ledger import LEDGER_FAILURES

ROOT = Path(__file__).resolve().parents[2]


def _reasons_in_code() -> dict[str, str]:
    """Every string given as `reason=` (or as `invalid()`'s fourth argument) in the server's code."""
    found: dict[str, str] = {}
    for folder in ("domain", "storage", "interceptors", "server"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                values = [keyword.value for keyword in node.keywords if keyword.arg == "reason"]
                if getattr(node.func, "id", "") == "invalid" and len(node.args) >= 4:
                    values.append(node.args[3])
                for value in values:
                    if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value:
                        found[value.value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_every_reason_the_code_gives_is_catalogued():
    reasons = _reasons_in_code()
    assert len(reasons) > 30  # the scan sees the code
    assert {reason: where for reason, where in reasons.items() if reason not in FAILURES} == {}


def test_a_reason_outside_the_catalogue_is_a_bug_caught_where_it_is_raised():
    with pytest.raises(ValueError, match="catalogue"):
        NotFound(message="gone", reason="NOT_IN_THE_CATALOGUE")
    assert InvalidArgument(message="no fields").reason == "INVALID_ARGUMENT"


def test_the_ledgers_sqlstates_come_from_the_catalogue():
    assert {sqlstate: failure.reason for sqlstate, failure in LEDGER_FAILURES.items()} == {
        sqlstate: failure.reason for sqlstate, failure in by_sqlstate("EM").items()}
    assert LEDGER_FAILURES["EM001"].error is FailedPrecondition
    for failure in LEDGER_FAILURES.values():
        assert failure.error.code.name == FAILURES[failure.reason].code


def test_postgresqls_sqlstates_come_from_the_catalogue():
    assert SQLSTATE_TABLE["40P01"] == (grpc.StatusCode.ABORTED, "CONCURRENT_UPDATE", FAILURES["CONCURRENT_UPDATE"].message)
    assert not any(sqlstate.startswith("EM") for sqlstate in SQLSTATE_TABLE)
    assert len(SQLSTATE_TABLE) == len(by_sqlstate()) - len(by_sqlstate("EM"))


def test_envoys_own_replies_carry_catalogued_reasons_with_their_codes():
    for http_status, (grpc_code, reason) in {**LOCAL_REPLY_GRPC_CODES, 0: LOCAL_REPLY_DEFAULT}.items():
        assert reason in FAILURES, (http_status, reason)
        assert code_pb2.Code.Name(grpc_code) == FAILURES[reason].code, (http_status, reason)


def test_each_entry_has_a_known_code_and_the_http_status_the_transcoder_gives_it():
    assert {failure.code for failure in CATALOGUE} <= set(HTTP_STATUS)
    assert FAILURES["INSUFFICIENT_FUNDS"].http_status == 400 and FAILURES["TENANT_NOT_FOUND"].http_status == 404
    assert FAILURES["RATE_LIMITED"].http_status == 429 and FAILURES["TOKEN_EXPIRED"].http_status == 401


def test_the_back_office_takes_its_sentences_from_the_generated_catalogue():
    """English is the generated catalogue itself; the Portuguese dictionary (web/src/messages.ts) has a sentence
    for every reason that has advice (`tsc` fails otherwise: it is a Record over the generated FailureReason)."""
    errors_ts = (ROOT / "web" / "src" / "errors.ts").read_text()
    messages_ts = (ROOT / "web" / "src" / "messages.ts").read_text()
    generated = (ROOT / "generated" / "ts" / "failures.ts").read_text()
    assert "INSUFFICIENT_FUNDS:" not in errors_ts
    assert "failures: FAILURE_ADVICE as Record<FailureReason, string>" in messages_ts
    assert "export type FailureReason = keyof typeof FAILURE_ADVICE;" in generated
    for failure in CATALOGUE:
        assert (f"  {failure.reason}:" in generated) == bool(failure.advice), failure.reason
        if failure.advice:
            assert f"      {failure.reason}:" in messages_ts, failure.reason
