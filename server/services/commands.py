"""What a caller asks the service layer to do: small frozen values the servicers build from requests.

Fields carry the request's values as plain Python (names as `accounts/{id}` strings, kinds and statuses as
the domain's strings, times as aware datetimes or None); checking them is the service layer's job, so the
same rules and the same field names apply whichever face the call came through. A call with one or two
arguments takes them directly instead.

A command that moves money carries `canonical_request`: the request as the client sent it, serialized
deterministically. Its hash (storage.idempotency.request_hash) is what tells a retry of a request_id from
a different request under the same request_id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


# -- money movements --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTransfer:
    request_id: str
    canonical_request: bytes
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    description: str = ""


@dataclass(frozen=True)
class MoveFloat:
    """TopUp (`kind` top_up) or Withdraw (`kind` withdrawal): money in or out of the tenant's float."""

    request_id: str
    canonical_request: bytes
    kind: str
    account: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class RedeemCode:
    """ChargePaymentCode (`hold_ttl_s` None) or AuthorizePayment (a hold for `hold_ttl_s` seconds)."""

    request_id: str
    canonical_request: bytes
    code: str
    amount_minor: int
    currency: str
    hold_ttl_s: int | None


@dataclass(frozen=True)
class ResolvePayment:
    """CapturePayment (`amount_minor` captured), VoidPayment (`amount_minor` unused) or RefundPayment."""

    request_id: str
    canonical_request: bytes
    payment: str
    amount_minor: int


# -- other changes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatePaymentCode:
    account: str
    max_amount_minor: int
    currency: str
    ttl_s: int  # 0: the default


@dataclass(frozen=True)
class OpenAccount:
    kind: str
    currency: str  # "": the tenant's default currency
    owner: str  # "": the caller


@dataclass(frozen=True)
class CreateTenant:
    slug: str
    display_name: str
    default_currency: str
    admin_email: str
    admin_display_name: str


@dataclass(frozen=True)
class CreateUser:
    email: str
    display_name: str
    roles: tuple[str, ...]


# -- listings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    size: int  # 0: the default
    token: str


@dataclass(frozen=True)
class ListAccounts:
    page: Page
    owner: str
    kind: str | None  # None: every kind
    status: str | None  # None: every status


@dataclass(frozen=True)
class ListEntries:
    account: str
    page: Page
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class ListPayments:
    page: Page
    account: str
    terminal: str
    status: str | None  # None: every status
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class ListUsers:
    page: Page
    role: str | None  # None: every role
    query: str


@dataclass(frozen=True)
class ListAuditEvents:
    page: Page
    actor: str
    request_id: str
    start: datetime | None
    end: datetime | None
