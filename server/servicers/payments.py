"""PaymentsService: translate requests, call the service layer, translate results."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import grpc

from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from interceptors.call_state import current_method, require_principal
from domain.errors import NotFound, ServiceUnavailable
from server.services.payments import DEFAULT_HOLD_TTL_S, PaymentsService
from server.servicers.converters import hold_payment, row_payment, timestamp, transfer_payment
from server.servicers.enums import PAYMENT_EVENT_TYPE, PAYMENT_STATUS


RECEIPT_URL_TTL_S = 300
WATCH_READY_TIMEOUT_S = 5.0


class PaymentsServicer(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, payments: PaymentsService) -> None:
        self._payments = payments

    async def CreateTransfer(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.CreateTransferResponse:
        return await self._payments.create_transfer(
            require_principal(), current_method(), request,
            lambda record: payments_pb2.CreateTransferResponse(payment=transfer_payment(record)),
            payments_pb2.CreateTransferResponse,
        )

    async def TopUp(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.TopUpResponse:
        return await self._payments.top_up_or_withdraw(
            require_principal(), current_method(), request, "top_up",
            lambda record: payments_pb2.TopUpResponse(payment=transfer_payment(record)), payments_pb2.TopUpResponse,
        )

    async def Withdraw(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.WithdrawResponse:
        return await self._payments.top_up_or_withdraw(
            require_principal(), current_method(), request, "withdrawal",
            lambda record: payments_pb2.WithdrawResponse(payment=transfer_payment(record)), payments_pb2.WithdrawResponse,
        )

    async def CreatePaymentCode(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.CreatePaymentCodeResponse:
        code, expires_at = await self._payments.create_payment_code(
            require_principal(), request.account, request.max_amount_minor, request.currency, request.ttl_seconds
        )
        return payments_pb2.CreatePaymentCodeResponse(code=code, expire_time=timestamp(expires_at))

    async def ChargePaymentCode(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.ChargePaymentCodeResponse:
        return await self._payments.redeem_code(
            require_principal(), current_method(), request, hold_ttl_s=None,
            build_reply=lambda record: payments_pb2.ChargePaymentCodeResponse(payment=transfer_payment(record)),
            reply_type=payments_pb2.ChargePaymentCodeResponse,
        )

    async def AuthorizePayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.AuthorizePaymentResponse:
        return await self._payments.redeem_code(
            require_principal(), current_method(), request, hold_ttl_s=request.ttl_seconds or DEFAULT_HOLD_TTL_S,
            build_reply=lambda record: payments_pb2.AuthorizePaymentResponse(payment=hold_payment(record)),
            reply_type=payments_pb2.AuthorizePaymentResponse,
        )

    async def CapturePayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.CapturePaymentResponse:
        return await self._payments.capture(
            require_principal(), current_method(), request,
            lambda record: payments_pb2.CapturePaymentResponse(payment=hold_payment(record)),
            payments_pb2.CapturePaymentResponse,
        )

    async def VoidPayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.VoidPaymentResponse:
        return await self._payments.void(
            require_principal(), current_method(), request,
            lambda record: payments_pb2.VoidPaymentResponse(payment=hold_payment(record)),
            payments_pb2.VoidPaymentResponse,
        )

    async def RefundPayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.RefundPaymentResponse:
        return await self._payments.refund(
            require_principal(), current_method(), request,
            lambda record: payments_pb2.RefundPaymentResponse(payment=transfer_payment(record)),
            payments_pb2.RefundPaymentResponse,
        )

    async def GetPayment(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.GetPaymentResponse:
        payment = await self._payments.get_payment(require_principal(), request.name)
        return payments_pb2.GetPaymentResponse(payment=row_payment(payment))

    async def ListPayments(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.ListPaymentsResponse:
        rows, next_token = await self._payments.list_payments(require_principal(), request, PAYMENT_STATUS.filter(request.status, "status"))
        return payments_pb2.ListPaymentsResponse(payments=[row_payment(row) for row in rows], next_page_token=next_token)

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
                yield payments_pb2.WatchPaymentsResponse(payment=row_payment(payment), event=PAYMENT_EVENT_TYPE.to_wire(event.event))

    async def GetReceipt(self, request, context: grpc.aio.ServicerContext) -> payments_pb2.GetReceiptResponse:
        content, url = await self._payments.receipt(require_principal(), request.payment)
        expires = timestamp(datetime.now(timezone.utc) + timedelta(seconds=RECEIPT_URL_TTL_S)) if url else None
        return payments_pb2.GetReceiptResponse(
            content_type="application/json", content=content, download_url=url, download_url_expire_time=expires
        )
