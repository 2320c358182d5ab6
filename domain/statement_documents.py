"""A statement as a document people keep: CSV or PDF, in the tenant's language (English or Brazilian
Portuguese), with money, numbers and dates formatted for that locale (Babel, the CLDR data) in the tenant's
time zone. Pure: the same inputs give the same bytes, so a closed period exports identically every time.

Libraries: Babel formats (CLDR); fpdf2 draws the PDF, with the DejaVu Sans font that matplotlib ships (already
installed for the bench's charts), because PDF's 14 core fonts cannot write `€` or `—`. Its creation date is
the period's end, so that nothing in the file depends on when it was made.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from babel.numbers import format_currency, format_decimal

from domain.currencies import minor_units
from domain.errors import NOT_ALLOWED, FieldViolation

LANGUAGES = ("en", "pt-BR")
FORMATS = ("csv", "pdf")
# Where an export job is (migration 0020's states).
EXPORT_STATES = ("pending", "running", "succeeded", "failed")
_BABEL_LOCALE = {"en": "en_US", "pt-BR": "pt_BR"}

_WORDS = {
    "en": {
        "title": "Account statement", "account": "Account", "holder": "Holder", "period": "Period", "time_zone": "Time zone",
        "opening": "Opening balance", "closing": "Closing balance", "date": "Date", "payment": "Payment",
        "what": "Description", "amount": "Amount", "balance": "Balance", "currency": "Currency", "kind": "Kind",
        "amount_minor": "Amount (minor units)", "balance_minor": "Balance (minor units)", "entries": "Entries",
        "none": "No movements in this period.", "page": "Page", "to": "to",
        "p2p": "Transfer between people", "payment_kind": "Payment to a shop", "top_up": "Top-up (cash in)",
        "withdrawal": "Cash-out", "capture": "Captured card payment", "refund": "Refund",
    },
    "pt-BR": {
        "title": "Extrato da conta", "account": "Conta", "holder": "Titular", "period": "Período", "time_zone": "Fuso horário",
        "opening": "Saldo inicial", "closing": "Saldo final", "date": "Data", "payment": "Pagamento",
        "what": "Descrição", "amount": "Valor", "balance": "Saldo", "currency": "Moeda", "kind": "Tipo",
        "amount_minor": "Valor (centavos)", "balance_minor": "Saldo (centavos)", "entries": "Lançamentos",
        "none": "Nenhuma movimentação neste período.", "page": "Página", "to": "a",
        "p2p": "Transferência entre pessoas", "payment_kind": "Pagamento a estabelecimento", "top_up": "Depósito (recarga)",
        "withdrawal": "Saque", "capture": "Pagamento capturado", "refund": "Estorno",
    },
}


@dataclass(frozen=True)
class StatementLine:
    created_at: datetime
    payment_id: str
    kind: str
    description: str | None
    amount_minor: int
    balance_after_minor: int


@dataclass(frozen=True)
class StatementHeader:
    tenant_name: str
    account_id: str
    holder_name: str
    currency: str
    start: datetime
    end: datetime
    time_zone: str
    language: str
    opening_balance_minor: int


def kind_label(kind: str, language: str) -> str:
    words = _WORDS[language]
    return words.get("payment_kind" if kind == "payment" else kind, kind)


def _decimal(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-(minor_units(currency) or 0))


def money(amount_minor: int, currency: str, language: str) -> str:
    return format_currency(_decimal(amount_minor, currency), currency, locale=_BABEL_LOCALE[language])


def number(amount_minor: int, currency: str, language: str) -> str:
    digits = minor_units(currency) or 0
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return format_decimal(_decimal(amount_minor, currency), format=pattern, locale=_BABEL_LOCALE[language])


def when(moment: datetime, language: str, time_zone: str) -> str:
    return format_datetime(moment, "yyyy-MM-dd HH:mm:ss" if language == "en" else "dd/MM/yyyy HH:mm:ss",
                           tzinfo=ZoneInfo(time_zone), locale=_BABEL_LOCALE[language])


def language_violations(language: str, field: str = "language") -> list[FieldViolation]:
    """A document language: one of LANGUAGES (empty is the caller's to default)."""
    if language and language not in LANGUAGES:
        return [FieldViolation(field, f"must be one of {', '.join(LANGUAGES)}", NOT_ALLOWED)]
    return []


def render_csv(header: StatementHeader, lines: list[StatementLine]) -> bytes:
    """One row per entry; the display columns in the locale's form (`;` and a decimal comma in pt-BR, as
    spreadsheets there expect) and the integer minor units beside them for programs. UTF-8 with a BOM, so
    that spreadsheets read the accents."""
    words = _WORDS[header.language]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";" if header.language == "pt-BR" else ",", lineterminator="\r\n")
    writer.writerow([words["date"], words["payment"], words["kind"], words["what"], words["amount"], words["balance"],
                     words["currency"], words["amount_minor"], words["balance_minor"]])
    for line in lines:
        writer.writerow([when(line.created_at, header.language, header.time_zone), line.payment_id, kind_label(line.kind, header.language),
                         line.description or "", number(line.amount_minor, header.currency, header.language),
                         number(line.balance_after_minor, header.currency, header.language), header.currency,
                         line.amount_minor, line.balance_after_minor])
    return ("\ufeff" + buffer.getvalue()).encode()


def _font_path(style: str = "") -> str:
    import matplotlib  # only for its bundled DejaVu Sans (see the module docstring)

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", f"DejaVuSans{'-Bold' if style == 'B' else ''}.ttf")


def render_pdf(header: StatementHeader, lines: list[StatementLine]) -> bytes:
    from fpdf import FPDF

    logging.getLogger("fpdf").setLevel(logging.ERROR)  # a glyph the font lacks (an emoji) is left out, quietly
    words, language, currency = _WORDS[header.language], header.language, header.currency
    pdf = FPDF(format="A4")
    pdf.set_creation_date(header.end)
    pdf.set_title(f"{words['title']} {header.account_id}")
    pdf.set_lang(language)
    pdf.add_font("dejavu", fname=_font_path())
    pdf.add_font("dejavu", style="B", fname=_font_path("B"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font("dejavu", size=16)
    pdf.cell(0, 10, f"{words['title']} — {header.tenant_name}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("dejavu", size=9)
    closing = lines[-1].balance_after_minor if lines else header.opening_balance_minor
    for label, value in (
        (words["holder"], header.holder_name),
        (words["account"], f"accounts/{header.account_id} ({currency})"),
        (words["period"], f"{when(header.start, language, header.time_zone)} {words['to']} {when(header.end, language, header.time_zone)}"),
        (words["time_zone"], header.time_zone),
        (words["opening"], money(header.opening_balance_minor, currency, language)),
        (words["closing"], money(closing, currency, language)),
        (words["entries"], format_decimal(len(lines), locale=_BABEL_LOCALE[language])),
    ):
        pdf.cell(40, 5, label)
        pdf.cell(0, 5, value, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    if not lines:
        pdf.cell(0, 6, words["none"], new_x="LMARGIN", new_y="NEXT")
    else:
        widths = (34, 76, 40, 40)
        with pdf.table(col_widths=widths, text_align=("LEFT", "LEFT", "RIGHT", "RIGHT"), line_height=5,
                       first_row_as_headings=True, repeat_headings=1) as table:
            table.row([words["date"], words["what"], words["amount"], words["balance"]])
            for line in lines:
                what = kind_label(line.kind, language) + (f" — {line.description}" if line.description else "")
                table.row([when(line.created_at, header.language, header.time_zone), what, money(line.amount_minor, currency, language),
                           money(line.balance_after_minor, currency, language)])
    return bytes(pdf.output())
