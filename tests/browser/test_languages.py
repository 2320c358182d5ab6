"""The back office in English and in Brazilian Portuguese, in a real browser against the real stack.

The language follows the browser's (any `pt…` → pt-BR, else English) until someone picks one with the
switch shown on every screen, which is remembered (localStorage) and sets `<html lang>`. Every screen of
the Portuguese back office is walked for English left over; amounts and dates are the locale's (Intl).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from emoney.accounts.v1 import accounts_pb2
from emoney.payments.v1 import payments_pb2
from tests.browser.conftest import screenshot, sign_in, resource_id
from tests.browser.language import LANGUAGES, english_left, money, normalized, text
from tests.fixtures.identity import bearer, login_as, sign_up
from tests.fixtures.ledger import accounts_stub, new_customer, new_shop, payment_code, payments_stub, request_id

STORAGE_KEY = "emoney.back-office.language"


def _expect_language(page: Page, lang: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(page.get_by_test_id(f"language-{lang}")).to_have_attribute("aria-pressed", "true")


@pytest.mark.parametrize(
    ("browser_locale", "lang"),
    [("pt-BR", "pt-BR"), ("pt-PT", "pt-BR"), ("pt", "pt-BR"), ("en-US", "en"), ("en-GB", "en"), ("de-DE", "en"), ("es-ES", "en")],
)
def test_the_language_follows_the_browser(page: Page, browser_locale: str, lang: str):
    """With nothing chosen yet, the browser's language decides: Portuguese of any country → pt-BR, anything else → English."""
    page.goto("/")
    expect(page.get_by_test_id("sign-in")).to_have_text(text(lang, "sign_in"))
    _expect_language(page, lang)
    assert page.evaluate(f"localStorage.getItem('{STORAGE_KEY}')") is None
    assert page.title() == ("Painel administrativo e-Money" if lang == "pt-BR" else "e-Money back office")


def test_the_language_switch_works_on_every_screen_and_is_remembered(page: Page, tenant_admin, browser: Browser, envoy_url: str):
    """The switch is on the sign-in page and on every screen once signed in; the choice outlives a reload and
    a new tab, and wins over the browser's language."""
    page.goto("/")
    _expect_language(page, "en")
    page.get_by_test_id("language-pt-BR").click()
    _expect_language(page, "pt-BR")
    expect(page.get_by_test_id("sign-in")).to_have_text("Entrar")
    expect(page.get_by_text("Senha", exact=True)).to_be_visible()
    screenshot(page, "lang-01-sign-in-pt-BR")
    assert page.evaluate(f"localStorage.getItem('{STORAGE_KEY}')") == "pt-BR"
    page.reload()
    _expect_language(page, "pt-BR")

    sign_in(page, tenant_admin.email, tenant_admin.password)
    expect(page.get_by_test_id("sign-out")).to_have_text("Sair")
    for screen in ["dashboard", "customers", "accounts", "payments", "live", "terminals", "levels", "audit", "reconciliation"]:
        page.get_by_test_id("navigation").get_by_role("link", name=text("pt-BR", screen), exact=True).click()
        expect(page.get_by_test_id("language-switch")).to_be_visible()
    # Back to English on the spot: the current screen is drawn again in it.
    page.get_by_test_id("language-en").click()
    _expect_language(page, "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ledger reconciliation")
    expect(page.get_by_test_id("navigation")).to_contain_text("Payments")
    page.get_by_test_id("language-pt-BR").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Conciliação do razão")

    # A new tab of an English browser (same storage) opens in the language chosen, not the browser's.
    other = page.context.new_page()
    other.goto("/")
    _expect_language(other, "pt-BR")
    other.close()
    # A browser that never chose keeps following its own language.
    fresh = browser.new_context(base_url=envoy_url, locale="en-GB")
    try:
        fresh_page = fresh.new_page()
        fresh_page.goto("/")
        _expect_language(fresh_page, "en")
    finally:
        fresh.close()


def _brl_account(stack, channel, amount_minor: int) -> str:
    """A customer account in Brazilian reais with `amount_minor` on it (topped up by the operator)."""
    session, _ = sign_up(stack.endpoints.envoy)
    account = accounts_stub(channel).CreateAccount(
        accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency="BRL"),
        metadata=bearer(session.tokens.access_token), timeout=10,
    ).account
    payments_stub(channel).TopUp(
        payments_pb2.TopUpRequest(request_id=request_id(), account=account.name, amount_minor=amount_minor, currency="BRL"),
        metadata=bearer(login_as(stack, "operator")), timeout=10,
    )
    return account.name


@pytest.mark.parametrize("lang", LANGUAGES, indirect=True)
def test_amounts_and_dates_are_the_languages(signed_in: Page, stack, channel, lang):
    """Money is formatted by Intl for the language with the currency's symbol and decimals: R$ 1.234,56 in
    Portuguese, R$1,234.56 in English; dates likewise."""
    account = _brl_account(stack, channel, 123_456)
    page = signed_in
    page.goto(f"/#/accounts/{resource_id(account)}")
    expect(page.get_by_test_id("account-balance")).to_contain_text(money(lang, 123_456, "BRL"))
    expect(page.get_by_test_id("statement")).to_contain_text(money(lang, 123_456, "BRL"))
    shown = normalized(page.get_by_test_id("account-balance").locator(".stat-value").inner_text())
    assert shown == ("R$ 1.234,56" if lang == "pt-BR" else "R$1,234.56"), shown
    # "6 de dez. de 2026, 14:03:50" / "6 Dec 2026, 14:03:50"
    opened = page.get_by_test_id("account-owner").inner_text()
    month = r"de [a-zç]{3}\. de" if lang == "pt-BR" else r"[A-Z][a-z]{2}"
    assert re.search(rf"\d{{1,2}} {month} \d{{4}}, \d{{2}}:\d{{2}}:\d{{2}}", opened), opened
    screenshot(page, f"lang-02-brl-account-{lang}")


def test_no_english_is_left_on_any_portuguese_screen(browser: Browser, envoy_url: str, stack, channel, tenant_admin):
    """Walks every screen of the back office in pt-BR (with data on each: payments, a refund, a frozen
    account, a terminal, a statement export) and finds none of the back office's English words on it; screenshots each.
    The identity levels screen is walked here as the demo tenant has it (its forms, for the tenant admin);
    tests/browser/test_operator_choice.py checks it in Portuguese with levels on it, as an admin and as an operator."""
    customer, shop = new_customer(stack, channel, funded_minor=5_000), new_shop(stack, channel)
    payment = payments_stub(channel).ChargePaymentCode(
        payments_pb2.ChargePaymentCodeRequest(
            request_id=request_id(), code=payment_code(channel, customer, 1_234), amount_minor=1_234, currency="EUR"
        ),
        metadata=bearer(shop.terminal_token), timeout=10,
    ).payment
    payments_stub(channel).RefundPayment(
        payments_pb2.RefundPaymentRequest(request_id=request_id(), name=payment.name, amount_minor=34), metadata=bearer(shop.token), timeout=10
    )
    frozen = new_customer(stack, channel, funded_minor=100)
    accounts_stub(channel).FreezeAccount(
        accounts_pb2.FreezeAccountRequest(name=frozen.account), metadata=bearer(login_as(stack, "operator")), timeout=10
    )
    context = browser.new_context(base_url=envoy_url, viewport={"width": 1360, "height": 900}, locale="pt-BR")
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("/")
        assert english_left(page) == [], "sign-in"
        screenshot(page, "pt-BR-00-sign-in")
        sign_in(page, tenant_admin.email, tenant_admin.password)
        expect(page.get_by_test_id("stat-accounts")).to_be_visible()
        screens = [
            ("#/", "payments-today", "Painel"),
            ("#/customers", "people", "Clientes"),
            ("#/merchants", "people", "Lojistas"),
            (f"#/users/{resource_id(customer.user)}", "person-accounts", None),
            ("#/accounts", "accounts", "Contas"),
            (f"#/accounts/{resource_id(customer.account)}", "statement", None),
            (f"#/accounts/{resource_id(frozen.account)}", "statement", None),
            ("#/payments", "payments", "Pagamentos"),
            (f"#/payments/{resource_id(payment.name)}", "payment-details", "Pagamento"),
            ("#/live", "live-table", "Pagamentos ao vivo"),
            ("#/terminals", "terminals", "Terminais"),
            ("#/levels", "levels", "Níveis de identificação"),
            ("#/audit", "audit-events", "Auditoria"),
            ("#/reconciliation", "reconcile", "Conciliação do razão"),
            ("#/no-such-page", None, "Página não encontrada"),
        ]
        for number, (route, testid, heading) in enumerate(screens, start=1):
            page.goto(f"/{route}")
            if testid:
                expect(page.get_by_test_id(testid)).to_be_visible()
            if heading:
                expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
            expect(page.locator(".loading")).to_have_count(0)
            if route == "#/live":
                expect(page.get_by_test_id("live-state")).to_have_text("ao vivo")
            if route == "#/reconciliation":
                page.get_by_test_id("reconcile").click()
                expect(page.get_by_test_id("reconciliation-verdict")).to_be_visible()
            if route == "#/audit":
                page.get_by_test_id("verify-audit").click()
                expect(page.get_by_test_id("audit-verdict")).to_be_visible()
            expect(page.get_by_test_id("error")).to_have_count(0)
            assert english_left(page) == [], route
            name = route.strip("#/").split("/")[0] or "dashboard"
            screenshot(page, f"pt-BR-{number:02d}-{name}")
        # What the forms say back: a refused top-up and a refused amount, in Portuguese too.
        page.goto(f"/#/accounts/{resource_id(frozen.account)}")
        page.get_by_label("Recarregar (EUR)").fill("5")
        page.get_by_test_id("top-up").get_by_role("button").click()
        expect(page.get_by_test_id("error")).to_have_text("A conta está congelada: não pode enviar nem receber dinheiro.")
        page.get_by_label("Recarregar (EUR)").fill("cinco")
        page.get_by_test_id("top-up").get_by_role("button").click()
        expect(page.get_by_test_id("error")).to_have_text("“cinco” não é um valor: escreva como 12,50")
        assert english_left(page) == [], "account errors"
        # A statement exported from the account screen: its progress and its download link, in Portuguese.
        page.goto(f"/#/accounts/{resource_id(customer.account)}")
        page.get_by_test_id("export-statement").get_by_role("button", name="Exportar", exact=True).click()
        expect(page.get_by_test_id("export-download")).to_be_visible(timeout=45_000)
        assert english_left(page) == [], "statement export"
        assert errors == []
    finally:
        context.close()
