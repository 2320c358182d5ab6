"""A real browser for the back office: Debian's Chromium, headless, driven by Playwright.

No browser is downloaded (never `playwright install`): `make test` installs the `chromium` package
(`make chromium`) and Playwright launches that binary. Screenshots land in test-artifacts/browser/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.fixtures.identity import demo_user

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("EMONEY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]
# Long enough for a loaded 2-core machine, short enough that a broken page fails quickly.
expect.set_options(timeout=10_000)
# The back office's languages, and the browser locale each test tab has for one: the page takes its
# language from the browser's (navigator.languages) until someone chooses one with the switch.
BROWSER_LOCALES = {"en": "en-GB", "pt-BR": "pt-BR"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        pytest.fail(f"{CHROMIUM} not found: run `make chromium` (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def lang(request: pytest.FixtureRequest) -> str:
    """The back office's language for the test's tab: English unless the test is parametrized with
    `@pytest.mark.parametrize("lang", ["en", "pt-BR"], indirect=True)`."""
    return getattr(request, "param", "en")


@pytest.fixture
def browser_locale(lang: str) -> str:
    """The tab's browser locale (Playwright's `locale`: navigator.languages and Accept-Language)."""
    return BROWSER_LOCALES[lang]


@pytest.fixture
def page(browser: Browser, envoy_url: str, request: pytest.FixtureRequest, browser_locale: str) -> Iterator[Page]:
    """A fresh tab on the back office; fails the test on any uncaught script error or CSP violation."""
    context = browser.new_context(base_url=envoy_url, viewport={"width": 1360, "height": 900}, locale=browser_locale)
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on(
        "console",
        lambda message: problems.append(f"console: {message.text}")
        if message.type == "error" and "Content Security Policy" in message.text
        else None,
    )
    try:
        yield opened
        assert problems == [], problems
    finally:
        if getattr(request.node, "rep_call_failed", False):
            screenshot(opened, f"FAILED-{request.node.name}")
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call_failed = report.failed


def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(scope="module")
def tenant_admin(stack):
    """The demo tenant's administrator (localstack/provisioning.py DEMO_USERS), as `make run` prints it."""
    return demo_user(stack, "tenant_admin")


def sign_in(page: Page, email: str, password: str, tenant: str = "demo-city") -> None:
    """Signs in through the form (its fields found by id, so in any language)."""
    page.goto("/")
    page.locator("#field-tenant").fill(tenant)
    page.locator("#field-email").fill(email)
    page.locator("#field-password").fill(password)
    page.get_by_test_id("sign-in").click()


@pytest.fixture
def signed_in(page: Page, tenant_admin) -> Page:
    """A tab signed in as the demo tenant admin, on the dashboard."""
    sign_in(page, tenant_admin.email, tenant_admin.password)
    expect(page.get_by_test_id("who")).to_contain_text(tenant_admin.email)
    expect(page.get_by_test_id("stat-accounts")).to_be_visible()
    return page


@pytest.fixture(scope="module")
def channel(stack):
    """A native gRPC channel through Envoy, for a test's own setup calls."""
    with grpc.insecure_channel(stack.endpoints.envoy) as opened:
        yield opened


def resource_id(name: str) -> str:
    """`accounts/<id>` → `<id>`."""
    return name.split("/", 1)[1]
