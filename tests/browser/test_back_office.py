"""The back office in a real browser (headless Chromium), against the real stack through Envoy.

Each test signs in as the demo tenant admin, does what an operator would, checks the page shows it,
and checks the API agrees (through the Python gRPC client, from outside the browser). The main journeys
run in both languages (`lang`: the tab's browser locale is en-GB or pt-BR, and the page follows it);
tests/browser/test_languages.py checks the languages themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import jwt
import pytest
import requests
from playwright.sync_api import Page, expect

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from localstack.envoy import BackOfficeNotBuiltError, start_envoy
from tests.browser.conftest import screenshot, sign_in, resource_id
from tests.browser.language import LANGUAGES, money, text
from tests.fixtures.identity import admin_stub, auth_stub, bearer, login, login_as, sign_up, unique_email
from tests.fixtures.ledger import accounts_stub, new_customer, new_shop, payment_code, payments_stub, request_id


ROOT = Path(__file__).resolve().parents[2]


def _charge(channel, shop, customer, amount_minor: int) -> payments_pb2.Payment:
    return payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(
            request_id=request_id(), code=payment_code(channel, customer, amount_minor), amount_minor=amount_minor, currency="EUR"
        ),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_wrong_password_is_explained_and_keeps_you_out(page: Page, tenant_admin, lang):
    """A wrong password shows a sentence, not a status code, and no signed-in page."""
    sign_in(page, tenant_admin.email, "not the password at all")
    expect(page.get_by_test_id("error")).to_have_text(text(lang, "wrong_password"))
    expect(page.get_by_test_id("who")).to_have_count(0)
    screenshot(page, f"01-sign-in-wrong-password-{lang}")


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_a_citizen_cannot_use_the_back_office(page: Page, stack, lang):
    """Only operators and tenant admins get in; a customer is told so and stays signed out."""
    customer = next(user for user in stack.demo.users if user.role == "customer")
    sign_in(page, customer.email, customer.password)
    expect(page.get_by_test_id("error")).to_contain_text(text(lang, "not_back_office"))
    expect(page.get_by_test_id("sign-in-form")).to_be_visible()


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_dashboard_shows_accounts_float_and_todays_payments(signed_in: Page, stack, channel, lang):
    """The dashboard's figures are the API's: account count, the float, and a payment made today."""
    customer, shop = new_customer(stack, channel, funded_minor=4_000), new_shop(stack, channel)
    _charge(channel, shop, customer, 1_234)
    signed_in.reload()
    operator = bearer(login_as(stack, "operator"))
    listed = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(page_size=100), metadata=operator, timeout=10)
    assert not listed.next_page_token, "the test expects one page of accounts"
    people_accounts = [account for account in listed.accounts if account.kind != accounts_pb2.ACCOUNT_KIND_SYSTEM_FLOAT]
    float_minor = -sum(account.balance_minor for account in listed.accounts if account.kind == accounts_pb2.ACCOUNT_KIND_SYSTEM_FLOAT)
    counted_accounts = f"{len(people_accounts):,}".replace(",", "." if lang == "pt-BR" else ",")
    expect(signed_in.get_by_test_id("stat-accounts").locator(".stat-value")).to_have_text(counted_accounts)
    expect(signed_in.get_by_test_id("stat-float").locator(".stat-value")).to_have_text(money(lang, float_minor))
    expect(signed_in.get_by_test_id("payments-today")).to_contain_text(money(lang, 1_234))
    # "Payments today" counts what the list shows (it once counted 3 beside 6 rows): all of them, or the
    # latest 15 of that many.
    counted = int(re.sub(r"\D", "", signed_in.get_by_test_id("stat-payments-today").locator(".stat-value").inner_text()))
    rows = signed_in.get_by_test_id("payments-today").locator("tbody tr").count()
    assert counted >= 1 and rows == min(counted, 15), (counted, rows)
    screenshot(signed_in, f"02-dashboard-{lang}")


def test_an_account_shows_and_takes_amounts_with_its_currencys_decimals(signed_in: Page, stack, channel):
    """The account's ISO 4217 decimals come from the server: an Iraqi dinar account (3 decimals, where the
    browser's own currency data says 0) shows 1250 minor units as IQD 1.250 and takes a top-up of 0.5."""
    session, _ = sign_up(stack.endpoints.envoy)
    account = accounts_stub(channel).CreateAccount(
        accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency="IQD"), metadata=bearer(session.tokens.access_token),
        timeout=10,
    ).account
    payments_stub(channel).TopUp(
        payments_pb2.TopUpRequest(request_id=request_id(), account=account.name, amount_minor=1_250, currency="IQD"),
        metadata=bearer(login_as(stack, "operator")), timeout=10,
    )
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(account.name)}")
    expect(page.get_by_test_id("account-balance")).to_contain_text(money("en", 1_250, "IQD", 3))  # IQD 1.250
    page.get_by_label("Top up (IQD)").fill("0.5")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("notice")).to_have_text(f"Topped up {money('en', 500, 'IQD', 3)}.")
    expect(page.get_by_test_id("account-balance")).to_contain_text(money("en", 1_750, "IQD", 3))


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_account_statement_freeze_and_unfreeze(signed_in: Page, stack, channel, lang):
    """An account's page shows its statement; freezing it makes the ledger refuse money for it, unfreezing lets it in again."""
    customer = new_customer(stack, channel, funded_minor=5_000)
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(customer.account)}")
    expect(page.get_by_test_id("account-balance")).to_contain_text(money(lang, 5_000))
    expect(page.get_by_test_id("statement")).to_contain_text(text(lang, "top_up_kind"))  # a plain label, not `top_up`
    expect(page.get_by_test_id("statement")).to_contain_text(money(lang, 5_000))
    screenshot(page, f"03-account-statement-{lang}")

    page.get_by_test_id("freeze").click()
    expect(page.get_by_test_id("account-status")).to_contain_text(text(lang, "frozen"))
    expect(page.get_by_test_id("notice")).to_contain_text(text(lang, "frozen"))
    assert accounts_stub(channel).GetAccount(
        accounts_pb2.GetAccountRequest(name=customer.account), metadata=bearer(customer.token), timeout=10
    ).account.status == accounts_pb2.ACCOUNT_STATUS_FROZEN
    # A top-up from the page is refused, and said so in words.
    top_up = page.get_by_label(f"{text(lang, 'top_up_label')} (EUR)")
    top_up.fill("5")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("error")).to_have_text(text(lang, "account_frozen_error"))
    screenshot(page, f"04-account-frozen-{lang}")
    # And so is a terminal charging the customer: a frozen account cannot pay.
    shop = new_shop(stack, channel)
    with pytest.raises(grpc.RpcError) as refused:
        _charge(channel, shop, customer, 100)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    page.get_by_test_id("unfreeze").click()
    expect(page.get_by_test_id("account-status")).to_contain_text(text(lang, "active"))
    top_up.fill("5")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "topped_up", amount=money(lang, 500)))
    expect(page.get_by_test_id("account-balance")).to_contain_text(money(lang, 5_500))
    assert accounts_stub(channel).GetAccount(
        accounts_pb2.GetAccountRequest(name=customer.account), metadata=bearer(customer.token), timeout=10
    ).account.balance_minor == 5_500


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_refund_of_a_payment(signed_in: Page, stack, channel, lang):
    """A partial refund from the payment's page moves the money back, and the page and the API show it."""
    customer, shop = new_customer(stack, channel, funded_minor=3_000), new_shop(stack, channel)
    payment = _charge(channel, shop, customer, 1_250)
    page = signed_in
    page.goto(f"/#/payments/{resource_id(payment.name)}")
    expect(page.get_by_test_id("payment-amount")).to_have_text(money(lang, 1_250))
    expect(page.get_by_test_id("payment-refunded")).to_have_text(money(lang, 0))
    refund_amount = page.get_by_test_id("refund-form").get_by_role("textbox")
    # What is left to refund, as a person of that language types it.
    expect(refund_amount).to_have_value("12,50" if lang == "pt-BR" else "12.50")
    refund_amount.fill("20")
    page.get_by_test_id("refund").click()
    expect(page.get_by_test_id("error")).to_have_text(text(lang, "refund_too_much"))
    refund_amount.fill("2,50" if lang == "pt-BR" else "2.50")
    page.get_by_test_id("refund").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "refunded", amount=money(lang, 250)))
    expect(page.get_by_test_id("payment-refunded")).to_have_text(money(lang, 250))
    screenshot(page, f"05-payment-refunded-{lang}")
    after = payments_stub(channel).GetPayment(payments_pb2.GetPaymentRequest(name=payment.name), metadata=bearer(shop.token), timeout=10)
    assert after.payment.refunded_minor == 250
    balance = accounts_stub(channel).GetAccount(accounts_pb2.GetAccountRequest(name=customer.account), metadata=bearer(customer.token), timeout=10)
    assert balance.account.balance_minor == 3_000 - 1_250 + 250


def test_a_failed_reload_after_a_freeze_is_shown(signed_in: Page, stack, channel):
    """When the account cannot be read again after freezing it, the page says so (the freeze itself is done)."""
    customer = new_customer(stack, channel)
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(customer.account)}")
    expect(page.get_by_test_id("account-status")).to_contain_text("active")
    page.route("**/emoney.accounts.v1.AccountsService/GetAccount", lambda route: route.abort())
    page.get_by_test_id("freeze").click()
    expect(page.get_by_test_id("error")).to_be_visible()
    expect(page.get_by_test_id("freeze")).to_be_enabled()
    assert accounts_stub(channel).GetAccount(
        accounts_pb2.GetAccountRequest(name=customer.account), metadata=bearer(customer.token), timeout=10
    ).account.status == accounts_pb2.ACCOUNT_STATUS_FROZEN


def test_kind_and_status_filters_send_the_contracts_enums(signed_in: Page, stack, channel):
    """The accounts and payments filters are enum values (ListAccounts' kind and status, ListPayments' status):
    choosing one lists only what matches, with the value's label, and the choice lives in the page's URL."""
    customer, shop = new_customer(stack, channel, funded_minor=2_000), new_shop(stack, channel)
    operator = bearer(login_as(stack, "operator"))
    accounts_stub(channel).FreezeAccount(accounts_pb2.FreezeAccountRequest(name=customer.account), metadata=operator, timeout=10)
    page = signed_in
    listing = "/emoney.accounts.v1.AccountsService/ListAccounts"
    # The screen's own first listing (no filter) is answered before the filter is chosen: the request
    # awaited next is the filter's, not that one still on its way.
    with page.expect_response(lambda answered: answered.url.endswith(listing)):
        page.goto("/#/accounts")
    expect(page.get_by_test_id("accounts").locator("tbody tr").first).to_be_visible()
    with page.expect_request(lambda sent: sent.url.endswith(listing)) as sent:
        page.locator("#field-status").select_option(label="Frozen")
    sent_request = accounts_pb2.ListAccountsRequest.FromString(sent.value.post_data_buffer[5:])
    assert sent_request.status == accounts_pb2.ACCOUNT_STATUS_FROZEN and sent_request.kind == accounts_pb2.ACCOUNT_KIND_UNSPECIFIED
    expect(page).to_have_url(re.compile(r"#/accounts\?status=frozen$"))
    rows = page.get_by_test_id("accounts").locator("tbody tr")
    expect(rows.filter(has=page.locator(f'a[href="#/accounts/{resource_id(customer.account)}"]'))).to_have_count(1)
    expect(page.get_by_test_id("accounts").locator(".badge")).not_to_have_count(0)
    for badge in page.get_by_test_id("accounts").locator(".badge").all():
        expect(badge).to_have_text("frozen")
        expect(badge).to_have_class(re.compile(r"\bbadge-frozen\b"))

    page.goto("/#/accounts?kind=merchant&status=active")
    expect(page.locator("#field-kind")).to_have_value("merchant")
    expect(page.get_by_test_id("accounts").locator("tbody tr").first).to_contain_text("merchant")
    for row in page.get_by_test_id("accounts").locator("tbody tr").all():
        expect(row).to_contain_text("merchant")
        expect(row.locator(".badge")).to_have_text("active")

    payment = _charge(channel, shop, new_customer(stack, channel, funded_minor=1_000), 300)
    payments_stub(channel).RefundPayment(
        payments_pb2.RefundPaymentRequest(request_id=request_id(), name=payment.name, amount_minor=100), metadata=bearer(shop.token), timeout=10,
    )
    page.goto("/#/payments?period=1&status=partially_refunded")
    expect(page.locator("#field-status")).to_have_value("partially_refunded")
    listed = page.get_by_test_id("payments")
    expect(listed.locator(f'a[href="#/payments/{resource_id(payment.name)}"]')).to_have_count(1)
    for badge in listed.locator(".badge").all():
        expect(badge).to_have_text("partly refunded")
        expect(badge).to_have_class(re.compile(r"\bbadge-partially_refunded\b"))


def test_a_failed_reload_after_a_refund_is_shown(signed_in: Page, stack, channel):
    """When the payments cannot be listed again after a refund from the list, the page says so (the refund itself is done)."""
    customer, shop = new_customer(stack, channel, funded_minor=2_000), new_shop(stack, channel)
    payment = _charge(channel, shop, customer, 1_000)
    page = signed_in
    page.goto(f"/#/payments?account={resource_id(customer.account)}")
    form = page.get_by_test_id("refund-form")
    expect(form).to_have_count(1)
    page.route("**/emoney.payments.v1.PaymentsService/ListPayments", lambda route: route.abort())
    form.get_by_role("textbox").fill("1")
    form.get_by_role("button").click()
    expect(page.get_by_test_id("error")).to_be_visible()
    after = payments_stub(channel).GetPayment(payments_pb2.GetPaymentRequest(name=payment.name), metadata=bearer(shop.token), timeout=10)
    assert after.payment.refunded_minor == 100


def test_live_feed_shows_a_payment_made_elsewhere(signed_in: Page, stack, channel):
    """The live page (WatchPayments over grpc-web) shows a payment the moment a terminal makes it."""
    customer, shop = new_customer(stack, channel, funded_minor=2_000), new_shop(stack, channel)
    page = signed_in
    page.get_by_role("link", name="Live feed").click()
    expect(page.get_by_test_id("live-state")).to_have_text("live")  # the server has subscribed
    payment = _charge(channel, shop, customer, 777)
    row = page.locator(f'[data-testid="live-event"][data-payment="{payment.name}"]')
    expect(row).to_contain_text(money("en", 777))
    expect(row).to_contain_text("created")
    # A refund made elsewhere arrives too, as its own event.
    payments_stub(channel).RefundPayment(
        payments_pb2.RefundPaymentRequest(request_id=request_id(), name=payment.name, amount_minor=77),
        metadata=bearer(shop.token), timeout=10,
    )
    newest = page.get_by_test_id("live-event").first
    expect(newest).to_contain_text("refunded")
    expect(newest).to_contain_text(money("en", 77))
    screenshot(page, "06-live-feed")


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
@pytest.mark.parametrize("screen, content", [("merchants", "people"), ("accounts", "accounts"), ("payments", "payments")])
def test_every_list_screen_loads(signed_in: Page, screen: str, content: str, lang):
    """The list screens load from the API without an error message."""
    page = signed_in
    page.get_by_test_id("navigation").get_by_role("link", name=text(lang, screen), exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(text(lang, screen))
    expect(page.get_by_test_id(content)).to_be_visible()
    expect(page.get_by_test_id("error")).to_have_count(0)


def test_customers_search_and_a_persons_accounts(signed_in: Page, stack, channel):
    """Customers are searched by the server (ListUsers' query) by a fragment of the e-mail address in any case;
    a person's page lists their accounts."""
    customer = new_customer(stack, channel, funded_minor=1_000)
    email = admin_stub(channel).ListUsers(
        admin_pb2.ListUsersRequest(page_size=100, role=auth_pb2.ROLE_CUSTOMER), metadata=bearer(login_as(stack, "operator")), timeout=10
    )
    person = next(user for user in email.users if user.name == customer.user)
    fragment = person.email.split("@")[0][2:].upper()
    page = signed_in
    page.get_by_role("link", name="Customers").click()
    expect(page.get_by_test_id("people")).to_be_visible()
    with page.expect_request(
        lambda sent: sent.url.endswith("/emoney.admin.v1.AdminService/ListUsers") and fragment.encode() in (sent.post_data_buffer or b"")
    ):
        page.get_by_placeholder("Search by name or e-mail").fill(fragment)
    rows = page.get_by_test_id("people").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(person.email)
    screenshot(page, "07-customers-search")
    rows.get_by_role("link").first.click()  # the name (a level's "change" link may follow)
    expect(page.get_by_test_id("person-accounts")).to_contain_text(money("en", 1_000))
    expect(page).to_have_url(re.compile(rf"#/users/{resource_id(customer.user)}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(person.display_name)


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_create_a_customer_open_an_account_and_top_it_up(signed_in: Page, stack, lang):
    """A new customer gets a first password shown once, an account opened for them, and money on it."""
    page = signed_in
    email = unique_email("walk-in")
    page.get_by_role("link", name=text(lang, "customers")).click()
    page.locator("#field-display-name").fill("Walk-in Customer")
    page.locator("#field-new-email").fill(email)
    page.get_by_test_id("new-user").get_by_role("button").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Walk-in Customer")
    notice = page.get_by_test_id("notice")
    expect(notice).to_contain_text(text(lang, "first_password"))
    password = notice.inner_text().rsplit(": ", 1)[1]
    page.get_by_test_id("open-account").get_by_role("button").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "account_open"))
    page.get_by_test_id("person-accounts").locator("tbody a").first.click()
    top_up = page.get_by_label(f"{text(lang, 'top_up_label')} (EUR)")
    top_up.fill("20")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("account-balance")).to_contain_text(money(lang, 2_000))
    # The other language's thousands separator: "1,250" (English) or "1.250" (Portuguese) could be 1250.00 or
    # 1.25, so it is refused rather than guessed; "12,50" is 12.50 in both.
    top_up.fill("1.250" if lang == "pt-BR" else "1,250")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("error")).to_contain_text(text(lang, "ambiguous"))
    top_up.fill("12,50")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("account-balance")).to_contain_text(money(lang, 3_250))
    # Thousands grouped the language's way, decimals after the other separator: "1.000,00" / "1,000.00".
    top_up.fill("1.000,00" if lang == "pt-BR" else "1,000.00")
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("account-balance")).to_contain_text(money(lang, 103_250))
    # The person can log in with the password the page showed, and sees the money.
    session = login(stack.endpoints.envoy, "tenants/demo-city", email, password)
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        owned = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(session.tokens.access_token), timeout=10)
    assert [account.balance_minor for account in owned.accounts] == [103_250]


def test_people_are_read_once_and_again_only_for_someone_new(signed_in: Page, stack, channel):
    """Account owners and person pages share one read of the user list; a person added elsewhere since is still found."""
    page = signed_in
    reads: list[str] = []
    page.on("request", lambda sent: reads.append(sent.url) if sent.url.endswith("/emoney.admin.v1.AdminService/ListUsers") else None)

    def email_of(holder) -> str:
        return auth_stub(channel).GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(holder.token), timeout=10).user.email

    first = new_customer(stack, channel)
    page.goto(f"/#/accounts/{resource_id(first.account)}")
    expect(page.get_by_test_id("account-owner")).to_contain_text(email_of(first))
    read_once = len(reads)
    assert read_once >= 1
    page.get_by_test_id("account-owner").get_by_role("link").click()
    expect(page.get_by_test_id("person-accounts")).to_be_visible()
    page.go_back()
    expect(page.get_by_test_id("account-owner")).to_contain_text(email_of(first))
    assert len(reads) == read_once, "the user list was read again for people it already had"

    second = new_customer(stack, channel)  # after the page read the list
    page.goto(f"/#/accounts/{resource_id(second.account)}")
    expect(page.get_by_test_id("account-owner")).to_contain_text(email_of(second))
    assert len(reads) > read_once, "the user list was not read again for someone it lacked"


def test_terminal_registered_shows_its_secret_once_and_can_be_disabled(signed_in: Page, stack):
    """Registering a terminal shows its secret once; disabling it is reflected in the list."""
    page = signed_in
    page.get_by_role("link", name="Terminals").click()
    page.get_by_label("Name").fill("Browser test till")
    page.get_by_test_id("register-terminal").get_by_role("button").click()
    secret = page.get_by_test_id("client-secret")
    expect(secret).not_to_be_empty()
    row = page.get_by_test_id("terminals").locator("tr", has_text="Browser test till").last
    expect(row).to_contain_text("active")
    screenshot(page, "08-terminal-registered")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("disable-terminal").click()
    expect(page.get_by_test_id("notice")).to_contain_text("is disabled")
    expect(page.get_by_test_id("terminals").locator("tr", has_text="Browser test till").last).to_contain_text("disabled")
    expect(page.get_by_test_id("client-secret")).to_have_count(1)  # still shown until the page is left
    page.reload()
    expect(page.get_by_test_id("client-secret")).to_have_count(0)  # and never again


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_audit_log_lists_a_freeze_made_in_the_browser(signed_in: Page, stack, channel, tenant_admin, lang):
    """A freeze done on the account page is listed on the Audit log screen, filtered by who did it, in words
    (the action, the status before and after), with the API's hash and summary folded away."""
    customer = new_customer(stack, channel)
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(customer.account)}")
    page.get_by_test_id("freeze").click()
    expect(page.get_by_test_id("account-status")).to_contain_text(text(lang, "frozen"))

    admin_token = login_as(stack, "tenant_admin")
    me = auth_stub(channel).GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(admin_token), timeout=10).user
    events = admin_stub(channel).ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(actor=me.name, page_size=20), metadata=bearer(admin_token), timeout=10
    ).audit_events
    freeze = next(event for event in events if event.method.endswith("/FreezeAccount") and resource_id(customer.account) in event.summary_json)

    page.get_by_test_id("navigation").get_by_role("link", name=text(lang, "audit")).click()
    expect(page.get_by_test_id("audit-events")).to_be_visible()
    page.get_by_placeholder(text(lang, "actor_placeholder")).fill(me.name)
    page.get_by_test_id("audit-filters").get_by_role("button", name=text(lang, "filter")).click()
    expect(page).to_have_url(re.compile(r"#/audit\?actor="))
    row = page.get_by_test_id("audit-events").locator("tbody tr", has=page.locator(f'a[href="#/accounts/{resource_id(customer.account)}"]'))
    row = row.filter(has=page.get_by_test_id("audit-action").filter(has_text=text(lang, "freeze_action")))
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("audit-action")).to_have_text(text(lang, "freeze_action"))
    expect(row.get_by_test_id("audit-action")).to_have_attribute("title", freeze.method)
    status = f"{text(lang, 'status_field')}: {text(lang, 'active')} → {text(lang, 'frozen')}"
    expect(row.get_by_test_id("audit-change").locator('li[data-field="status"]')).to_have_text(status)
    expect(row).to_contain_text(freeze.request_id)
    # The stored record: folded away (the hash's start shows), whole when opened.
    record = row.get_by_test_id("audit-record")
    expect(record).to_contain_text(freeze.hash_hex[:12])
    expect(record.get_by_test_id("audit-hash")).to_be_hidden()
    record.locator("summary").click()
    expect(record.get_by_test_id("audit-hash")).to_have_text(freeze.hash_hex)
    expect(record.get_by_test_id("audit-summary-json")).to_have_text(freeze.summary_json)
    # Every row is the filtered actor's.
    actors = page.get_by_test_id("audit-events").locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert actors and set(actors) == {me.name}
    screenshot(page, f"09-audit-events-{lang}")
    expect(page.get_by_test_id("error")).to_have_count(0)


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_audit_chain_and_reconciliation(signed_in: Page, lang):
    """The audit chains verify and the ledger reconciles, shown as plain verdicts."""
    page = signed_in
    page.get_by_role("link", name=text(lang, "audit")).click()
    page.get_by_test_id("verify-audit").click()
    expect(page.get_by_test_id("audit-verdict")).to_contain_text(re.compile(text(lang, "intact")))
    screenshot(page, f"09-audit-verified-{lang}")
    page.get_by_role("link", name=text(lang, "reconciliation")).click()
    page.get_by_test_id("reconcile").click()
    expect(page.get_by_test_id("reconciliation-verdict")).to_have_text(text(lang, "balanced"))
    screenshot(page, f"10-reconciliation-{lang}")


def test_an_expiring_access_token_is_refreshed(signed_in: Page, channel):
    """Shortly before the access token expires the page gets a new pair with the refresh token, and keeps working."""
    page = signed_in
    key = "emoney.back-office.session"
    before = page.evaluate(f"JSON.parse(sessionStorage.getItem('{key}'))")
    # Pretend the token expires in a second: the next call refreshes first (the page reads the session on load).
    page.evaluate(
        f"""() => {{ const s = JSON.parse(sessionStorage.getItem('{key}'));
        s.accessExpiresAtMs = Date.now() + 1000; sessionStorage.setItem('{key}', JSON.stringify(s)); }}"""
    )
    page.reload()
    expect(page.get_by_test_id("stat-accounts")).to_be_visible()
    after = page.evaluate(f"JSON.parse(sessionStorage.getItem('{key}'))")
    assert after["refreshToken"] != before["refreshToken"]
    assert after["accessToken"] != before["accessToken"]
    # The page keeps the new token's own expiry (not the faked one, nor its 60 s fallback), no earlier than the old one's...
    new_expiry_ms = jwt.decode(after["accessToken"], options={"verify_signature": False})["exp"] * 1000
    assert after["accessExpiresAtMs"] == new_expiry_ms >= before["accessExpiresAtMs"]
    # ...and the API accepts the new token as the same person.
    me = auth_stub(channel).GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(after["accessToken"]), timeout=10).user
    assert me.name == before["user"]["name"]


def test_sign_out_ends_the_session(signed_in: Page, channel):
    """Signing out returns to the sign-in form, forgets the tokens and revokes the session on the server."""
    page = signed_in
    refresh_token = page.evaluate("JSON.parse(sessionStorage.getItem('emoney.back-office.session')).refreshToken")
    page.get_by_test_id("sign-out").click()
    expect(page.get_by_test_id("notice")).to_have_text("You are signed out.")
    assert page.evaluate("sessionStorage.length") == 0
    page.goto("/#/accounts")
    expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    with pytest.raises(grpc.RpcError) as refused:
        auth_stub(channel).RefreshToken(auth_pb2.RefreshTokenRequest(refresh_token=refresh_token), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- what Envoy serves ------------------------------------------------------------------------


def test_envoy_serves_the_page_with_a_strict_policy(envoy_url):
    """/ is the back office with a strict CSP; its script and style are served with the right types."""
    page = requests.get(f"{envoy_url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    script_path = re.search(r'src="(/app\.js\?v=[0-9a-f]+)"', page.text).group(1)
    script = requests.get(f"{envoy_url}{script_path}", timeout=10)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    style = requests.get(f"{envoy_url}/app.css", timeout=10)
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    # The API's paths are untouched: JSON still answers, unknown paths are still the API's JSON 404.
    assert requests.get(f"{envoy_url}/v1/serverInfo", timeout=10).json()["version"]
    unknown = requests.get(f"{envoy_url}/index.html", timeout=10)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/json"
    # Only GET/HEAD are the page: a POST to / is not served a page.
    assert requests.post(f"{envoy_url}/", data=b"{}", timeout=10).status_code == 404


def test_cors_still_refuses_a_foreign_origin(envoy_url):
    """Serving the page changed nothing for other sites: their grpc-web pre-flight gets no CORS grant."""
    headers = {"access-control-request-method": "POST", "access-control-request-headers": "content-type, x-grpc-web"}
    path = f"{envoy_url}/emoney.auth.v1.AuthService/Login"
    foreign = requests.options(path, headers={**headers, "origin": "https://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in foreign.headers
    own = requests.options(path, headers={**headers, "origin": envoy_url}, timeout=10)
    assert own.headers.get("access-control-allow-origin") == envoy_url


def test_envoy_without_a_built_back_office_says_to_run_make_web(tmp_path):
    """Starting Envoy when web/dist is missing fails at once with the command that fixes it."""
    with pytest.raises(BackOfficeNotBuiltError, match=r"index\.html.*run `make web`"):
        start_envoy(
            config_dir=tmp_path, log_dir=tmp_path, listen_port=1, admin_port=2, upstreams=[("127.0.0.1", 3)],
            descriptor_path=ROOT / "generated" / "emoney.binpb", allowed_origins=["http://127.0.0.1:1"],
            web_dist_path=tmp_path / "no-dist",
        )
    assert not (tmp_path / "envoy.yaml").exists()


@pytest.mark.parametrize(("route", "testid"), [
    ("#/", "payments-today"), ("#/payments", "payments"), ("#/accounts", "accounts"), ("#/audit", "audit-events"),
])
def test_every_list_fits_a_390_pixel_screen(signed_in: Page, stack, channel, route, testid):
    """On a phone the tables scroll sideways inside their cards; the page itself never does (they used to
    spill out of their cards)."""
    customer, shop = new_customer(stack, channel, funded_minor=2_000), new_shop(stack, channel)
    _charge(channel, shop, customer, 321)
    signed_in.set_viewport_size({"width": 390, "height": 844})
    signed_in.goto(f"/{route}")
    listed = signed_in.get_by_test_id(testid)
    expect(listed).to_be_visible()
    assert signed_in.evaluate("document.documentElement.scrollWidth") <= 390
    frame = listed.locator("xpath=..").bounding_box()  # the scrolling frame around the table
    assert frame is not None and frame["x"] >= 0 and frame["x"] + frame["width"] <= 390, frame
    # The table keeps its columns and can be scrolled to: wider than its frame, not squeezed out of shape.
    assert listed.evaluate("table => table.parentElement.scrollWidth >= table.parentElement.clientWidth")
    screenshot(signed_in, f"phone-{testid}")


# Every statement read of the account screen answers 1.5 s late: a redraw after a top-up is still loading when
# the person acts on the new screen.
SLOW_STATEMENTS = """
const original = window.fetch.bind(window);
window.fetch = async (input, init) => {
  const response = await original(input, init);
  const url = typeof input === "string" ? input : input.url;
  if (url.includes("/ListAccountEntries")) await new Promise((resolve) => setTimeout(resolve, 1500));
  return response;
};
"""


def test_a_slow_redraw_never_hides_the_error_of_what_was_done_meanwhile(page: Page, stack, tenant_admin, channel):
    """A top-up redraws the account screen; while its statement still loads, a refused top-up on the new screen
    shows its error — and the end of the first redraw must not replace that error with the first notice."""
    holder = new_customer(stack, channel)
    page.add_init_script(SLOW_STATEMENTS)
    sign_in(page, tenant_admin.email, tenant_admin.password)
    expect(page.get_by_test_id("who")).to_contain_text(tenant_admin.email)
    page.goto(f"/#/{holder.account}")
    top_up = page.get_by_test_id("top-up")
    top_up.locator("input").fill("20")
    top_up.get_by_role("button").click()
    expect(page.get_by_test_id("account-balance")).to_contain_text(money("en", 2_000))
    page.get_by_test_id("top-up").locator("input").fill("1,250")  # ambiguous in English: refused
    page.get_by_test_id("top-up").get_by_role("button").click()
    expect(page.get_by_test_id("error")).to_contain_text(text("en", "ambiguous"))
    page.wait_for_timeout(2_500)  # the first redraw's statement has arrived by now
    expect(page.get_by_test_id("error")).to_contain_text(text("en", "ambiguous"))
