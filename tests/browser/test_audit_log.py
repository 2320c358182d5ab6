"""The audit log as a person reads it, in English and in Brazilian Portuguese: each event an action (from its
method) and its summary's fields by name, before → after where it has both, the stored record (summary JSON
and hash) one click away; an event of any shape (an unknown method or field, a summary that is not JSON) is
listed readably and never breaks the page.
"""

from __future__ import annotations

import json

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from playwright.sync_api import Page, Route, expect

from emoney.admin.v1 import admin_pb2
from emoney.payments.v1 import payments_pb2
from tests.browser.conftest import screenshot, resource_id
from tests.browser.language import LANGUAGES, money, normalized, text
from tests.fixtures.identity import bearer, login_as
from tests.fixtures.ledger import new_customer, new_shop, payment_code, payments_stub, request_id


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_the_audit_log_reads_as_actions_and_named_fields(signed_in: Page, stack, channel, lang):
    """A top-up and a refund made through the API read on the audit screen as what happened, with their
    amounts in the language's format and the refund's before → after; the record stays one click away."""
    customer, shop = new_customer(stack, channel), new_shop(stack, channel)
    operator = bearer(login_as(stack, "operator"))
    top_up_id = request_id()
    payments_stub(channel).TopUp(
        payments_pb2.TopUpRequest(request_id=top_up_id, account=customer.account, amount_minor=123_456, currency="EUR"),
        metadata=operator, timeout=10,
    )
    payment = payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(
            request_id=request_id(), code=payment_code(channel, customer, 2_000), amount_minor=2_000, currency="EUR"
        ),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    refund_id = request_id()
    payments_stub(channel).RefundPayment(
        payments_pb2.RefundPaymentRequest(request_id=refund_id, name=payment.name, amount_minor=750), metadata=bearer(shop.token), timeout=10
    )
    page = signed_in

    page.goto(f"/#/audit?requestId={top_up_id}")
    # The top-up (and, when it was the tenant's first in euros, the float account it opened, its own event).
    rows = page.get_by_test_id("audit-events").locator("tbody tr")
    expect(rows.first).to_be_visible()
    row = rows.filter(has=page.get_by_test_id("audit-action").get_by_text(text(lang, "top_up_action"), exact=True))
    expect(row).to_have_count(1)
    change = row.get_by_test_id("audit-change")
    expect(change.locator('li[data-field="amountMinor"]')).to_have_text(f"{text(lang, 'amount_field')}: {money(lang, 123_456)}")
    expect(change.locator('li[data-field="kind"]')).to_have_text(f"{text(lang, 'kind_field')}: {text(lang, 'top_up_kind')}")
    expect(change.locator(f'li[data-field="creditAccountId"] a[href="#/accounts/{resource_id(customer.account)}"]')).to_have_count(1)

    page.goto(f"/#/audit?requestId={refund_id}")
    row = page.get_by_test_id("audit-events").locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("audit-action")).to_have_text(text(lang, "refund_action"))
    change = row.get_by_test_id("audit-change")
    refunded = f"{text(lang, 'refunded_field')}: {money(lang, 0)} → {money(lang, 750)}"
    expect(change.locator(':scope > ul > li[data-field="refundedMinor"]')).to_have_text(refunded)
    expect(change.locator(f'li[data-field="transferId"] a[href="#/payments/{resource_id(payment.name)}"]').first).to_be_visible()
    expect(change.locator('li[data-field="refund"] li[data-field="amountMinor"]')).to_contain_text(money(lang, 750))
    screenshot(page, f"lang-03-audit-refund-{lang}")
    record = row.get_by_test_id("audit-record")
    record.locator("summary").click()
    summary = json.loads(record.get_by_test_id("audit-summary-json").inner_text())
    assert summary["after"]["refundedMinor"] == "750" and summary["before"]["refundedMinor"] == "0"


def _grpc_web(message) -> bytes:
    """A grpc-web (binary) answer: one message frame and the trailers frame."""
    body = message.SerializeToString()
    trailers = b"grpc-status:0\r\ngrpc-message:\r\n"
    return b"\x00" + len(body).to_bytes(4, "big") + body + b"\x80" + len(trailers).to_bytes(4, "big") + trailers


def _event(sequence: int, method: str, summary: str, actor: str = "system") -> admin_pb2.AuditEvent:
    created = Timestamp()
    created.FromJsonString("2026-03-01T12:00:00Z")
    return admin_pb2.AuditEvent(
        stripe=1, sequence=sequence, create_time=created, actor=actor, method=method, request_id=f"request-{sequence}",
        summary_json=summary, hash_hex=f"{sequence:02d}" * 32,
    )


HOLD = {"holdId": "11111111-1111-4111-8111-111111111111", "accountId": "22222222-2222-4222-8222-222222222222",
        "merchantAccountId": "33333333-3333-4333-8333-333333333333", "amountMinor": "5000", "capturedMinor": "0",
        "currency": "EUR", "status": "authorized", "expiresAt": "2026-03-02T12:00:00+00:00"}
ODD_EVENTS = [
    # A method this build does not know, with fields it does not know: spelt out.
    _event(1, "/emoney.keys.v1.KeysService/RotateSigningKey", json.dumps({"before": None, "after": {"keyId": "k-2", "retiredKeys": 3}})),
    # A hold expired by the ledger itself (before: the hold, after: only what changed).
    _event(2, "ledger/ExpireHold", json.dumps({"before": HOLD, "after": {"holdId": HOLD["holdId"], "status": "expired"}})),
    # A capture: the hold before, and after the hold and the payment it made.
    _event(3, "/emoney.payments.v1.PaymentsService/CapturePayment", json.dumps({
        "before": HOLD,
        "after": {"hold": {**HOLD, "capturedMinor": "4000", "status": "captured"},
                  "transfer": {"transferId": "44444444-4444-4444-8444-444444444444", "kind": "capture", "amountMinor": "4000",
                               "currency": "EUR", "status": "completed", "refundedMinor": "0",
                               "debitAccountId": HOLD["accountId"], "creditAccountId": HOLD["merchantAccountId"]}},
    })),
    # Identity changes (server/services/changes.py): roles, booleans, resource names.
    _event(4, "/emoney.auth.v1.AuthService/ChangePassword", json.dumps({"before": None, "after": {
        "user": "users/55555555-5555-4555-8555-555555555555", "passwordChanged": True, "sessionsRevoked": True}})),
    _event(5, "/emoney.admin.v1.AdminService/CreateUser", json.dumps({"before": None, "after": {
        "user": "users/66666666-6666-4666-8666-666666666666", "roles": ["merchant", "a_future_role"]}})),
    # Not JSON at all, and JSON of another shape: shown as they are.
    _event(6, "/emoney.admin.v1.AdminService/SuspendTenant", "this is not JSON {"),
    _event(7, "", json.dumps([1, "two", None])),
    _event(8, "/emoney.admin.v1.AdminService/DisableTerminal", json.dumps({"terminal": "terminals/x", "note": {"deep": {"er": [1, 2]}}})),
    # The float account a tenant's first top-up in a currency opens, audited under TopUp.
    _event(9, "/emoney.payments.v1.PaymentsService/TopUp", json.dumps({"before": None, "after": {
        "accountId": HOLD["accountId"], "ownerUserId": None, "kind": "system_float", "currency": "BRL", "status": "active",
        "overdraftLimitMinor": "0"}})),
]


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_the_audit_log_reads_any_event_and_never_breaks(signed_in: Page, lang):
    """Events of every shape — an unknown method and fields, a ledger hold's expiry, a capture, identity changes,
    a summary that is not JSON — are all listed readably (the page would fail on any script error)."""
    page = signed_in
    answer = admin_pb2.ListAuditEventsResponse(audit_events=ODD_EVENTS)

    def fulfil(route: Route) -> None:
        route.fulfill(status=200, headers={"content-type": "application/grpc-web+proto"}, body=_grpc_web(answer))

    page.route("**/emoney.admin.v1.AdminService/ListAuditEvents", fulfil)
    page.goto("/#/audit")
    rows = page.get_by_test_id("audit-events").locator("tbody tr")
    expect(rows).to_have_count(len(ODD_EVENTS))
    actions = [normalized(action) for action in rows.get_by_test_id("audit-action").all_inner_texts()]
    pt = lang == "pt-BR"
    assert actions == [
        "Rotate signing key",
        "Reserva expirada" if pt else "Hold expired",
        "Reserva capturada" if pt else "Hold captured",
        "Senha alterada" if pt else "Password changed",
        "Usuário criado" if pt else "User created",
        "Organização suspensa" if pt else "Organisation suspended",
        "Alteração" if pt else "Change",  # no method at all
        "Terminal desativado" if pt else "Terminal disabled",
        "Conta de lastro aberta (primeira entrada ou saída de dinheiro na moeda)" if pt
        else "Float account opened (first cash in or out in the currency)",
    ], actions
    changes = [normalized(change) for change in rows.get_by_test_id("audit-change").all_inner_texts()]
    assert "Key id: k-2" in changes[0] and "Retired keys: 3" in changes[0], changes[0]
    status = "Situação: autorizado (valor retido) → expirado" if pt else "Status: authorized (held) → expired"
    assert status in changes[1], changes[1]
    assert money(lang, 5_000) in changes[1], changes[1]
    captured = f"{'Capturado' if pt else 'Captured'}: {money(lang, 0)} → {money(lang, 4_000)}"
    assert captured in changes[2] and (("Situação: concluído" if pt else "Status: completed") in changes[2]), changes[2]
    assert ("Senha alterada: sim" if pt else "Password changed: yes") in changes[3], changes[3]
    assert ("Perfis: lojista, A future role" if pt else "Roles: merchant, A future role") in changes[4], changes[4]
    assert changes[5] == "this is not JSON {", changes[5]
    assert changes[6] == '[1,"two",null]', changes[6]
    assert "Note:" in changes[7] and "Deep:" in changes[7], changes[7]
    assert ("Tipo: lastro" if pt else "Kind: float") in changes[8] and money(lang, 0, "BRL") in changes[8], changes[8]
    # Every record keeps its raw summary and hash.
    rows.nth(5).get_by_test_id("audit-record").locator("summary").click()
    expect(rows.nth(5).get_by_test_id("audit-summary-json")).to_have_text("this is not JSON {")
    expect(rows.nth(5).get_by_test_id("audit-hash")).to_have_text("06" * 32)
    expect(page.get_by_test_id("error")).to_have_count(0)
    screenshot(page, f"lang-04-audit-shapes-{lang}")
