"""Seed the bench's data through the public API (native gRPC through Envoy), as a client would.

- `customers` citizens signed up (SignUp: one Argon2id hash each), each with `accounts_per_customer`
  EUR customer accounts topped up by the demo operator (tools/customers.py; many accounts for few
  password hashes, so transfers spread over many balances without a long set-up);
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
from localstack.provisioning import DemoSeed
from tools.customers import CALL_TIMEOUT_S, TENANT, Customer, CustomerBatch, bearer, log_in, log_in_operator, open_customers

CURRENCY = "EUR"
CUSTOMER_PASSWORD = "bench horse battery staple"
# Enough for every scenario to move 1 minor unit per call for far longer than any bench runs.
CUSTOMER_FUNDS_MINOR = 10_000_000


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
    bare: str = ""  # the bare reference servers' Envoy (tools/bench/references.py)

    def write(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle)


async def _new_merchant(channel: grpc.aio.Channel, operator_token: str, run_id: str) -> tuple[str, str, str]:
    """(merchant token, merchant account, terminal token)."""
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
    created = await admin.CreateUser(
        admin_pb2.CreateUserRequest(email=f"bench-shop-{run_id}@bench.example", display_name="Bench Shop", roles=[auth_pb2.ROLE_MERCHANT]),
        metadata=bearer(operator_token),
        timeout=CALL_TIMEOUT_S,
    )
    token = await log_in(channel, created.user.email, created.initial_password)
    account = (
        await accounts.CreateAccount(
            accounts_pb2.CreateAccountRequest(kind=accounts_pb2.ACCOUNT_KIND_MERCHANT, currency=CURRENCY), metadata=bearer(token), timeout=CALL_TIMEOUT_S
        )
    ).account.name
    registered = await admin.RegisterTerminal(
        admin_pb2.RegisterTerminalRequest(merchant=created.user.name, display_name="Bench till"),
        metadata=bearer(operator_token),
        timeout=CALL_TIMEOUT_S,
    )
    terminal = await auth.LoginTerminal(
        auth_pb2.LoginTerminalRequest(client_id=registered.terminal.client_id, client_secret=registered.client_secret),
        timeout=CALL_TIMEOUT_S,
    )
    return token, account, terminal.tokens.access_token


async def _seed(envoy: str, direct: str, demo: DemoSeed, customers: int, accounts_per_customer: int) -> BenchData:
    run_id = uuid.uuid4().hex[:8]
    data = BenchData(envoy=envoy, direct=direct, tenant=TENANT, currency=CURRENCY, password=CUSTOMER_PASSWORD)
    batch = CustomerBatch(label="bench", count=customers, accounts_per_customer=accounts_per_customer,
                          opening_balance_minor=CUSTOMER_FUNDS_MINOR, currency=CURRENCY, password=CUSTOMER_PASSWORD)
    async with grpc.aio.insecure_channel(envoy) as channel:
        operator_token = await log_in_operator(channel, demo)
        data.merchant_token, data.merchant_account, data.terminal_token = await _new_merchant(channel, operator_token, run_id)
        data.customers = await open_customers(channel, operator_token, batch)
    data.accounts = [Holding(account, customer.token) for customer in data.customers for account in customer.accounts]
    return data


def seed(envoy: str, direct: str, demo: DemoSeed, customers: int, accounts_per_customer: int) -> BenchData:
    return asyncio.run(_seed(envoy, direct, demo, customers, accounts_per_customer))
