"""A transfer's description (issue 15, item 2): written once by the payer, shown on the payment, on both
parties' statements and on the receipt; bounded and free of control characters on every face."""

from __future__ import annotations

import json

import pytest

from emoney.accounts.v1 import accounts_pb2
from emoney.payments.v1 import payments_pb2
from tests.fixtures.identity import bearer, error_reason, json_post
from tests.fixtures.ledger import accounts_stub, new_customer, payments_stub, request_id


def _statement_descriptions(channel, holder) -> dict[str, str]:
    entries = accounts_stub(channel).ListAccountEntries(
        accounts_pb2.ListAccountEntriesRequest(account=holder.account), metadata=bearer(holder.token), timeout=10).entries
    return {entry.payment: entry.description for entry in entries}


def test_the_description_is_on_the_payment_both_statements_the_receipt_and_a_replay(stack, channel):
    ana, bruno = new_customer(stack, channel, funded_minor=5_000), new_customer(stack, channel)
    request = payments_pb2.CreateTransferRequest(request_id=request_id(), from_account=ana.account, to_account=bruno.account,
                                                 amount_minor=1_250, currency="EUR", description="  Aluguel — março 🏠  ")
    paid = payments_stub(channel).CreateTransfer(request, metadata=bearer(ana.token), timeout=10).payment
    assert paid.description == "Aluguel — março 🏠"
    assert _statement_descriptions(channel, ana)[paid.name] == "Aluguel — março 🏠"
    assert _statement_descriptions(channel, bruno)[paid.name] == "Aluguel — março 🏠"
    again = payments_stub(channel).CreateTransfer(request, metadata=bearer(ana.token), timeout=10).payment
    assert again == paid
    receipt = payments_stub(channel).GetReceipt(payments_pb2.GetReceiptRequest(payment=paid.name), metadata=bearer(bruno.token), timeout=10)
    assert json.loads(receipt.content)["description"] == "Aluguel — março 🏠"

    plain = payments_stub(channel).CreateTransfer(payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=ana.account, to_account=bruno.account, amount_minor=1, currency="EUR",
    ), metadata=bearer(ana.token), timeout=10).payment
    assert plain.description == "" and _statement_descriptions(channel, ana)[plain.name] == ""
    receipt = payments_stub(channel).GetReceipt(payments_pb2.GetReceiptRequest(payment=plain.name), metadata=bearer(ana.token), timeout=10)
    assert "description" not in json.loads(receipt.content)


@pytest.mark.parametrize(("description", "violation"), [("x" * 141, "TOO_LONG"), ("line\nbreak", "INVALID_FORMAT")])
def test_a_bad_description_is_refused_on_the_json_face_and_moves_nothing(stack, channel, envoy_url, description, violation):
    ana, bruno = new_customer(stack, channel, funded_minor=5_000), new_customer(stack, channel)
    response = json_post(envoy_url, "/v1/transfers", {
        "requestId": request_id(), "fromAccount": ana.account, "toAccount": bruno.account, "amountMinor": "100",
        "currency": "EUR", "description": description,
    }, token=ana.token)
    assert response.status_code == 400, response.text
    body = response.json()
    assert error_reason(body) == violation
    [bad_request] = [detail for detail in body["details"] if detail["@type"].endswith("BadRequest")]
    assert bad_request["fieldViolations"][0]["field"] == "description"
    assert accounts_stub(channel).GetAccount(accounts_pb2.GetAccountRequest(name=ana.account), metadata=bearer(ana.token),
                                             timeout=10).account.balance_minor == 5_000
