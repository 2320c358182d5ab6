"""The one catalogue of failures: every ErrorInfo reason a client can receive, with its gRPC code, the HTTP
status the JSON face answers with, the server's words, what the back office tells a person, and the
SQLSTATEs that stand for it.

Produced from here, never written again:
- the domain errors' reasons are checked against it (domain/errors.py: an unknown reason is a bug);
- the ledger's SQLSTATEs (class EM, raised by `ledger_fail()`; storage/ledger.py `LEDGER_FAILURES`) and
  PostgreSQL's own (interceptors/error_mapping.py `SQLSTATE_TABLE`);
- Envoy's own replies: their codes, reasons and messages (envoy_config/local_replies.py);
- the OpenAPI document's list of reasons per HTTP status (tools/generate_openapi.py);
- the back office's sentences (`make proto` writes generated/ts/failures.ts for web/src/errors.ts).

A new failure is one entry here. The HTTP status is google.rpc.Code's mapping, the one Envoy's transcoder
applies to a gRPC status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

# google.rpc.Code → HTTP status (google/rpc/code.proto; what the grpc-json transcoder answers).
HTTP_STATUS: Mapping[str, int] = MappingProxyType({
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
})


@dataclass(frozen=True)
class Failure:
    reason: str
    code: str  # a google.rpc.Code name
    message: str  # the server's words, for engineers (English); a raise site may say more
    advice: str = ""  # the back office's sentence for a person; "" = the code's general sentence
    sqlstates: tuple[str, ...] = ()  # SQLSTATEs (exact, or a two-character class) that stand for it

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __post_init__(self) -> None:
        if self.code not in HTTP_STATUS or not re.fullmatch(r"[A-Z][A-Z0-9_]*", self.reason):
            raise ValueError(f"bad catalogue entry: {self}")


_BUSY = "The service is not fully available right now. Try again in a moment."
_SIGN_IN_AGAIN = "Your session has ended. Please sign in again."

CATALOGUE: tuple[Failure, ...] = (
    # -- the general reasons of each kind of domain error (domain/errors.py's defaults) ---------------------
    Failure("INVALID_ARGUMENT", "INVALID_ARGUMENT", "a value in the request is not valid"),
    Failure("NOT_FOUND", "NOT_FOUND", "the resource does not exist"),
    Failure("ALREADY_EXISTS", "ALREADY_EXISTS", "the resource already exists", sqlstates=("23505",)),
    Failure("FAILED_PRECONDITION", "FAILED_PRECONDITION", "that cannot be done in the current state"),
    Failure("SERVICE_UNAVAILABLE", "UNAVAILABLE", "the service is not available right now", _BUSY),
    Failure("UNAUTHENTICATED", "UNAUTHENTICATED", "the call needs a valid login", _SIGN_IN_AGAIN),
    Failure("PERMISSION_DENIED", "PERMISSION_DENIED", "the caller may not do this", sqlstates=("42501",)),
    Failure("RATE_LIMITED", "RESOURCE_EXHAUSTED", "too many requests; retry later", "Too many attempts."),
    # -- a bad field: the first field violation's reason is the ErrorInfo reason (domain/errors.py) ---------
    Failure("REQUIRED", "INVALID_ARGUMENT", "a required field is missing or empty"),
    Failure("TOO_LONG", "INVALID_ARGUMENT", "a field has more characters or items than allowed"),
    Failure("TOO_SHORT", "INVALID_ARGUMENT", "a field has fewer characters than allowed"),
    Failure("TOO_WEAK", "INVALID_ARGUMENT", "the password is common, too simple or contains the e-mail address"),
    Failure("INVALID_FORMAT", "INVALID_ARGUMENT", "a field is not of the required form"),
    Failure("OUT_OF_RANGE", "INVALID_ARGUMENT", "a number or time is outside its bounds"),
    Failure("NOT_ALLOWED", "INVALID_ARGUMENT", "a value is outside the allowed set"),
    Failure("MISMATCH", "INVALID_ARGUMENT", "a value does not match what it must equal"),
    Failure("INVALID_PAGE_TOKEN", "INVALID_ARGUMENT", "the page token is not one this listing gave out"),
    Failure("INVALID_RESOURCE_NAME", "INVALID_ARGUMENT", "a resource name is malformed"),
    Failure("WRONG_PASSWORD", "INVALID_ARGUMENT", "the current password is not right", "The current password is not right."),
    # -- the ledger: raised in SQL by ledger_fail() with SQLSTATE class EM ----------------------------------
    Failure("INSUFFICIENT_FUNDS", "FAILED_PRECONDITION", "the account's available balance is too low",
            "There is not enough money in the account.", ("EM001",)),
    Failure("ACCOUNT_FROZEN", "FAILED_PRECONDITION", "the account is frozen",
            "The account is frozen: it can neither send nor receive money.", ("EM002",)),
    Failure("ACCOUNT_CLOSED", "FAILED_PRECONDITION", "the account is closed", "The account is closed.", ("EM003",)),
    Failure("ACCOUNT_NOT_FOUND", "NOT_FOUND", "the account does not exist", "That account does not exist.", ("EM004",)),
    Failure("CURRENCY_MISMATCH", "INVALID_ARGUMENT", "the currency does not match the account's",
            "The currencies do not match.", ("EM005",)),
    Failure("SAME_ACCOUNT", "INVALID_ARGUMENT", "the two accounts must differ", "The two accounts must differ.", ("EM006",)),
    Failure("AMOUNT_OUT_OF_RANGE", "INVALID_ARGUMENT", "the amount is out of range",
            "The amount must be between 0.01 and 1,000,000.00.", ("EM007",)),
    Failure("HOLD_NOT_FOUND", "NOT_FOUND", "the authorization does not exist", "That hold does not exist.", ("EM008",)),
    Failure("HOLD_ALREADY_RESOLVED", "FAILED_PRECONDITION", "the authorization was already resolved",
            "This hold was already captured, voided or expired.", ("EM009",)),
    Failure("HOLD_EXPIRED", "FAILED_PRECONDITION", "the authorization has expired", "This hold has expired.", ("EM010",)),
    Failure("CAPTURE_EXCEEDS_HOLD", "FAILED_PRECONDITION", "the capture is larger than the authorization",
            "That is more than the amount held.", ("EM011",)),
    Failure("REFUND_EXCEEDS_PAYMENT", "FAILED_PRECONDITION", "the refunds would exceed the payment",
            "That is more than is left to refund on this payment.", ("EM012",)),
    Failure("REQUEST_ID_REUSED", "ALREADY_EXISTS", "this request_id was used for a different request",
            "This form was already sent with different values. Reload the page and try again.", ("EM013",)),
    Failure("ACCOUNT_NOT_EMPTY", "FAILED_PRECONDITION", "only an account at zero, with nothing held, closes",
            "Only an account with a zero balance and nothing held can be closed.", ("EM014",)),
    Failure("ACCOUNT_KIND_NOT_ALLOWED", "INVALID_ARGUMENT", "this kind of account cannot take part in this",
            "That kind of account cannot be opened for this person.", ("EM015",)),
    Failure("TRANSFER_NOT_FOUND", "NOT_FOUND", "the payment does not exist", "That payment does not exist.", ("EM016",)),
    Failure("TRANSFER_NOT_REFUNDABLE", "FAILED_PRECONDITION", "only payments and captures can be refunded",
            "Only payments and captures can be refunded.", ("EM017",)),
    Failure("OWNER_NOT_FOUND", "NOT_FOUND", "the account owner does not exist", "That person does not exist.", ("EM018",)),
    Failure("EXPIRY_OUT_OF_RANGE", "INVALID_ARGUMENT", "the expiry time is out of range", sqlstates=("EM019",)),
    Failure("NOT_ACCOUNT_OWNER", "PERMISSION_DENIED", "you may send only from your own accounts",
            "You may send money only from your own accounts.", ("EM020",)),
    Failure("PAYMENT_CODE_NOT_FOUND", "NOT_FOUND", "payment code not found", "That payment code does not exist.", ("EM021",)),
    Failure("PAYMENT_CODE_USED", "FAILED_PRECONDITION", "the payment code was already used",
            "That payment code was already used.", ("EM022",)),
    Failure("PAYMENT_CODE_EXPIRED", "FAILED_PRECONDITION", "the payment code has expired",
            "That payment code has expired.", ("EM023",)),
    Failure("AMOUNT_EXCEEDS_CODE", "FAILED_PRECONDITION", "the amount is above the code's maximum",
            "The amount is above what the payment code allows.", ("EM024",)),
    Failure("MERCHANT_ACCOUNT_MISSING", "FAILED_PRECONDITION",
            "the terminal's merchant has no active account in this currency", sqlstates=("EM025",)),
    Failure("LIMIT_EXCEEDED", "FAILED_PRECONDITION",
            "a value limit of the customer's identity level (or the terminal's daily limit) would be passed",
            "This is over a limit. The details say which limit and how much is left.", ("EM026",)),
    # -- PostgreSQL's own SQLSTATEs (interceptors/error_mapping.py) ----------------------------------------
    Failure("REFERENCE_MISSING", "FAILED_PRECONDITION", "a referenced resource does not exist", sqlstates=("23503",)),
    Failure("CONSTRAINT_VIOLATED", "INVALID_ARGUMENT", "a value breaks a rule of the ledger", sqlstates=("23514",)),
    Failure("REQUIRED_VALUE_MISSING", "INVALID_ARGUMENT", "a required value is missing", sqlstates=("23502",)),
    Failure("CONCURRENT_UPDATE", "ABORTED", "a concurrent change conflicted; retry the call",
            "Someone changed this at the same moment. Try again.", ("40001", "40P01", "55P03")),
    Failure("DATABASE_TIMEOUT", "DEADLINE_EXCEEDED", "the database took too long to answer", sqlstates=("57014",)),
    Failure("INVALID_VALUE", "INVALID_ARGUMENT", "a value is out of range or malformed", sqlstates=("22",)),
    Failure("DATABASE_UNAVAILABLE", "UNAVAILABLE", "the database is not reachable right now", _BUSY, ("08", "57")),
    Failure("DATABASE_BUSY", "UNAVAILABLE", "the database is overloaded; retry later", _BUSY, ("53",)),
    # -- logins and tokens --------------------------------------------------------------------------------
    Failure("CREDENTIALS_MISSING", "UNAUTHENTICATED", "the call needs an access token", _SIGN_IN_AGAIN),
    Failure("INVALID_CREDENTIALS", "UNAUTHENTICATED", "the credentials are not valid", "Wrong e-mail or password."),
    Failure("PRINCIPAL_UNKNOWN", "UNAUTHENTICATED", "the login no longer exists", _SIGN_IN_AGAIN),
    Failure("PRINCIPAL_DISABLED", "UNAUTHENTICATED", "this login is disabled", "This login is disabled."),
    Failure("TENANT_SUSPENDED", "UNAUTHENTICATED", "the organisation is suspended", "This organisation is suspended."),
    Failure("TOKEN_INVALID", "UNAUTHENTICATED", "the access token is not valid",
            "Your session is no longer valid. Please sign in again."),
    Failure("TOKEN_EXPIRED", "UNAUTHENTICATED", "the access token has expired", _SIGN_IN_AGAIN),
    Failure("TOKEN_KEY_UNKNOWN", "UNAUTHENTICATED", "the access token was signed with an unknown key", _SIGN_IN_AGAIN),
    Failure("TOKEN_REVOKED", "UNAUTHENTICATED", "the access token was revoked", "You were signed out. Please sign in again."),
    Failure("REFRESH_TOKEN_INVALID", "UNAUTHENTICATED", "the refresh token is not valid", _SIGN_IN_AGAIN),
    Failure("REFRESH_TOKEN_REUSED", "UNAUTHENTICATED", "the refresh token was already used; the session is ended",
            "Your session was ended for safety (it was used elsewhere). Please sign in again."),
    Failure("ROLE_NOT_ALLOWED", "PERMISSION_DENIED", "the caller's roles do not allow this call", "That role is not allowed here."),
    Failure("ROLE_NOT_GRANTABLE", "PERMISSION_DENIED", "the caller may not grant that role", "You may not give that role."),
    Failure("NOT_A_USER", "FAILED_PRECONDITION", "only a person's login can do this"),
    Failure("NOT_A_TERMINAL", "PERMISSION_DENIED", "only a payment terminal can do this"),
    # -- people, tenants, terminals, accounts, payments ----------------------------------------------------
    Failure("ACCOUNT_NOT_ALLOWED", "PERMISSION_DENIED", "the caller may not use this account",
            "You are not allowed to use that account."),
    Failure("EMAIL_TAKEN", "ALREADY_EXISTS", "the e-mail address is already in use", "Someone already uses that e-mail address."),
    Failure("PHONE_TAKEN", "ALREADY_EXISTS", "the phone number is already in use", "Someone already uses that phone number."),
    Failure("MERCHANT_NOT_FOUND", "NOT_FOUND", "the merchant does not exist", "That merchant does not exist."),
    Failure("NOT_A_MERCHANT", "FAILED_PRECONDITION", "the user is not a merchant", "That user is not a merchant."),
    Failure("NO_RECEIPT_FOR_HOLD", "FAILED_PRECONDITION", "an authorization has no receipt; its capture has"),
    Failure("PAYMENT_NOT_FOUND", "NOT_FOUND", "the payment does not exist", "That payment does not exist."),
    Failure("PLATFORM_TENANT", "FAILED_PRECONDITION", "the platform's own tenant cannot be changed this way"),
    Failure("TENANT_EXISTS", "ALREADY_EXISTS", "a tenant with that slug exists", "An organisation with that name already exists."),
    Failure("TENANT_NOT_FOUND", "NOT_FOUND", "the tenant does not exist", "There is no organisation with that name."),
    Failure("TERMINAL_NOT_FOUND", "NOT_FOUND", "the terminal does not exist", "That terminal does not exist."),
    Failure("USER_NOT_FOUND", "NOT_FOUND", "the user does not exist", "That person does not exist."),
    Failure("STATEMENT_TOO_LARGE", "FAILED_PRECONDITION", "the period has more entries than one statement holds",
            "That period has too many movements for one statement. Choose a shorter period."),
    Failure("STATEMENT_EXPORT_NOT_FOUND", "NOT_FOUND", "the statement export does not exist", "That statement does not exist."),
    Failure("PAYEE_NOT_FOUND", "NOT_FOUND", "nobody of this tenant can be paid at that address or number in that currency",
            "Nobody can be paid at that e-mail address or phone number."),
    Failure("LEVEL_NOT_FOUND", "NOT_FOUND", "the tenant has no such identity level", "That identity level does not exist."),
    # -- live events --------------------------------------------------------------------------------------
    Failure("WATCHERS_EXHAUSTED", "RESOURCE_EXHAUSTED", "too many live feeds are open", "Too many live feeds are open."),
    Failure("WATCH_INTERRUPTED", "UNAVAILABLE", "the live feed was interrupted; events may have been missed",
            "The live feed was interrupted; it reconnects by itself."),
    Failure("WATCH_TOO_BROAD", "INVALID_ARGUMENT", "the live feed must name what to watch"),
    Failure("WATCH_TOO_SLOW", "RESOURCE_EXHAUSTED", "the client reads the live feed too slowly"),
    Failure("WATCH_UNAVAILABLE", "UNAVAILABLE", "live events are not available right now",
            "The live feed cannot be opened right now; it retries by itself."),
    # -- the servers' machinery (interceptors/) -------------------------------------------------------------
    Failure("SESSION_STORE_UNAVAILABLE", "UNAVAILABLE", "the session store is not reachable right now", _BUSY),
    Failure("RATE_LIMITER_UNAVAILABLE", "UNAVAILABLE", "the rate limiter is not reachable right now", _BUSY),
    Failure("CACHE_UNAVAILABLE", "UNAVAILABLE", "the cache is not reachable right now", _BUSY),
    Failure("PASSWORD_HASHING_BUSY", "RESOURCE_EXHAUSTED", "too many password checks at once; retry",
            "The service is busy. Try again in a moment."),
    Failure("REQUEST_HEADERS_TOO_LARGE", "RESOURCE_EXHAUSTED", "the request headers are too large"),
    Failure("MALFORMED_REQUEST", "INVALID_ARGUMENT", "the request is malformed"),
    Failure("MISSING_REQUEST", "INVALID_ARGUMENT", "the call carried no request message"),
    Failure("REQUEST_NOT_RECEIVED", "INVALID_ARGUMENT", "the request message did not arrive"),
    Failure("INTERNAL", "INTERNAL", "an unexpected error; the request id identifies it"),
    # -- Envoy's own replies (envoy_config/local_replies.py) ------------------------------------------------
    Failure("METHOD_NOT_FOUND", "NOT_FOUND", "no API method at this path and HTTP method"),
    Failure("REQUEST_TIMEOUT", "DEADLINE_EXCEEDED", "the request headers were not received in time"),
    Failure("ABORTED", "ABORTED", "the call was aborted; retry it"),
    Failure("REQUEST_TOO_LARGE", "RESOURCE_EXHAUSTED", "the request body is too large"),
    Failure("HEADERS_TOO_LARGE", "RESOURCE_EXHAUSTED", "the request headers are too large"),
    Failure("CANCELLED", "CANCELLED", "the request was cancelled"),
    Failure("UNIMPLEMENTED", "UNIMPLEMENTED", "not implemented"),
    Failure("UPSTREAM_UNAVAILABLE", "UNAVAILABLE", "no server is available right now", _BUSY),
    Failure("UPSTREAM_TIMEOUT", "DEADLINE_EXCEEDED", "the server took too long to answer"),
    Failure("ENVOY_ERROR", "UNKNOWN", "the proxy could not handle the request"),
)

FAILURES: Mapping[str, Failure] = MappingProxyType({failure.reason: failure for failure in CATALOGUE})
if len(FAILURES) != len(CATALOGUE):
    raise ValueError("a reason is in the catalogue twice")


def by_sqlstate(prefix: str = "") -> dict[str, Failure]:
    """SQLSTATE → failure, for the SQLSTATEs starting with `prefix` ("EM": the ledger's own)."""
    return {sqlstate: failure for failure in CATALOGUE for sqlstate in failure.sqlstates if sqlstate.startswith(prefix)}
