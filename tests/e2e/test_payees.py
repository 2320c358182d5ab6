"""Paying a person, not a UUID (issue 15, item 2): a citizen finds another by e-mail or phone number, sees
their masked name, and pays the account the lookup names; nobody can be enumerated (unknown and not
payable answer alike) and lookups are rate-limited."""

from __future__ import annotations

import random
import time

import grpc
import pytest

from emoney.accounts.v1 import accounts_pb2
from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2
from tests.fixtures.identity import DEMO_TENANT, bearer, login_as, unique_email
from tests.fixtures.ledger import Holder, accounts_stub, balance, new_customer, payments_stub, request_id
from tests.fixtures.errors import grpc_reason


def _mobile() -> tuple[str, str]:
    """A fresh São Paulo mobile number: (as a person types it, E.164)."""
    digits = f"{random.randrange(10**7, 10**8)}"
    return f"+55 (11) 9{digits[:4]}-{digits[4:]}", f"+55119{digits}"


def _citizen(stack, channel, display_name: str, phone: str = "") -> tuple[Holder, str]:
    email = unique_email("citizen")
    with grpc.insecure_channel(stack.endpoints.envoy) as signup_channel:
        session = auth_pb2_grpc.AuthServiceStub(signup_channel).SignUp(auth_pb2.SignUpRequest(
            tenant=DEMO_TENANT, email=email, password="correct horse battery", display_name=display_name, phone_number=phone,
        ), timeout=10)
    token = session.tokens.access_token
    [account] = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(token), timeout=10).accounts
    return Holder(token, account.name, session.user.name), email


def _find(channel, payer: Holder, **contact) -> payments_pb2.FindPayeeResponse:
    return payments_stub(channel).FindPayee(payments_pb2.FindPayeeRequest(**contact), metadata=bearer(payer.token), timeout=10)


def test_a_citizen_pays_another_found_by_phone_or_e_mail_after_seeing_the_masked_name(stack, channel):
    typed, stored = _mobile()
    ana, ana_email = _citizen(stack, channel, "Ana Carolina Souza", phone=typed)
    bruno = new_customer(stack, channel, funded_minor=5_000)
    by_phone = _find(channel, bruno, phone_number=stored)
    by_email = _find(channel, bruno, email=ana_email.upper())
    assert by_phone == by_email == payments_pb2.FindPayeeResponse(display_name="Ana S.", account=ana.account, currency="EUR")
    paid = payments_stub(channel).CreateTransfer(payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=bruno.account, to_account=by_phone.account, amount_minor=700, currency="EUR",
        description="almoço",
    ), metadata=bearer(bruno.token), timeout=10).payment
    assert (paid.to_account, paid.description) == (ana.account, "almoço")
    assert balance(channel, ana.token, ana.account).balance_minor == 700


def test_unknown_and_not_payable_people_answer_alike(stack, channel):
    frozen, frozen_email = _citizen(stack, channel, "Carla Dias")
    accounts_stub(channel).FreezeAccount(accounts_pb2.FreezeAccountRequest(name=frozen.account),
                                         metadata=bearer(login_as(stack, "operator")), timeout=10)
    payer = new_customer(stack, channel)
    answers = []
    for contact in ({"email": frozen_email}, {"email": unique_email("nobody")}, {"phone_number": _mobile()[1]},
                    {"email": frozen_email, "currency": "USD"}):
        with pytest.raises(grpc.RpcError) as raised:
            _find(channel, payer, **contact)
        answers.append((raised.value.code(), grpc_reason(raised.value), raised.value.details()))
    assert len(set(answers)) == 1 and answers[0][:2] == (grpc.StatusCode.NOT_FOUND, "PAYEE_NOT_FOUND"), answers


@pytest.mark.parametrize("contact", [{}, {"email": "a@b.example", "phone_number": "+5511912345678"}, {"phone_number": "12345"},
                                     {"phone_number": "+55 11 91234"}, {"email": "not-an-address"}])
def test_a_lookup_names_exactly_one_valid_address_or_number(stack, channel, contact):
    payer = new_customer(stack, channel)
    with pytest.raises(grpc.RpcError) as raised:
        _find(channel, payer, **contact)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()


def test_lookups_are_rate_limited_per_caller(stack, channel):
    """A burst of 10, then one every 6 s: however slow the machine, the calls that got an answer are no more
    than that allows, and the refusals say RATE_LIMITED."""
    payer = new_customer(stack, channel)
    answered, refusals = 0, []
    started = time.monotonic()
    for _ in range(14):
        try:
            _find(channel, payer, email=unique_email("nobody"))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                answered += 1
            else:
                refusals.append((error.code(), grpc_reason(error)))
    elapsed_s = time.monotonic() - started
    assert answered <= 10 + int(elapsed_s / 6) + 1, (answered, elapsed_s)
    assert refusals and set(refusals) == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")}


def test_a_phone_number_is_validated_and_unique_at_sign_up(stack, channel):
    typed, _ = _mobile()
    _citizen(stack, channel, "Dora Lima", phone=typed)
    with pytest.raises(grpc.RpcError) as raised:
        _citizen(stack, channel, "Someone Else", phone=typed)
    assert (raised.value.code(), grpc_reason(raised.value)) == (grpc.StatusCode.ALREADY_EXISTS, "PHONE_TAKEN")
    with pytest.raises(grpc.RpcError) as raised:
        _citizen(stack, channel, "Someone Else", phone="11 91234-5678")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_back_office_sees_names_where_citizens_see_only_accounts(stack, channel):
    """Payments and accounts name their holders (and the terminal) for the back office; a citizen listing
    their own payments gets no other person's full name (FindPayee's masked name is all they see)."""
    ana, _ = _citizen(stack, channel, "Ana Carolina Souza")
    bruno = new_customer(stack, channel, funded_minor=1_000)
    paid = payments_stub(channel).CreateTransfer(payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=bruno.account, to_account=ana.account, amount_minor=300, currency="EUR",
    ), metadata=bearer(bruno.token), timeout=10).payment
    operator = bearer(login_as(stack, "operator"))
    seen = payments_stub(channel).GetPayment(payments_pb2.GetPaymentRequest(name=paid.name), metadata=operator, timeout=10).payment
    assert (seen.from_display_name, seen.to_display_name, seen.terminal_display_name) == ("Test Person", "Ana Carolina Souza", "")
    listed = payments_stub(channel).ListPayments(payments_pb2.ListPaymentsRequest(account=ana.account), metadata=operator, timeout=10)
    assert [(p.name, p.to_display_name) for p in listed.payments][0] == (paid.name, "Ana Carolina Souza")
    account = accounts_stub(channel).GetAccount(accounts_pb2.GetAccountRequest(name=ana.account), metadata=operator, timeout=10).account
    assert account.owner_display_name == "Ana Carolina Souza"
    for holder in (bruno, ana):
        own = payments_stub(channel).GetPayment(payments_pb2.GetPaymentRequest(name=paid.name), metadata=bearer(holder.token), timeout=10).payment
        assert (own.from_display_name, own.to_display_name) == ("", "")
