"""Seed the bench's data through the public API (native gRPC through Envoy), as a client would.

- `customers` citizens signed up (SignUp: one Argon2id hash each), each with `accounts_per_customer`
  EUR customer accounts topped up by the demo operator (many accounts for few password hashes, so
  transfers spread over many balances without a long set-up);
- one merchant (created by the operator) with a EUR merchant account and one registered, logged-in
  terminal.

The result is one JSON document (tokens, account names, e-mails) that the k6 scripts read. It holds
live tokens, so it is written 0600 into the bench's private state folder, never the output folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from emoney.admin.v1 import admin_pb2, admin_pb2_grpc
from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from localstack.provisioning import DEMO_TENANT_SLUG, DemoSeed

TENANT = f"tenants/{DEMO_TENANT_SLUG}"
CURRENCY = "EUR"
CUSTOMER_PASSWORD = "bench horse battery staple"
# Enough for every scenario to move 1 minor unit per call for far longer than any bench runs.
CUSTOMER_FUNDS_MINOR = 10_000_000
TIMEOUT_S = 30.0
CONCURRENCY = 16


@dataclass
class Customer:
    email: str
    token: str
    accounts: list[str]


@dataclass
class Holding:
    """One customer account and its owner's token: what a transfer from it needs."""

    account: str
    token: str


@dataclass
class BenchData:
    envoy: str
    direct: str
    tenant: str
    currency: str
    password: str
    customers: list[Customer] = field(default_factory=list)
    accounts: list[Holding] = field(default_factory=list)
    merchant_token: str = ""
    merchant_account: str = ""
    terminal_token: str = ""

    def write(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _login(auth: auth_pb2_grpc.AuthServiceStub, tenant: str, email: str, password: str) -> str:
    response = await auth.Login(auth_pb2.LoginRequest(tenant=tenant, email=email, password=password), timeout=TIMEOUT_S)
    return response.tokens.access_token


async def _new_customer(
    channel: grpc.aio.Channel, operator_token: str, run_id: str, index: int, accounts_per_customer: int
) -> Customer:
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
    payments = payments_pb2_grpc.PaymentsServiceStub(channel)
    email = f"bench-{run_id}-{index:05d}@bench.example"
    session = await auth.SignUp(
        auth_pb2.SignUpRequest(tenant=TENANT, email=email, password=CUSTOMER_PASSWORD, display_name=f"Bench Customer {index}"),
        timeout=TIMEOUT_S,
    )
    token = session.tokens.access_token
    names = []
    for _ in range(accounts_per_customer):
        account = (
            await accounts.CreateAccount(
                accounts_pb2.CreateAccountRequest(kind="customer", currency=CURRENCY), metadata=_bearer(token), timeout=TIMEOUT_S
            )
        ).account.name
        await payments.TopUp(
            payments_pb2.TopUpRequest(
                request_id=str(uuid.uuid4()), account=account, amount_minor=CUSTOMER_FUNDS_MINOR, currency=CURRENCY
            ),
            metadata=_bearer(operator_token),
            timeout=TIMEOUT_S,
        )
        names.append(account)
    return Customer(email, token, names)


async def _new_merchant(channel: grpc.aio.Channel, operator_token: str, run_id: str) -> tuple[str, str, str]:
    """(merchant token, merchant account, terminal token)."""
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
    created = await admin.CreateUser(
        admin_pb2.CreateUserRequest(email=f"bench-shop-{run_id}@bench.example", display_name="Bench Shop", roles=["merchant"]),
        metadata=_bearer(operator_token),
        timeout=TIMEOUT_S,
    )
    token = await _login(auth, TENANT, created.user.email, created.initial_password)
    account = (
        await accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(kind="merchant", currency=CURRENCY), metadata=_bearer(token), timeout=TIMEOUT_S
        )
    ).account.name
    registered = await admin.RegisterTerminal(
        admin_pb2.RegisterTerminalRequest(merchant=created.user.name, display_name="Bench till"),
        metadata=_bearer(operator_token),
        timeout=TIMEOUT_S,
    )
    terminal = await auth.LoginTerminal(
        auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret=registered.client_secret),
        timeout=TIMEOUT_S,
    )
    return token, account, terminal.tokens.access_token


async def _seed(envoy: str, direct: str, demo: DemoSeed, customers: int, accounts_per_customer: int) -> BenchData:
    run_id = uuid.uuid4().hex[:8]
    operator = next(user for user in demo.users if user.role == "operator")
    data = BenchData(envoy=envoy, direct=direct, tenant=TENANT, currency=CURRENCY, password=CUSTOMER_PASSWORD)
    async with grpc.aio.insecure_channel(envoy) as channel:
        operator_token = await _login(auth_pb2_grpc.AuthServiceStub(channel), TENANT, operator.email, operator.password)
        data.merchant_token, data.merchant_account, data.terminal_token = await _new_merchant(channel, operator_token, run_id)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(index: int) -> Customer:
            async with slots:
                return await _new_customer(channel, operator_token, run_id, index, accounts_per_customer)

        data.customers = list(await asyncio.gather(*(one(index) for index in range(customers))))
    data.accounts = [Holding(account, customer.token) for customer in data.customers for account in customer.accounts]
    return data


def seed(envoy: str, direct: str, demo: DemoSeed, customers: int, accounts_per_customer: int) -> BenchData:
    return asyncio.run(_seed(envoy, direct, demo, customers, accounts_per_customer))
