"""Customers with funded accounts, signed up through the public API (native gRPC through Envoy) as a
client would: what `make bench` (tools/bench/seed.py) and `make soak` (tools/faults/run.py) open on their
throw-away stack, in the demo tenant.

Each customer signs up (one Argon2id hash on the server), opens its accounts itself, and the demo
operator tops each one up; customers are signed up a few at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import grpc

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from localstack.provisioning import DEMO_TENANT_SLUG, DemoSeed

TENANT = f"tenants/{DEMO_TENANT_SLUG}"
CALL_TIMEOUT_S = 30.0
SIGN_UP_CONCURRENCY = 16


@dataclass(frozen=True)
class CustomerBatch:
    """Who to open: `count` customers (e-mails and names made from `label`), each with
    `accounts_per_customer` customer accounts in `currency` holding `opening_balance_minor`."""

    label: str
    count: int
    accounts_per_customer: int
    opening_balance_minor: int
    currency: str
    password: str


@dataclass
class Customer:
    email: str
    token: str
    accounts: list[str]  # accounts/{id}


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def log_in(channel: grpc.aio.Channel, email: str, password: str, tenant: str = TENANT) -> str:
    """An access token for the user."""
    response = await auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(tenant=tenant, email=email, password=password), timeout=CALL_TIMEOUT_S
    )
    return response.tokens.access_token


async def log_in_operator(channel: grpc.aio.Channel, demo: DemoSeed) -> str:
    """An access token for the demo tenant's operator (who tops accounts up)."""
    operator = next(user for user in demo.users if user.role == "operator")
    return await log_in(channel, operator.email, operator.password)


async def open_customers(channel: grpc.aio.Channel, operator_token: str, batch: CustomerBatch) -> list[Customer]:
    """The batch's customers, in order, with their funded accounts."""
    run_id = uuid.uuid4().hex[:8]
    slots = asyncio.Semaphore(SIGN_UP_CONCURRENCY)

    async def one(index: int) -> Customer:
        async with slots:
            return await _open_customer(channel, operator_token, batch, f"{batch.label}-{run_id}-{index:05d}", index)

    return list(await asyncio.gather(*(one(index) for index in range(batch.count))))


async def _open_customer(
    channel: grpc.aio.Channel, operator_token: str, batch: CustomerBatch, handle: str, index: int
) -> Customer:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
    payments = payments_pb2_grpc.PaymentsServiceStub(channel)
    email = f"{handle}@{batch.label}.example"
    session = await auth.SignUp(
        auth_pb2.SignUpRequest(
            tenant=TENANT, email=email, password=batch.password, display_name=f"{batch.label.title()} customer {index}"
        ),
        timeout=CALL_TIMEOUT_S,
    )
    token = session.tokens.access_token
    # The account sign-up opened (the tenant's default currency) is the first, when its currency is the batch's.
    opened = (await accounts.ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=bearer(token),
                                          timeout=CALL_TIMEOUT_S)).accounts
    reusable = [account.name for account in opened if account.currency == batch.currency][:1]
    names = []
    for index in range(batch.accounts_per_customer):
        account = reusable[0] if index == 0 and reusable else (
            await accounts.CreateAccount(
                accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_CUSTOMER, currency=batch.currency),
                metadata=bearer(token),
                timeout=CALL_TIMEOUT_S,
            )
        ).account.name
        await payments.TopUp(
            payments_pb2.TopUpRequest(
                request_id=str(uuid.uuid4()), account=account, amount_minor=batch.opening_balance_minor, currency=batch.currency
            ),
            metadata=bearer(operator_token),
            timeout=CALL_TIMEOUT_S,
        )
        names.append(account)
    return Customer(email, token, names)
