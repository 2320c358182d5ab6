"""Statements people can keep (issue 15, item 3): a period of an account exported as CSV or PDF in the background,
in the tenant's language and time zone, downloaded through a pre-signed link; a closed period exports to the
same bytes every time; bad requests are refused clearly."""

from __future__ import annotations

import csv
import json
import hashlib
import io
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import grpc
import pytest
import requests
from google.protobuf import timestamp_pb2

from emoney.accounts.v1 import accounts_pb2
from emoney.payments.v1 import payments_pb2
from tests.fixtures.identity import bearer, json_get, json_post
from tests.fixtures.ledger import accounts_stub, new_customer, payments_stub, request_id

EXPORT_BOUND_S = 60.0


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _export(channel, holder, start, end, document_format, language="") -> accounts_pb2.StatementExport:
    return accounts_stub(channel).ExportStatement(accounts_pb2.ExportStatementRequest(
        account=holder.account, start_time=_stamp(start), end_time=_stamp(end), format=document_format, language=language,
    ), metadata=bearer(holder.token), timeout=10).statement_export


def _finished(channel, holder, name: str) -> accounts_pb2.StatementExport:
    deadline = time.monotonic() + EXPORT_BOUND_S
    while True:
        export = accounts_stub(channel).GetStatementExport(
            accounts_pb2.GetStatementExportRequest(name=name), metadata=bearer(holder.token), timeout=10).statement_export
        if export.state in (accounts_pb2.STATEMENT_EXPORT_STATE_SUCCEEDED, accounts_pb2.STATEMENT_EXPORT_STATE_FAILED):
            return export
        assert time.monotonic() < deadline, f"export still {export.state} after {EXPORT_BOUND_S} s"
        time.sleep(0.2)


def _download(export: accounts_pb2.StatementExport) -> bytes:
    response = requests.get(export.download_url, timeout=10)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == export.sha256_hex and len(response.content) == export.size_bytes
    return response.content


def _pay(channel, payer, payee, amount_minor: int, description: str = "") -> None:
    payments_stub(channel).CreateTransfer(payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=payer.account, to_account=payee.account, amount_minor=amount_minor,
        currency="EUR", description=description), metadata=bearer(payer.token), timeout=10)


def test_a_csv_statement_lists_the_periods_entries_with_running_balances_in_the_tenants_language(stack, channel):
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    ana, bruno = new_customer(stack, channel, funded_minor=10_000), new_customer(stack, channel)
    _pay(channel, ana, bruno, 1_250, "rent, March")
    _pay(channel, ana, bruno, 99)
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    requested = _export(channel, ana, start, end, accounts_pb2.STATEMENT_FORMAT_CSV)
    assert requested.state == accounts_pb2.STATEMENT_EXPORT_STATE_PENDING and requested.entries_total == 3
    assert (requested.language, requested.time_zone) == ("en", "UTC")
    export = _finished(channel, ana, requested.name)
    assert export.state == accounts_pb2.STATEMENT_EXPORT_STATE_SUCCEEDED and export.entries_done == 3, export.error
    text = _download(export).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["Date", "Payment", "Kind", "Description"]
    assert [(row[2], row[3], row[4], row[5], row[7], row[8]) for row in rows[1:]] == [
        ("Top-up (cash in)", "", "100.00", "100.00", "10000", "10000"),
        ("Transfer between people", "rent, March", "-12.50", "87.50", "-1250", "8750"),
        ("Transfer between people", "", "-0.99", "86.51", "-99", "8651"),
    ]


def test_a_closed_period_exports_to_the_same_bytes_and_speaks_portuguese_when_asked(stack, channel):
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    ana, bruno = new_customer(stack, channel, funded_minor=10_000), new_customer(stack, channel)
    _pay(channel, ana, bruno, 1_234, "Aluguel — março")
    end = datetime.now(timezone.utc) + timedelta(milliseconds=200)
    time.sleep(0.5)  # the period is over: nothing can join it any more
    first, second = (_finished(channel, ana, _export(channel, ana, start, end, accounts_pb2.STATEMENT_FORMAT_PDF, "pt-BR").name)
                     for _ in range(2))
    assert first.name != second.name and first.sha256_hex == second.sha256_hex
    assert _download(first).startswith(b"%PDF-")
    export = _finished(channel, ana, _export(channel, ana, start, end, accounts_pb2.STATEMENT_FORMAT_CSV, "pt-BR").name)
    rows = list(csv.reader(io.StringIO(_download(export).decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:4] == ["Data", "Pagamento", "Tipo", "Descrição"]
    assert (rows[2][2], rows[2][3], rows[2][4], rows[2][5]) == ("Transferência entre pessoas", "Aluguel — março", "-12,34", "87,66")


def test_the_json_face_exports_and_polls(stack, channel, envoy_url):
    ana = new_customer(stack, channel, funded_minor=500)
    now = datetime.now(timezone.utc)
    response = json_post(envoy_url, f"/v1/{ana.account}:exportStatement", {
        "startTime": (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "endTime": (now + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"), "format": "STATEMENT_FORMAT_CSV",
    }, token=ana.token)
    assert response.status_code == 200, response.text
    name = response.json()["statementExport"]["name"]
    _finished(channel, ana, name)
    polled = json_get(envoy_url, f"/v1/{name}", token=ana.token)
    assert polled.status_code == 200 and polled.json()["statementExport"]["state"] == "STATEMENT_EXPORT_STATE_SUCCEEDED"


def test_bad_requests_are_refused_and_nobody_reads_anothers_statement(stack, channel):
    ana, bruno = new_customer(stack, channel, funded_minor=500), new_customer(stack, channel)
    now = datetime.now(timezone.utc)
    for start, end, document_format, language, field in (
        (now, now - timedelta(seconds=1), accounts_pb2.STATEMENT_FORMAT_CSV, "", "end_time"),
        (now - timedelta(days=367), now, accounts_pb2.STATEMENT_FORMAT_CSV, "", "end_time"),
        (now - timedelta(days=1), now, accounts_pb2.STATEMENT_FORMAT_UNSPECIFIED, "", "format"),
        (now - timedelta(days=1), now, accounts_pb2.STATEMENT_FORMAT_PDF, "fr", "language"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            _export(channel, ana, start, end, document_format, language)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in raised.value.details(), raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        accounts_stub(channel).ExportStatement(accounts_pb2.ExportStatementRequest(
            account=bruno.account, start_time=_stamp(now - timedelta(days=1)), end_time=_stamp(now),
            format=accounts_pb2.STATEMENT_FORMAT_CSV), metadata=bearer(ana.token), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    mine = _export(channel, ana, now - timedelta(days=1), now, accounts_pb2.STATEMENT_FORMAT_CSV)
    with pytest.raises(grpc.RpcError) as raised:
        accounts_stub(channel).GetStatementExport(accounts_pb2.GetStatementExportRequest(name=mine.name),
                                                  metadata=bearer(bruno.token), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_portuguese_tenant_in_sao_paulo_gets_receipts_and_statements_in_its_words(stack, channel):
    from emoney.admin.v1 import admin_pb2
    from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
    from tests.fixtures.identity import admin_stub, create_tenant, unique_email
    from tests.fixtures.ledger import Holder

    created, admin_token = create_tenant(stack, "cidade", currency="BRL")
    admin_stub(channel).UpdateTenantSettings(admin_pb2.UpdateTenantSettingsRequest(time_zone="America/Sao_Paulo", language="pt-BR"),
                                             metadata=bearer(admin_token), timeout=10)
    people = []
    for name in ("Ana Souza", "Bruno Lima"):
        session = auth_pb2_grpc.AuthServiceStub(channel).SignUp(auth_pb2.SignUpRequest(
            tenant=created.tenant.tenant.name, email=unique_email("cidadao"), password="correct horse battery", display_name=name,
        ), timeout=10)
        [account] = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(session.tokens.access_token),
                                                        timeout=10).accounts
        people.append(Holder(session.tokens.access_token, account.name, session.user.name))
    ana, bruno = people
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    payments_stub(channel).TopUp(payments_pb2.TopUpRequest(request_id=request_id(), account=ana.account, amount_minor=200_000,
                                                           currency="BRL"), metadata=bearer(admin_token), timeout=10)
    paid = payments_stub(channel).CreateTransfer(payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=ana.account, to_account=bruno.account, amount_minor=123_456, currency="BRL",
        description="aluguel"), metadata=bearer(ana.token), timeout=10).payment
    receipt = payments_stub(channel).GetReceipt(payments_pb2.GetReceiptRequest(payment=paid.name), metadata=bearer(ana.token), timeout=10)
    display = json.loads(receipt.content)["display"]
    assert (display["kind"], display["amount"].replace("\u00a0", " ")) == ("Transferência entre pessoas", "R$ 1.234,56")
    export = _finished(channel, ana, _export(channel, ana, start, datetime.now(timezone.utc) + timedelta(seconds=1),
                                             accounts_pb2.STATEMENT_FORMAT_CSV).name)
    assert (export.language, export.time_zone) == ("pt-BR", "America/Sao_Paulo")
    rows = list(csv.reader(io.StringIO(_download(export).decode("utf-8-sig")), delimiter=";"))
    local = paid.create_time.ToDatetime(tzinfo=timezone.utc).astimezone(ZoneInfo("America/Sao_Paulo"))
    assert rows[2][0] == local.strftime("%d/%m/%Y %H:%M:%S") and rows[2][4] == "-1.234,56"
