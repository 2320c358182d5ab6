"""What the back office says in each of its languages (web/src/messages.ts), as the browser tests expect it.

`TEXTS` holds the few sentences and labels the tests look for, per language; `money()` formats an amount as
Intl.NumberFormat does for that language (en-GB: `€1,234.56`, `R$1,234.56`; pt-BR: `€ 1.234,56`, `R$ 1.234,56`);
`english_left()` lists the English words still visible on a page that should be all Portuguese.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page

LANGUAGES = ["en", "pt-BR"]

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "wrong_password": "Wrong e-mail or password.",
        "not_back_office": "for operators and tenant administrators",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "signed_out": "You are signed out.",
        "dashboard": "Dashboard",
        "customers": "Customers",
        "merchants": "Merchants",
        "accounts": "Accounts",
        "payments": "Payments",
        "live": "Live feed",
        "terminals": "Terminals",
        "audit": "Audit log",
        "reconciliation": "Reconciliation",
        "reconciliation_title": "Ledger reconciliation",
        "live_title": "Live payments",
        "balance": "Balance",
        "top_up_kind": "top-up (cash in)",
        "frozen": "frozen",
        "active": "active",
        "top_up_label": "Top up",
        "account_frozen_error": "The account is frozen: it can neither send nor receive money.",
        "topped_up": "Topped up {amount}.",
        "refund_too_much": "That is more than is left to refund on this payment.",
        "refunded": "Refunded {amount}.",
        "first_password": "First password (shown only now",
        "account_open": "The account is open.",
        "ambiguous": "is ambiguous",
        "balanced": "Balanced: every check passed.",
        "intact": r"^Intact: [1-9][\d,]* events",
        "freeze_action": "Account frozen",
        "unfreeze_action": "Account unfrozen",
        "top_up_action": "Top-up (cash in)",
        "refund_action": "Payment refunded",
        "status_field": "Status",
        "amount_field": "Amount",
        "refunded_field": "Refunded",
        "kind_field": "Kind",
        "filter": "Filter",
        "actor_placeholder": "Actor, e.g. users/…",
        "customer_kind": "customer",
        "search_placeholder": "Search by name or e-mail",
        "yes": "yes",
        "levels": "Identity levels",
        "float": "Float (system)",
        "via": "via {name}",
        "no_limit": "No limit",
        "no_levels_yet": "No identity levels yet: customers have no limits.",
        "level_saved": "Level “{name}” saved.",
        "settings_saved": "Settings saved.",
        "admins_only": "Only the organisation's administrators can change the levels and settings.",
        "level_changed": "Level changed from {before} to {after}.",
        "at_level": "At level: {name}",
        "limit_set": "“{name}” may now charge at most {amount} a day.",
        "limit_removed": "“{name}” has no daily charge limit now.",
        "export_ready": "Ready.",
        "code": "Code",
        "rank": "Rank",
        "max_payment": "Largest payment",
        "daily_sent": "Daily sending limit",
        "time_zone": "Time zone",
        "language": "Language",
        "new_level": "New level",
        "reason": "Reason",
        "set_limit": "Set",
        "remove_limit": "Remove limit",
        "export": "Export",
        "format": "Format",
        "download": "Download the statement ({format}",
    },
    "pt-BR": {
        "wrong_password": "E-mail ou senha incorretos.",
        "not_back_office": "para operadores e administradores da organização",
        "sign_in": "Entrar",
        "sign_out": "Sair",
        "signed_out": "Você saiu.",
        "dashboard": "Painel",
        "customers": "Clientes",
        "merchants": "Lojistas",
        "accounts": "Contas",
        "payments": "Pagamentos",
        "live": "Ao vivo",
        "terminals": "Terminais",
        "audit": "Auditoria",
        "reconciliation": "Conciliação",
        "reconciliation_title": "Conciliação do razão",
        "live_title": "Pagamentos ao vivo",
        "balance": "Saldo",
        "top_up_kind": "recarga (depósito em dinheiro)",
        "frozen": "congelada",
        "active": "ativa",
        "top_up_label": "Recarregar",
        "account_frozen_error": "A conta está congelada: não pode enviar nem receber dinheiro.",
        "topped_up": "Recarga de {amount} feita.",
        "refund_too_much": "Isso é mais do que resta para estornar neste pagamento.",
        "refunded": "Estorno de {amount} feito.",
        "first_password": "Primeira senha (mostrada só agora",
        "account_open": "A conta está aberta.",
        "ambiguous": "é ambíguo",
        "balanced": "Conciliado: todas as verificações passaram.",
        "intact": r"^Íntegras: [1-9][\d.]* eventos",
        "freeze_action": "Conta congelada",
        "unfreeze_action": "Conta descongelada",
        "top_up_action": "Recarga (depósito em dinheiro)",
        "refund_action": "Pagamento estornado",
        "status_field": "Situação",
        "amount_field": "Valor",
        "refunded_field": "Estornado",
        "kind_field": "Tipo",
        "filter": "Filtrar",
        "actor_placeholder": "Autor, por exemplo users/…",
        "customer_kind": "cliente",
        "search_placeholder": "Buscar por nome ou e-mail",
        "yes": "sim",
        "levels": "Níveis de identificação",
        "float": "Conta de lastro (sistema)",
        "via": "no terminal {name}",
        "no_limit": "Sem limite",
        "no_levels_yet": "Nenhum nível de identificação ainda: os clientes não têm limites.",
        "level_saved": "Nível “{name}” salvo.",
        "settings_saved": "Configurações salvas.",
        "admins_only": "Só os administradores da organização podem alterar os níveis e as configurações.",
        "level_changed": "Nível alterado de {before} para {after}.",
        "at_level": "Nível atual: {name}",
        "limit_set": "“{name}” agora pode cobrar no máximo {amount} por dia.",
        "limit_removed": "“{name}” não tem mais limite diário de cobrança.",
        "export_ready": "Pronto.",
        "code": "Código",
        "rank": "Ordem",
        "max_payment": "Maior pagamento",
        "daily_sent": "Limite diário de envio",
        "time_zone": "Fuso horário",
        "language": "Idioma",
        "new_level": "Novo nível",
        "reason": "Motivo",
        "set_limit": "Definir",
        "remove_limit": "Remover limite",
        "export": "Exportar",
        "format": "Formato",
        "download": "Baixar o extrato ({format}",
    },
}

_SYMBOLS = {"EUR": "€", "BRL": "R$", "USD": "US$"}


def money(lang: str, amount_minor: int, currency: str = "EUR", digits: int = 2) -> str:
    """`money("en", 123456, "BRL")` → `R$1,234.56`; `money("pt-BR", 123456, "BRL")` → `R$ 1.234,56` (Intl's
    no-break space written as a plain one: Playwright's text assertions compare whitespace as one space)."""
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**digits)
    symbol = _SYMBOLS.get(currency, currency)
    if lang == "pt-BR":
        number = f"{whole:,}".replace(",", ".") + (f",{fraction:0{digits}d}" if digits else "")
        return f"{sign}{symbol} {number}"
    number = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    spacer = " " if symbol == currency else ""  # a code (IQD 1,250.000) is set apart, a symbol (€1.00) is not
    return f"{sign}{symbol}{spacer}{number}"


def text(lang: str, key: str, **parts: str) -> str:
    return TEXTS[lang][key].format(**parts)


def normalized(value: str) -> str:
    """Whitespace as Playwright's assertions see it: any run (no-break spaces too) as one space."""
    return re.sub(r"\s+", " ", value).strip()


# English words of the back office's own texts that no Portuguese screen may show (case-sensitive, whole
# words). Data is not checked (people's names, a terminal's name, ids); words the two languages share
# ("Terminal", "Hash", "E-mail", "Total") are not listed.
ENGLISH_WORDS = [
    "Dashboard", "Customers", "Merchants", "Accounts", "Payments", "Live feed", "Terminals", "Audit log", "Reconciliation",
    "Sign out", "Sign in", "Loading", "Show more", "Show older", "Show receipt", "Balance", "Held", "Available", "Opened",
    "Owner", "Status", "Amount", "Refunded", "Refund", "Kind", "When", "From", "Statement", "Freeze", "Unfreeze",
    "Top up", "Cash out", "Everything", "Last 30 days", "Last 7 days", "Last year", "Any status", "All kinds", "Any time",
    "Search", "Since", "Nobody", "Create", "Open account", "Register", "Disable", "Client id", "Filter", "Actor",
    "Action", "Change", "Request id", "Record", "Verify", "Chain", "Events", "Reconcile", "Balanced", "Today",
    "customer", "merchant", "active", "frozen", "closed", "completed", "refunded", "captured", "voided", "expired",
    "person to person", "payment to a shop", "top-up", "cash-out", "hold", "No accounts", "No payments", "Nothing",
    "Watch them live", "All payments", "Figures", "system", "unknown", "minor units", "Intact", "Broken",
    "connecting", "Waiting", "Account", "Payment", "Name", "Currency", "default", "Organisation",
    "Password", "Registered", "Merchant", "Event", "Captured", "Related payment", "Created", "Receipt", "yes",
    # Identity levels, terminal limits, statement export, names
    "Identity levels", "Identity level", "Level", "Levels", "Rank", "Code", "Limits", "No limit", "No limits", "Largest balance",
    "Largest payment", "Daily sending limit", "Daily receiving limit", "Monthly sending limit", "Monthly receiving limit",
    "Daily charge limit", "Time zone", "Language", "Settings", "Save settings", "Save level", "New level", "Edit", "Add a currency",
    "Remove", "Remove limit", "Set", "Reason", "Change level", "change", "At level", "Float", "Description", "Export",
    "Export statement", "Until", "Format", "Download", "Ready", "Writing", "Waiting for its turn", "spreadsheet", "to print",
    "new customers start here", "Only the organisation",
]
_ENGLISH = re.compile(r"(?<![\w-])(" + "|".join(re.escape(word) for word in ENGLISH_WORDS) + r")(?![\w-])")


def english_left(page: Page) -> list[str]:
    """English words in what the page shows: its visible text, its placeholders, options and accessible labels."""
    shown = page.locator("body").inner_text()
    hidden_texts = page.evaluate(
        """() => [...document.querySelectorAll('[placeholder], [aria-label], option')]
                .map((element) => element.getAttribute('placeholder') || element.getAttribute('aria-label') || element.textContent || '')"""
    )
    found = _ENGLISH.findall("\n".join([shown, *hidden_texts]))
    return sorted(set(found))
