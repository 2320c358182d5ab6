"""AccountsService: requests become commands, the service layer's records become replies."""

from __future__ import annotations

import grpc

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from interceptors.call_state import current_method, require_principal
from server.services import commands
from server.services.accounts import AccountsService
from server.services.limits import LimitsService
from server.services.statements import ExportView, StatementsService
from server.servicers.converters import account_message, entry_message, level_limits_message, statement_export_message
from server.servicers.enums import ACCOUNT_KIND, ACCOUNT_STATUS, STATEMENT_FORMAT
from domain.validation import optional_timestamp


class AccountsServicer(accounts_pb2_grpc.AccountsServiceServicer):
    def __init__(self, accounts: AccountsService, limits: LimitsService, statements: StatementsService) -> None:
        self._accounts = accounts
        self._limits = limits
        self._statements = statements

    async def ExportStatement(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.ExportStatementResponse:
        export = await self._statements.export(
            require_principal(), request.account, optional_timestamp(request, "start_time"), optional_timestamp(request, "end_time"),
            STATEMENT_FORMAT.required(request.format, "format"), request.language,
        )
        return accounts_pb2.ExportStatementResponse(statement_export=statement_export_message(ExportView(export, None, None)))

    async def GetStatementExport(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.GetStatementExportResponse:
        view = await self._statements.get(require_principal(), request.name)
        return accounts_pb2.GetStatementExportResponse(statement_export=statement_export_message(view))

    async def GetLimits(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.GetLimitsResponse:
        found = await self._limits.customer_limits(require_principal())
        standings = []
        for standing in found.standings:
            limits, usage = standing.limits, standing.usage
            standings.append(accounts_pb2.LimitStanding(
                currency=limits.currency, limits=level_limits_message(limits),
                sent_today_minor=usage.sent_today, received_today_minor=usage.received_today,
                sent_this_month_minor=usage.sent_this_month, received_this_month_minor=usage.received_this_month,
                daily_sent_remaining_minor=standing.remaining(limits.daily_sent_minor, usage.sent_today),
                daily_received_remaining_minor=standing.remaining(limits.daily_received_minor, usage.received_today),
                monthly_sent_remaining_minor=standing.remaining(limits.monthly_sent_minor, usage.sent_this_month),
                monthly_received_remaining_minor=standing.remaining(limits.monthly_received_minor, usage.received_this_month),
                balance_remaining_minor=standing.remaining(limits.max_balance_minor, standing.balance_minor),
            ))
        return accounts_pb2.GetLimitsResponse(
            level=found.level.code if found.level else "", level_display_name=found.level.display_name if found.level else "",
            standings=standings, time_zone=found.time_zone,
        )

    async def CreateAccount(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.CreateAccountResponse:
        # Unset kind: a customer account, the one a citizen opens (the contract says so).
        kind = ACCOUNT_KIND.filter(request.kind, "kind") or "customer"
        command = commands.OpenAccount(kind, request.currency, request.owner)
        account = await self._accounts.create_account(require_principal(), current_method(), command)
        return accounts_pb2.CreateAccountResponse(account=account_message(account))

    async def GetAccount(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.GetAccountResponse:
        account = await self._accounts.get_account(require_principal(), request.name)
        return accounts_pb2.GetAccountResponse(account=account_message(account))

    async def ListAccounts(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.ListAccountsResponse:
        command = commands.ListAccounts(
            commands.Page(request.page_size, request.page_token), request.owner,
            ACCOUNT_KIND.filter(request.kind, "kind"), ACCOUNT_STATUS.filter(request.status, "status"),
        )
        rows, next_token = await self._accounts.list_accounts(require_principal(), command)
        return accounts_pb2.ListAccountsResponse(accounts=[account_message(row) for row in rows], next_page_token=next_token)

    async def ListAccountEntries(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.ListAccountEntriesResponse:
        command = commands.ListEntries(
            request.account, commands.Page(request.page_size, request.page_token),
            optional_timestamp(request, "start_time"), optional_timestamp(request, "end_time"),
        )
        rows, next_token = await self._accounts.list_entries(require_principal(), command)
        return accounts_pb2.ListAccountEntriesResponse(entries=[entry_message(row) for row in rows], next_page_token=next_token)

    async def GetBalanceAt(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.GetBalanceAtResponse:
        instant = optional_timestamp(request, "time")
        balance_minor, currency = await self._accounts.balance_at(require_principal(), request.account, instant)
        return accounts_pb2.GetBalanceAtResponse(balance_minor=balance_minor, currency=currency)

    async def FreezeAccount(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.FreezeAccountResponse:
        account = await self._accounts.set_status(require_principal(), current_method(), request.name, "frozen")
        return accounts_pb2.FreezeAccountResponse(account=account_message(account))

    async def UnfreezeAccount(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.UnfreezeAccountResponse:
        account = await self._accounts.set_status(require_principal(), current_method(), request.name, "active")
        return accounts_pb2.UnfreezeAccountResponse(account=account_message(account))

    async def CloseAccount(self, request, context: grpc.aio.ServicerContext) -> accounts_pb2.CloseAccountResponse:
        account = await self._accounts.set_status(require_principal(), current_method(), request.name, "closed")
        return accounts_pb2.CloseAccountResponse(account=account_message(account))
