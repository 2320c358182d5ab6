"""TerminalClient: a payment terminal's synchronous client for the e-money API over native gRPC.

What it takes care of, so a till's code does not have to:

- **Login.** `LoginTerminal` with the device's client id and secret, lazily on the first call (or with
  `login()`). Terminals get no refresh token: the client logs in again shortly before the access token
  expires (`refresh_margin_s`, 30 s by default), and once more when the server refuses a token as
  expired, revoked or unknown. A disabled terminal or suspended tenant is never retried: it surfaces.
- **Safe retries.** Every money-moving call carries one `request_id` (a new UUID unless given), reused
  on every attempt, so the ledger's idempotency (AIP-155) turns a retry after a lost reply into a replay
  of the original result, never a second charge. Calls are retried on UNAVAILABLE and
  DEADLINE_EXCEEDED with exponential backoff and jitter, and on RESOURCE_EXHAUSTED after the server's
  `google.rpc.RetryInfo` delay (when it is no longer than `max_retry_delay_s`). Nothing else is retried.
- **Deadlines.** Every unary attempt has a deadline (`default_timeout_s`, or `timeout=` per call).
  `watch()` has none by default (it is a long-lived stream) and can be cancelled.
- **One error type.** Every refusal is a `TerminalError` with the gRPC code, the `google.rpc.ErrorInfo`
  reason (e.g. `PAYMENT_CODE_USED`, `INSUFFICIENT_FUNDS`, `PRINCIPAL_DISABLED`), the message and the
  request id of the money-moving call it belongs to.
- **TLS.** `TerminalClient.with_tls(target, client_id, secret, ca_path=..., client_cert_path=...,
  client_key_path=...)` connects over TLS, checking the server's certificate against `ca_path` (the
  system's trusted CAs when None) and presenting a client certificate when the listener requires one
  (mutual TLS). Without TLS options the channel is plaintext (loopback, tests).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc

logger = logging.getLogger("terminal_sdk")

USER_AGENT = "emoney-terminal-sdk/0.1"

#: Codes after which the same call (with the same request id) may be sent again.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: UNAUTHENTICATED reasons that a fresh login cures; anything else (PRINCIPAL_DISABLED,
#: TENANT_SUSPENDED, INVALID_CREDENTIALS, ...) is surfaced to the caller.
RELOGIN_REASONS = frozenset({"TOKEN_EXPIRED", "TOKEN_REVOKED", "TOKEN_INVALID", "TOKEN_KEY_UNKNOWN"})

# Reconnect quickly after a network blip (gRPC's default starts at 1 s and grows to 2 min), so a
# retry a fraction of a second later finds the channel connecting rather than still backing off.
DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.primary_user_agent", USER_AGENT),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
)


def tls_credentials(
    ca_path: str | Path | None = None,
    client_cert_path: str | Path | None = None,
    client_key_path: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials for TLS, from PEM files.

    `ca_path`: the CA certificate(s) the server's certificate must chain to (None: the system's trusted
    CAs). `client_cert_path` and `client_key_path` (both or neither): the terminal's own certificate and
    private key, presented when the server asks for one (mutual TLS). Files are read once, here; an
    unreadable file raises OSError, a half-given pair ValueError.
    """
    if (client_cert_path is None) != (client_key_path is None):
        raise ValueError("client_cert_path and client_key_path go together: give both or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_path).read_bytes() if ca_path is not None else None,
        private_key=Path(client_key_path).read_bytes() if client_key_path is not None else None,
        certificate_chain=Path(client_cert_path).read_bytes() if client_cert_path is not None else None,
    )


class TerminalError(Exception):
    """A call the server (or the network) refused.

    `code` is the `grpc.StatusCode`; `reason` the UPPER_SNAKE `google.rpc.ErrorInfo` reason ("" when the
    refusal carried none, e.g. a connection failure); `request_id` the idempotency key of the
    money-moving call (None for reads): retrying that call with the same id can never pay twice.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        request_id: str | None = None,
        *,
        metadata: dict[str, str] | None = None,
        retry_delay_s: float | None = None,
    ) -> None:
        super().__init__(f"{code.name} {reason or '-'}: {message}" + (f" (request id {request_id})" if request_id else ""))
        self.code = code
        self.reason = reason
        self.message = message
        self.request_id = request_id
        self.metadata = dict(metadata or {})
        self.retry_delay_s = retry_delay_s

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, request_id: str | None = None) -> "TerminalError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        message = (error.details() if hasattr(error, "details") else str(error)) or ""
        reason, metadata, retry_delay_s = "", {}, None
        try:
            status = rpc_status.from_call(error)
        except (ValueError, AttributeError):  # trailers that disagree with the status line
            status = None
        if status is not None:
            message = status.message or message
            for detail in status.details:
                info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
                if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
                elif detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
                    retry_delay_s = retry.retry_delay.ToNanoseconds() / 1e9
        return cls(code or grpc.StatusCode.UNKNOWN, reason, message, request_id, metadata=metadata, retry_delay_s=retry_delay_s)


class TerminalClient:
    """A logged-in payment terminal. Thread-safe; use as a context manager (or call `close()`)."""

    def __init__(
        self,
        target: str,
        client_id: str,
        client_secret: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        default_timeout_s: float = 5.0,
        max_attempts: int = 4,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        max_retry_delay_s: float = 10.0,
        refresh_margin_s: float = 30.0,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if default_timeout_s <= 0:
            raise ValueError("default_timeout_s must be positive")
        self.target = target
        self._client_id = client_id
        self._client_secret = client_secret
        self.default_timeout_s = default_timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_delay_s = max_retry_delay_s
        self.refresh_margin_s = refresh_margin_s
        options = dict(DEFAULT_CHANNEL_OPTIONS)
        options.update(dict(channel_options))
        if credentials is None:  # plaintext: loopback and tests (TLS: with_tls(), or tls_credentials())
            self._channel = grpc.insecure_channel(target, options=list(options.items()))
        else:
            self._channel = grpc.secure_channel(target, credentials, options=list(options.items()))
        self._auth = auth_pb2_grpc.AuthServiceStub(self._channel)
        self._payments = payments_pb2_grpc.PaymentsServiceStub(self._channel)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0  # time.monotonic() after which the token is renewed before use
        self._expire_time: datetime | None = None
        self._terminal: auth_pb2.Terminal | None = None
        self._closed = False

    @classmethod
    def with_tls(
        cls,
        target: str,
        client_id: str,
        client_secret: str,
        *,
        ca_path: str | Path | None = None,
        client_cert_path: str | Path | None = None,
        client_key_path: str | Path | None = None,
        server_name: str | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        **options: Any,
    ) -> "TerminalClient":
        """A client that talks TLS to `target` (e.g. Envoy's terminal listener, `127.0.0.1:8443`).

        See `tls_credentials` for the paths. `server_name` is the name the server's certificate must
        carry when it differs from `target`'s host (and is sent as SNI). Other keyword arguments are
        the constructor's.
        """
        channel_options = list(channel_options)
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        return cls(
            target,
            client_id,
            client_secret,
            credentials=tls_credentials(ca_path, client_cert_path, client_key_path),
            channel_options=channel_options,
            **options,
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> "TerminalClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; open `watch()` streams end."""
        self._closed = True
        self._channel.close()

    @property
    def terminal(self) -> auth_pb2.Terminal:
        """The terminal this client is logged in as (logs in if it has not yet)."""
        self._access_token()
        assert self._terminal is not None
        return self._terminal

    @property
    def token_expire_time(self) -> datetime | None:
        """When the current access token expires (server time), or None before the first login."""
        return self._expire_time

    def login(self) -> auth_pb2.Terminal:
        """Log in now (again), replacing the current token. Usually not needed: calls log in by themselves."""
        with self._lock:
            self._login_locked()
            assert self._terminal is not None
            return self._terminal

    # -- money-moving calls (one request id per call, reused on every attempt) ---------------------

    def charge(
        self, code: str, amount_minor: int, currency: str, request_id: str | None = None, *, timeout: float | None = None
    ) -> payments_pb2.Payment:
        """Redeem a customer's payment code for `amount_minor`, paid to this terminal's merchant."""
        request_id = request_id or _new_request_id()
        request = payments_pb2.ChargePaymentCodeRequest(request_id=request_id, code=code, amount_minor=amount_minor, currency=currency)
        return self._call(self._payments.ChargePaymentCode, request, request_id=request_id, timeout=timeout).payment

    def authorize(
        self,
        code: str,
        amount_minor: int,
        currency: str,
        ttl_seconds: int = 0,
        request_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> payments_pb2.Payment:
        """Place a hold of `amount_minor` on the account behind a payment code (ttl 0: the server's default)."""
        request_id = request_id or _new_request_id()
        request = payments_pb2.AuthorizePaymentRequest(
            request_id=request_id, code=code, amount_minor=amount_minor, currency=currency, ttl_seconds=ttl_seconds
        )
        return self._call(self._payments.AuthorizePayment, request, request_id=request_id, timeout=timeout).payment

    def capture(
        self, payment_name: str, amount_minor: int, request_id: str | None = None, *, timeout: float | None = None
    ) -> payments_pb2.Payment:
        """Take all or part of an authorized hold (`payments/{id}`); the rest is released."""
        request_id = request_id or _new_request_id()
        request = payments_pb2.CapturePaymentRequest(request_id=request_id, name=payment_name, amount_minor=amount_minor)
        return self._call(self._payments.CapturePayment, request, request_id=request_id, timeout=timeout).payment

    def void(self, payment_name: str, request_id: str | None = None, *, timeout: float | None = None) -> payments_pb2.Payment:
        """Release an authorized hold without taking anything."""
        request_id = request_id or _new_request_id()
        request = payments_pb2.VoidPaymentRequest(request_id=request_id, name=payment_name)
        return self._call(self._payments.VoidPayment, request, request_id=request_id, timeout=timeout).payment

    def refund(
        self, payment_name: str, amount_minor: int, request_id: str | None = None, *, timeout: float | None = None
    ) -> payments_pb2.Payment:
        """Return all or part of a payment this terminal charged; returns the refund (kind `PAYMENT_KIND_REFUND`)."""
        request_id = request_id or _new_request_id()
        request = payments_pb2.RefundPaymentRequest(request_id=request_id, name=payment_name, amount_minor=amount_minor)
        return self._call(self._payments.RefundPayment, request, request_id=request_id, timeout=timeout).payment

    # -- reads -------------------------------------------------------------------------------------

    def get_payment(self, name: str, *, timeout: float | None = None) -> payments_pb2.Payment:
        """One payment this terminal took part in: `payments/{id}`."""
        return self._call(self._payments.GetPayment, payments_pb2.GetPaymentRequest(name=name), timeout=timeout).payment

    def list_payments(
        self, page_size: int = 20, *, status: payments_pb2.PaymentStatus.ValueType | str = payments_pb2.PAYMENT_STATUS_UNSPECIFIED,
        timeout: float | None = None,
    ) -> Iterator[payments_pb2.Payment]:
        """This terminal's payments, newest first, fetching page after page lazily (each page retried).

        `status` filters: a `payments_pb2.PaymentStatus` value or its name (`"PAYMENT_STATUS_COMPLETED"`);
        unspecified (the default) lists every status. An unknown name raises ValueError before any call."""
        page_token = ""
        while True:
            request = payments_pb2.ListPaymentsRequest(page_size=page_size, page_token=page_token, status=status)
            page = self._call(self._payments.ListPayments, request, timeout=timeout)
            yield from page.payments
            page_token = page.next_page_token
            if not page_token:
                return

    def watch(self, *, timeout: float | None = None) -> "PaymentWatch":
        """Open a stream of this terminal's payment events as they commit.

        Returns once the server has answered the stream's headers (within `default_timeout_s`); iterate it
        for `WatchPaymentsResponse` messages. No deadline unless `timeout` is given; `cancel()` it (or use
        it as a context manager) to stop. A stream that ends with UNAVAILABLE may have missed events:
        re-read `list_payments()`, then watch again.
        """
        return PaymentWatch(self, timeout)

    # -- internals ---------------------------------------------------------------------------------

    def _access_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._refresh_at:
                self._login_locked()
            assert self._token is not None
            return self._token

    def _forget_token(self, token: str) -> None:
        """The server refused `token` as stale: log in again before the next call (once for all threads)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _login_locked(self) -> None:
        request = auth_pb2.LoginTerminalRequest(client_id=self._client_id, client_secret=self._client_secret)
        response = self._with_retries(lambda attempt_timeout: self._auth.LoginTerminal(request, timeout=attempt_timeout), "LoginTerminal", None, None)
        expire_time = response.tokens.access_token_expire_time
        lifetime_s = max(0.0, expire_time.ToNanoseconds() / 1e9 - time.time()) if expire_time.seconds else 0.0
        margin_s = min(self.refresh_margin_s, lifetime_s / 2)  # never re-login on every call
        self._token = response.tokens.access_token
        self._refresh_at = time.monotonic() + lifetime_s - margin_s
        self._expire_time = datetime.fromtimestamp(expire_time.seconds, timezone.utc) if expire_time.seconds else None
        self._terminal = response.terminal
        logger.info("terminal %s logged in; token valid for %.0f s", response.terminal.name, lifetime_s)

    def _call(self, method: Callable[..., Any], request: Any, *, request_id: str | None = None, timeout: float | None = None) -> Any:
        """One unary call with login, one re-login on a stale token, deadlines and safe retries."""
        relogged = False
        name = _method_name(method)
        while True:
            try:
                token = self._access_token()
            except TerminalError as error:  # the login failed: say which money call it was for
                error.request_id = error.request_id or request_id
                raise
            try:
                return self._with_retries(
                    lambda attempt_timeout: method(request, metadata=(("authorization", f"Bearer {token}"),), timeout=attempt_timeout),
                    name, request_id, timeout,
                )
            except TerminalError as error:
                if error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason in RELOGIN_REASONS and not relogged:
                    logger.info("%s: token refused (%s); logging in again", name, error.reason)
                    relogged = True
                    self._forget_token(token)
                    continue
                raise

    def _with_retries(self, attempt: Callable[[float], Any], name: str, request_id: str | None, timeout: float | None) -> Any:
        attempt_timeout = timeout if timeout is not None else self.default_timeout_s
        for number in range(1, self.max_attempts + 1):
            try:
                return attempt(attempt_timeout)
            except grpc.RpcError as rpc_error:
                error = TerminalError.from_rpc_error(rpc_error, request_id)
            delay = self._retry_delay(error, number)
            if delay is None or number == self.max_attempts:
                raise error
            logger.warning(
                "%s failed with %s %s (attempt %d of %d); retrying in %.2f s%s",
                name, error.code.name, error.reason or "-", number, self.max_attempts, delay,
                f" with the same request id {request_id}" if request_id else "",
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _retry_delay(self, error: TerminalError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when this error must not be retried."""
        if error.code in RETRYABLE_CODES:
            ceiling = min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1)))
            return random.uniform(ceiling / 2, ceiling)  # exponential backoff, "equal jitter"
        if error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay_s is not None:
            if error.retry_delay_s > self.max_retry_delay_s:
                return None  # the server asks for longer than we are willing to block: surface it
            return error.retry_delay_s + random.uniform(0, min(0.1, error.retry_delay_s / 10 + 0.01))
        return None


class PaymentWatch(Iterator[payments_pb2.WatchPaymentsResponse]):
    """An open WatchPayments stream: iterate it; `cancel()` (from any thread) ends the iteration."""

    def __init__(self, client: TerminalClient, timeout: float | None) -> None:
        self._client = client
        self._timeout = timeout
        self._cancelled = False
        self._received = False
        self._relogged = False
        self._open()

    def _open(self) -> None:
        self._token = self._client._access_token()
        self._call = self._client._payments.WatchPayments(
            payments_pb2.WatchPaymentsRequest(),
            metadata=(("authorization", f"Bearer {self._token}"),),
            timeout=self._timeout,
        )
        # Wait (bounded) for the response headers, so that when watch() returns the stream is open.
        timer = threading.Timer(self._client.default_timeout_s, self._call.cancel)
        timer.daemon = True
        timer.start()
        try:
            self._call.initial_metadata()
        finally:
            timer.cancel()
        if self._call.done() and self._call.code() == grpc.StatusCode.CANCELLED and not self._cancelled:
            raise TerminalError(grpc.StatusCode.DEADLINE_EXCEEDED, "", "the payment stream did not open in time")

    def __iter__(self) -> "PaymentWatch":
        return self

    def __next__(self) -> payments_pb2.WatchPaymentsResponse:
        while True:
            try:
                event = next(self._call)
            except grpc.RpcError as rpc_error:
                if self._cancelled or self._client._closed:
                    raise StopIteration from None
                error = TerminalError.from_rpc_error(rpc_error)
                stale = error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason in RELOGIN_REASONS
                if stale and not self._received and not self._relogged:
                    self._relogged = True
                    self._client._forget_token(self._token)
                    self._open()
                    continue
                raise error from None
            self._received = True
            return event

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> "PaymentWatch":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


def _new_request_id() -> str:
    return str(uuid.uuid4())


def _method_name(method: Callable[..., Any]) -> str:
    path = getattr(method, "_method", b"")  # grpc's multi-callables keep their method path
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    return str(path).rsplit("/", 1)[-1] or "call"
