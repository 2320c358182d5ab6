"""The back office an operator would choose (issue 15, item 4), in a real browser against the real stack: people's
and terminals' names instead of ids in every list, the tenant's identity levels (the ladder, its limits per
currency, the time zone and language — changed by a tenant admin, read by an operator), a customer's level
changed with a reason, a terminal's daily charge limit, and a statement exported from the account screen to a
download link. The journeys run in English and in Brazilian Portuguese; each checks the API agrees.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import grpc
import pytest
import requests
from playwright.sync_api import Page, expect

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from tests.browser.conftest import screenshot, sign_in, resource_id
from tests.browser.language import LANGUAGES, english_left, money, text
from tests.fixtures.identity import admin_stub, auth_stub, bearer, create_tenant, login_as, unique_email
from tests.fixtures.ledger import Holder, accounts_stub, new_shop, payment_code, payments_stub, request_id

# Writing a statement is a background job (a worker polls every second): generous on a loaded 2-core machine.
EXPORT_TIMEOUT_MS = 45_000


def _named_customer(stack, channel, display_name: str, tenant: str = "tenants/demo-city", funded_minor: int = 0,
                    operator_token: str | None = None) -> Holder:
    """A citizen who signed up with `display_name`, with the EUR account sign-up opened, topped up by an operator."""
    answer = auth_stub(channel).SignUp(
        auth_pb2.SignUpRequest(tenant=tenant, email=unique_email("named"), password="correct horse battery", display_name=display_name),
        timeout=10,
    )
    token = answer.tokens.access_token
    [account] = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(token), timeout=10).accounts
    if funded_minor:
        payments_stub(channel).TopUp(
            payments_pb2.TopUpRequest(request_id=request_id(), account=account.name, amount_minor=funded_minor, currency="EUR"),
            metadata=bearer(operator_token or login_as(stack, "operator")), timeout=10,
        )
    return Holder(token, account.name, answer.user.name)


def _transfer(channel, payer: Holder, payee: Holder, amount_minor: int, description: str) -> payments_pb2.Payment:
    return payments_stub(channel).CreateTransfer(
        payments_pb2.CreateTransferRequest(request_id=request_id(), from_account=payer.account, to_account=payee.account,
                                           amount_minor=amount_minor, currency="EUR", description=description),
        metadata=bearer(payer.token), timeout=10,
    ).payment


def _charge(channel, terminal_token: str, customer: Holder, amount_minor: int) -> payments_pb2.Payment:
    return payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(
            request_id=request_id(), code=payment_code(channel, customer, amount_minor), amount_minor=amount_minor, currency="EUR"
        ),
        metadata=bearer(terminal_token), timeout=10,
    ).payment


def _row_of(page: Page, testid: str, href: str):
    """The row of table `testid` holding a link to `href`."""
    return page.get_by_test_id(testid).locator("tbody tr", has=page.locator(f'a[href="{href}"]'))


# --- names, not ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_lists_show_peoples_and_terminals_names(signed_in: Page, stack, channel, lang):
    """Payments (the list, the dashboard's, an account's, one payment's page) read as who paid whom — the holders'
    names, the float's label for a top-up, the terminal's name, the description — and the accounts list names each
    account's holder; the ids stay the links' targets and tooltips."""
    suffix = uuid.uuid4().hex[:6]
    payer = _named_customer(stack, channel, f"Beatriz Pagadora {suffix}", funded_minor=5_000)
    payee = _named_customer(stack, channel, f"Carlos Recebedor {suffix}")
    transfer = _transfer(channel, payer, payee, 1_250, f"aluguel março {suffix}")
    shop = new_shop(stack, channel)  # a merchant called "Shop" with a terminal called "Till"
    charge = _charge(channel, shop.terminal_token, payer, 300)
    [top_up] = [payment for payment in payments_stub(channel).ListPayments(
        payments_pb2.ListPaymentsRequest(account=payer.account, page_size=10), metadata=bearer(payer.token), timeout=10,
    ).payments if payment.kind == payments_pb2.PAYMENT_KIND_TOP_UP]
    page = signed_in

    page.goto(f"/#/payments?account={resource_id(payer.account)}")
    row = _row_of(page, "payments", f"#/payments/{resource_id(transfer.name)}")
    expect(row).to_have_count(1)
    payer_link = row.get_by_role("link", name=f"Beatriz Pagadora {suffix}")
    expect(payer_link).to_have_attribute("href", f"#/accounts/{resource_id(payer.account)}")
    expect(payer_link).to_have_attribute("title", payer.account)
    expect(row.get_by_role("link", name=f"Carlos Recebedor {suffix}")).to_have_attribute("href", f"#/accounts/{resource_id(payee.account)}")
    expect(row.get_by_test_id("payment-description")).to_have_text(f"aluguel março {suffix}")
    expect(row).not_to_contain_text(resource_id(payer.account)[:8])  # the name, not the id
    top_up_row = _row_of(page, "payments", f"#/payments/{resource_id(top_up.name)}")
    expect(top_up_row.get_by_role("link", name=text(lang, "float"))).to_have_count(1)
    charge_row = _row_of(page, "payments", f"#/payments/{resource_id(charge.name)}")
    expect(charge_row.get_by_role("link", name="Shop", exact=True)).to_have_attribute("href", f"#/accounts/{resource_id(shop.account)}")
    expect(charge_row.get_by_test_id("payment-terminal")).to_have_text(text(lang, "via", name="Till"))
    expect(charge_row.get_by_test_id("payment-terminal")).to_have_attribute("title", shop.terminal)
    screenshot(page, f"names-01-payments-{lang}")

    # The dashboard's list of today's payments (the latest 15: these are among them).
    page.goto("/#/")
    today = _row_of(page, "payments-today", f"#/payments/{resource_id(transfer.name)}")
    expect(today).to_contain_text(f"Beatriz Pagadora {suffix}")
    expect(today).to_contain_text(f"Carlos Recebedor {suffix}")

    # One payment's page: names, the ids in small print, the terminal's name, the description.
    page.goto(f"/#/payments/{resource_id(charge.name)}")
    expect(page.get_by_test_id("payment-from")).to_contain_text(f"Beatriz Pagadora {suffix}")
    expect(page.get_by_test_id("payment-from").locator("small.id")).to_have_text(resource_id(payer.account)[:8])
    expect(page.get_by_test_id("payment-to")).to_contain_text("Shop")
    expect(page.get_by_test_id("payment-terminal")).to_contain_text("Till")
    page.goto(f"/#/payments/{resource_id(transfer.name)}")
    expect(page.get_by_test_id("payment-description")).to_have_text(f"aluguel março {suffix}")

    # The accounts list: each account named after its holder, the float after itself.
    page.goto("/#/accounts")
    holder = _row_of(page, "accounts", f"#/accounts/{resource_id(payee.account)}")
    expect(holder.get_by_test_id("account-holder")).to_contain_text(f"Carlos Recebedor {suffix}")
    expect(holder.get_by_role("link")).to_have_attribute("title", payee.account)
    expect(page.get_by_test_id("accounts").get_by_role("link", name=text(lang, "float")).first).to_be_visible()
    screenshot(page, f"names-02-accounts-{lang}")

    # The account screen: its holder's name in the heading, names in its payments and its statement's descriptions.
    page.get_by_role("link", name=f"Carlos Recebedor {suffix}").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"Carlos Recebedor {suffix}")
    expect(page.get_by_test_id("account-name")).to_have_text(payee.account)
    expect(_row_of(page, "account-payments", f"#/payments/{resource_id(transfer.name)}")).to_contain_text(f"Beatriz Pagadora {suffix}")
    expect(page.get_by_test_id("entry-description")).to_have_text(f"aluguel março {suffix}")
    expect(page.get_by_test_id("error")).to_have_count(0)


# --- identity levels --------------------------------------------------------------------------


@dataclass
class Town:
    """A tenant of its own (levels are tenant-wide: the shared demo tenant's customers keep having none)."""

    slug: str
    admin_email: str
    admin_password: str
    admin_token: str


def _new_town(stack) -> Town:
    created, token = create_tenant(stack, "ladder")
    return Town(created.tenant.tenant.slug, created.admin.email, created.admin_initial_password, token)


def _new_operator(stack, channel, town: Town) -> tuple[str, str]:
    """An operator of the town (e-mail, password)."""
    made = admin_stub(channel).CreateUser(
        admin_pb2.CreateUserRequest(email=unique_email("operator"), display_name="Otto Operador", roles=[auth_pb2.ROLE_OPERATOR]),
        metadata=bearer(town.admin_token), timeout=10,
    )
    return made.user.email, made.initial_password


def _decimal(lang: str, typed: str) -> str:
    """An amount as a person of the language types it: `50.00` → `50,00` in Portuguese."""
    return typed.replace(".", ",") if lang == "pt-BR" else typed


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_a_tenant_admin_sets_up_the_ladder_and_an_operator_reads_it(page: Page, stack, channel, lang):
    """A tenant admin creates levels with limits in one and two currencies (amounts typed the language's way),
    edits one, and changes the time zone and language; the ladder lists them with the money formatted and "no
    limit" for what is unset, and the API agrees. An operator of the tenant sees the same, without the forms."""
    town = _new_town(stack)
    sign_in(page, town.admin_email, town.admin_password, tenant=town.slug)
    page.get_by_test_id("navigation").get_by_role("link", name=text(lang, "levels"), exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(text(lang, "levels"))
    expect(page.get_by_test_id("levels")).to_have_text(text(lang, "no_levels_yet"))

    form = page.get_by_test_id("level-form")
    form.locator("#field-level-code").fill("basico")
    form.locator("#field-level-name").fill("Básico")
    form.locator("#field-level-rank").fill("0")
    expect(form.locator("#field-limit-0-currency")).to_have_value("EUR")  # the tenant's currency to begin with
    form.get_by_label(text(lang, "max_payment")).fill(_decimal(lang, "50.00"))
    form.get_by_label(text(lang, "daily_sent")).fill("1.000,00" if lang == "pt-BR" else "1,000.00")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "level_saved", name="Básico"))
    basic = page.get_by_test_id("levels").locator("tbody tr", has_text="basico")
    expect(basic).to_contain_text(money(lang, 5_000))
    expect(basic).to_contain_text(money(lang, 100_000))
    expect(basic).to_contain_text(text(lang, "no_limit"))

    # A second level with limits in two currencies.
    form = page.get_by_test_id("level-form")
    form.locator("#field-level-code").fill("completo")
    form.locator("#field-level-name").fill("Completo (documento conferido)")
    form.locator("#field-level-rank").fill("10")
    form.locator("#field-limit-0-dailySent").fill(_decimal(lang, "5000"))
    form.get_by_test_id("add-currency").click()
    form.locator("#field-limit-1-currency").fill("brl")
    form.locator("#field-limit-1-maxBalance").fill(_decimal(lang, "20000.50"))
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "level_saved", name="Completo (documento conferido)"))
    ladder = page.get_by_test_id("levels")
    expect(ladder.locator("tbody tr")).to_have_count(3)  # basico (EUR), completo (EUR, BRL)
    # A level's currencies in alphabetical order, the level named on its first row only.
    expect(ladder.locator("tbody tr").nth(1)).to_contain_text("completo")
    expect(ladder.locator("tbody tr").nth(1)).to_contain_text(money(lang, 2_000_050, "BRL"))
    expect(ladder.locator("tbody tr").nth(2)).not_to_contain_text("completo")
    expect(ladder.locator("tbody tr").nth(2)).to_contain_text(money(lang, 500_000))

    # Editing fills the form with the level; saving replaces it by its code.
    page.locator('[data-testid="edit-level"][data-level="basico"]').click()
    form = page.get_by_test_id("level-form")
    expect(form.locator("#field-level-code")).to_have_value("basico")
    expect(form.get_by_label(text(lang, "max_payment"))).to_have_value(_decimal(lang, "50.00"))
    form.get_by_label(text(lang, "max_payment")).fill(_decimal(lang, "75"))
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "level_saved", name="Básico"))
    expect(page.get_by_test_id("levels").locator("tbody tr", has_text="basico")).to_contain_text(money(lang, 7_500))

    # The time zone and the language.
    page.get_by_test_id("settings-form").locator("#field-time-zone").fill("America/Sao_Paulo")
    page.get_by_test_id("settings-form").locator("#field-tenant-language").select_option("pt-BR")
    page.get_by_test_id("settings-form").locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "settings_saved"))
    expect(page.get_by_test_id("tenant-time-zone")).to_have_text("America/Sao_Paulo")
    expect(page.get_by_test_id("tenant-language")).to_have_text("Português (Brasil)")
    expect(page.get_by_test_id("error")).to_have_count(0)
    if lang == "pt-BR":
        assert english_left(page) == []
    screenshot(page, f"levels-01-admin-{lang}")

    listed = admin_stub(channel).ListIdentityLevels(admin_pb2.ListIdentityLevelsRequest(), metadata=bearer(town.admin_token), timeout=10)
    assert (listed.time_zone, listed.language) == ("America/Sao_Paulo", "pt-BR")
    assert [(level.code, level.display_name, level.rank) for level in listed.identity_levels] == [
        ("basico", "Básico", 0), ("completo", "Completo (documento conferido)", 10)]
    [basic_eur] = listed.identity_levels[0].limits
    assert (basic_eur.currency, basic_eur.max_payment_minor, basic_eur.daily_sent_minor) == ("EUR", 7_500, 100_000)
    assert not basic_eur.HasField("max_balance_minor") and not basic_eur.HasField("monthly_received_minor")
    full_limits = {limits.currency: limits for limits in listed.identity_levels[1].limits}
    assert full_limits["EUR"].daily_sent_minor == 500_000 and full_limits["BRL"].max_balance_minor == 2_000_050

    # An operator reads the ladder and the settings, and is offered no form.
    email, password = _new_operator(stack, channel, town)
    page.get_by_test_id("sign-out").click()
    sign_in(page, email, password, tenant=town.slug)
    expect(page.get_by_test_id("who")).to_contain_text(email)
    page.goto("/#/levels")
    expect(page.get_by_test_id("levels").locator("tbody tr")).to_have_count(3)
    expect(page.get_by_test_id("admins-only")).to_have_text(text(lang, "admins_only"))
    expect(page.get_by_test_id("tenant-time-zone")).to_have_text("America/Sao_Paulo")
    expect(page.get_by_test_id("level-form")).to_have_count(0)
    expect(page.get_by_test_id("settings-form")).to_have_count(0)
    expect(page.get_by_test_id("edit-level")).to_have_count(0)
    if lang == "pt-BR":
        assert english_left(page) == []
    screenshot(page, f"levels-02-operator-{lang}")


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_an_operator_changes_a_customers_level_with_a_reason(page: Page, stack, channel, lang):
    """The customers list shows each customer's level (none set: the lowest); an operator puts one at a higher
    level with a reason, is told the change, and the list and the API show the new level; the audit log keeps the reason."""
    town = _new_town(stack)
    admin = admin_stub(channel)
    for level in (
        admin_pb2.IdentityLevel(code="basic", display_name="Básico", rank=0,
                                limits=[admin_pb2.LevelLimits(currency="EUR", max_payment_minor=5_000)]),
        admin_pb2.IdentityLevel(code="full", display_name="Completo", rank=10),
    ):
        admin.SetIdentityLevel(admin_pb2.SetIdentityLevelRequest(identity_level=level), metadata=bearer(town.admin_token), timeout=10)
    suffix = uuid.uuid4().hex[:6]
    customer = _named_customer(stack, channel, f"Dora Cliente {suffix}", tenant=f"tenants/{town.slug}")
    email, password = _new_operator(stack, channel, town)
    sign_in(page, email, password, tenant=town.slug)
    expect(page.get_by_test_id("who")).to_contain_text(email)

    page.goto("/#/customers")
    row = _row_of(page, "people", f"#/users/{resource_id(customer.user)}")
    expect(row.get_by_test_id("person-level")).to_contain_text("Básico")
    row.get_by_test_id("person-level").get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Dora Cliente {suffix}")
    expect(page.locator("#field-level-reason")).to_be_focused()
    expect(page.locator('p[data-testid="person-level"]')).to_have_text(text(lang, "at_level", name="Básico"))
    form = page.get_by_test_id("set-level")
    form.get_by_label(text(lang, "new_level")).select_option("full")
    form.get_by_label(text(lang, "reason")).fill("documento conferido no balcão")
    form.get_by_role("button").click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "level_changed", before="Básico", after="Completo"))
    expect(page.locator('p[data-testid="person-level"]')).to_have_text(text(lang, "at_level", name="Completo"))
    if lang == "pt-BR":
        assert english_left(page) == []
    screenshot(page, f"levels-03-customer-level-{lang}")

    page.get_by_test_id("navigation").get_by_role("link", name=text(lang, "customers"), exact=True).click()
    expect(_row_of(page, "people", f"#/users/{resource_id(customer.user)}").get_by_test_id("person-level")).to_contain_text("Completo")
    screenshot(page, f"levels-04-customers-{lang}")

    users = admin.ListUsers(admin_pb2.ListUsersRequest(role=auth_pb2.ROLE_CUSTOMER, page_size=100), metadata=bearer(town.admin_token), timeout=10)
    assert next(user for user in users.users if user.name == customer.user).level == "full"
    events = admin.ListAuditEvents(admin_pb2.ListAuditEventsRequest(page_size=20), metadata=bearer(town.admin_token), timeout=10).audit_events
    assert any(event.method.endswith("/SetUserLevel") and "documento conferido no balcão" in event.summary_json for event in events)


# --- terminals' daily limits --------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_a_terminals_daily_limit_is_set_shown_and_removed(signed_in: Page, stack, channel, lang):
    """The terminals list shows each terminal's daily charge limit; setting one (typed the language's way) is
    shown, stored and enforced; removing it leaves no limit."""
    shop = new_shop(stack, channel)
    operator = bearer(login_as(stack, "operator"))
    merchant = auth_stub(channel).GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=bearer(shop.token), timeout=10).user
    till_name = f"Caixa limitado {uuid.uuid4().hex[:6]}"
    registered = admin_stub(channel).RegisterTerminal(
        admin_pb2.RegisterTerminalRequest(merchant=merchant.name, display_name=till_name), metadata=operator, timeout=10,
    )
    page = signed_in
    page.get_by_test_id("navigation").get_by_role("link", name=text(lang, "terminals"), exact=True).click()
    row = page.get_by_test_id("terminals").locator("tbody tr", has_text=till_name)
    expect(row.get_by_test_id("terminal-limit")).to_have_text(text(lang, "no_limit"))
    row.get_by_role("textbox").fill(_decimal(lang, "20.00"))
    row.get_by_role("button", name=text(lang, "set_limit"), exact=True).click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "limit_set", name=till_name, amount=money(lang, 2_000)))
    row = page.get_by_test_id("terminals").locator("tbody tr", has_text=till_name)
    expect(row.get_by_test_id("terminal-limit")).to_have_text(money(lang, 2_000))
    expect(row.get_by_role("textbox")).to_have_value(_decimal(lang, "20.00"))
    screenshot(page, f"terminals-limit-{lang}")

    def listed_limit():
        terminals = admin_stub(channel).ListTerminals(admin_pb2.ListTerminalsRequest(page_size=100), metadata=operator, timeout=10)
        while True:
            found = next((terminal for terminal in terminals.terminals if terminal.name == registered.terminal.name), None)
            if found or not terminals.next_page_token:
                return found
            terminals = admin_stub(channel).ListTerminals(
                admin_pb2.ListTerminalsRequest(page_size=100, page_token=terminals.next_page_token), metadata=operator, timeout=10)

    stored = listed_limit()
    assert stored.HasField("daily_charge_limit_minor") and stored.daily_charge_limit_minor == 2_000
    # The ledger holds the terminal to it: a charge past it is refused.
    till_token = auth_stub(channel).LoginTerminal(
        auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret=registered.client_secret), timeout=10,
    ).tokens.access_token
    customer = _named_customer(stack, channel, "Eva Compradora", funded_minor=5_000)
    with pytest.raises(grpc.RpcError):
        _charge(channel, till_token, customer, 2_500)

    row.get_by_role("button", name=text(lang, "remove_limit")).click()
    expect(page.get_by_test_id("notice")).to_have_text(text(lang, "limit_removed", name=till_name))
    expect(page.get_by_test_id("terminals").locator("tbody tr", has_text=till_name).get_by_test_id("terminal-limit")).to_have_text(
        text(lang, "no_limit"))
    assert not listed_limit().HasField("daily_charge_limit_minor")
    _charge(channel, till_token, customer, 2_500)  # no limit now


# --- statement export -------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "document_format"), [("en", "pdf"), ("pt-BR", "csv"), ("en", "csv"), ("pt-BR", "pdf")],
                         indirect=["lang"])
def test_a_statement_is_exported_from_the_account_screen(signed_in: Page, stack, channel, lang, document_format):
    """The account screen exports the current month (the default period) as PDF or CSV: it shows the export's
    progress, then a link that downloads the document."""
    suffix = uuid.uuid4().hex[:6]
    payer = _named_customer(stack, channel, f"Fábio Extrato {suffix}", funded_minor=9_000)
    payee = _named_customer(stack, channel, f"Gil Extrato {suffix}")
    _transfer(channel, payer, payee, 1_234, f"conta de luz {suffix}")
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(payer.account)}")
    export = page.get_by_test_id("export-statement")
    # The current month, in the tenant's time zone (the demo tenant's is UTC).
    now = datetime.now(timezone.utc)
    expect(export.locator("#field-export-from")).to_have_value(now.strftime("%Y-%m-01"))
    expect(export.locator("#field-export-until")).to_have_value(re.compile(now.strftime(r"^%Y-%m-(28|29|30|31)$")))
    export.get_by_label(text(lang, "format")).select_option(document_format)
    # In Portuguese the document is asked for in Portuguese too (the demo tenant's own language is English).
    document_language = "pt-BR" if lang == "pt-BR" else ""
    export.get_by_label(text(lang, "language")).select_option(document_language)
    with page.expect_request(lambda sent: sent.url.endswith("/emoney.accounts.v1.AccountsService/GetStatementExport")):
        export.get_by_role("button", name=text(lang, "export"), exact=True).click()
    download = page.get_by_test_id("export-download")
    expect(download).to_be_visible(timeout=EXPORT_TIMEOUT_MS)
    expect(page.get_by_test_id("export-state")).to_have_text(text(lang, "export_ready"))
    expect(download).to_contain_text(text(lang, "download", format=document_format.upper()))
    screenshot(page, f"statement-export-{document_format}-{lang}")

    fetched = requests.get(download.get_attribute("href"), timeout=10)
    assert fetched.status_code == 200, fetched.text
    if document_format == "pdf":
        assert fetched.content.startswith(b"%PDF")
    else:
        # Portuguese CSV separates with semicolons (its decimals have commas).
        rows = list(csv.reader(io.StringIO(fetched.content.decode("utf-8-sig")), delimiter=";" if document_language == "pt-BR" else ","))
        assert any(f"conta de luz {suffix}" in cell for row in rows for cell in row), rows
    expect(page.get_by_test_id("error")).to_have_count(0)


def test_a_refused_export_is_explained(signed_in: Page, stack, channel):
    """A period the page cannot export (the end before the start) is said so, and nothing is asked of the server."""
    customer = _named_customer(stack, channel, "Hugo Periodo")
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(customer.account)}")
    export = page.get_by_test_id("export-statement")
    export.locator("#field-export-from").fill("2026-03-10")
    export.locator("#field-export-until").fill("2026-03-01")
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.url.endswith("/ExportStatement") else None)
    export.get_by_role("button", name="Export", exact=True).click()
    expect(page.get_by_test_id("error")).to_have_text("Choose a start on or before the end, at most 366 days apart.")
    assert sent == []
