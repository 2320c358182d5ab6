"""PaymentsService: requests become commands, the service layer's records become replies (money calls
answered through server/servicers/idempotent.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import grpc

from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from interceptors.call_state import current_method, require_principal
from domain.errors import NotFound, ServiceUnavailable
from domain.validation import optional_timestamp
from server.services import commands
from server.services.payments import DEFAULT_HOLD_TTL_S, PaymentsService
from server.servicers.converters import hold_payment, row_payment, timestamp, transfer_payment
from server.servicers.enums import PAYMENT_EVENT_TYPE, PAYMENT_STATUS
from server.servicers.idempotent import answer


RECEIPT_URL_TTL_S = 300
WATCH_READY_TIMEOUT_S = 5.0


def _canonical(request) -> bytes:
    """The request as idempotency compares it: serialized deterministically (commands.py says why)."""
    return request.SerializeToString(deterministic=True)


def _resolution(request, amount_minor: int) -> commands.ResolvePayment:
    return commands.ResolvePayment(request.request_id, _canonical(request), request.name, amount_minor)


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, payments: PaymentsService) -> None:
        self._payments = payments

    async def CreateTransfer(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.CreateTransferResponse:
        command = commands.CreateTransfer(
            request.request_id, _canonical(request), request.from_account, request.to_account, request.amount_minor,
            request.currency, request.description,
        )
        return await answer(
            payments_pb2.CreateTransferResponse, transfer_payment,
            lambda serialize: self._payments.create_transfer(require_principal(), current_method(), command),
        )

    async def FindPayee(self, request: payments_pb2.FindPayeeRequest, context: grpc.aio.ServicerContext) -> payments_pb2.FindPayeeResponse:
        display_name, account_id, currency = await self._payments.find_payee(
            require_principal(), request.email, request.phone_number, request.currency)
        return payments_pb2.FindPayeeResponse(display_name=display_name, account=f"accounts/{account_id}", currency=currency)

    async def TopUp(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.TopUpResponse:
        return await self._move_float(request, "top_up", payments_pb2.TopUpResponse)

    async def Withdraw(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.WithdrawResponse:
        return await self._move_float(request, "withdrawal", payments_pb2.WithdrawResponse)

    async def _move_float(self, request, kind: str, reply_type):
        command = commands.MoveFloat(
            request.request_id, _canonical(request), kind, request.account, request.amount_minor, request.currency
        )
        return await answer(
            reply_type, transfer_payment,
            lambda serialize: self._payments.top_up_or_withdraw(require_principal(), current_method(), command, serialize),
        )

    async def CreatePaymentCode(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.CreatePaymentCodeResponse:
        command = commands.CreatePaymentCode(request.account, request.max_amount_minor, request.currency, request.ttl_seconds)
        code, expires_at = await self._payments.create_payment_code(require_principal(), command)
        return payments_pb2.CreatePaymentCodeResponse(code=code, expire_time=timestamp(expires_at))

    async def ChargePaymentCode(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.ChargePaymentCodeResponse:
        return await self._redeem(request, None, payments_pb2.ChargePaymentCodeResponse, transfer_payment)

    async def AuthorizePayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.AuthorizePaymentResponse:
        hold_ttl_s = request.ttl_seconds or DEFAULT_HOLD_TTL_S
        return await self._redeem(request, hold_ttl_s, payments_pb2.AuthorizePaymentResponse, hold_payment)

    async def _redeem(self, request, hold_ttl_s: int | None, reply_type, payment_of):
        command = commands.RedeemCode(
            request.request_id, _canonical(request), request.code, request.amount_minor, request.currency, hold_ttl_s
        )
        return await answer(
            reply_type, payment_of,
            lambda serialize: self._payments.redeem_code(require_principal(), current_method(), command),
        )

    async def CapturePayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.CapturePaymentResponse:
        command = _resolution(request, request.amount_minor)
        return await answer(
            payments_pb2.CapturePaymentResponse, hold_payment,
            lambda serialize: self._payments.capture(require_principal(), current_method(), command, serialize),
        )

    async def VoidPayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.VoidPaymentResponse:
        command = _resolution(request, 0)
        return await answer(
            payments_pb2.VoidPaymentResponse, hold_payment,
            lambda serialize: self._payments.void(require_principal(), current_method(), command, serialize),
        )

    async def RefundPayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.RefundPaymentResponse:
        command = _resolution(request, request.amount_minor)
        return await answer(
            payments_pb2.RefundPaymentResponse, transfer_payment,
            lambda serialize: self._payments.refund(require_principal(), current_method(), command, serialize),
        )

    async def GetPayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.GetPaymentResponse:
        principal = require_principal()
        payment = await self._payments.get_payment(principal, request.name)
        names = await self._payments.party_names(principal, [payment])
        return payments_pb2.GetPaymentResponse(payment=row_payment(payment, names.get(payment.payment_id)))

    async def ListPayments(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.ListPaymentsResponse:
        command = commands.ListPayments(
            commands.Page(request.page_size, request.page_token), request.account, request.terminal,
            PAYMENT_STATUS.filter(request.status, "status"),
            optional_timestamp(request, "start_time"), optional_timestamp(request, "end_time"),
        )
        principal = require_principal()
        rows, next_token = await self._payments.list_payments(principal, command)
        names = await self._payments.party_names(principal, rows)
        return payments_pb2.ListPaymentsResponse(payments=[row_payment(row, names.get(row.payment_id)) for row in rows],
                                                 next_page_token=next_token)

    async def WatchPayments(self, request, context: grpc.aio.ServicerContext):
        subscription = await self._payments.watch(require_principal(), request.account)
        async with subscription:
            # Headers go out once the subscription listens: a client that has them will not miss
            # anything committed afterwards. (Refusals before this point stay trailers-only, so JSON
            # clients get their HTTP status.)
            try:
                await asyncio.wait_for(subscription.ready.wait(), timeout=WATCH_READY_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise ServiceUnavailable(
                    message="live payment events are not available right now; retry shortly", reason="WATCH_UNAVAILABLE"
                ) from None
            await context.send_initial_metadata(())
            async for event in subscription:
                try:
                    payment = await self._payments.get_payment(require_principal(), f"payments/{event.payment_id}")
                except NotFound:
                    continue  # not visible to this caller after all
                names = await self._payments.party_names(require_principal(), [payment])  # the back office's only
                yield payments_pb2.WatchPaymentsResponse(payment=row_payment(payment, names.get(payment.payment_id)),
                                                         event=PAYMENT_EVENT_TYPE.to_wire(event.event))

    async def GetReceipt(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.GetReceiptResponse:
        content, url = await self._payments.receipt(require_principal(), request.payment)
        expires = timestamp(datetime.now(timezone.utc) + timedelta(seconds=RECEIPT_URL_TTL_S)) if url else None
        return payments_pb2.GetReceiptResponse(
            content_type="application/json", content=content, download_url=url, download_url_expire_time=expires
        )
