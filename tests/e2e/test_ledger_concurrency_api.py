"""Concurrency through the whole stack (Envoy, two servers, the ledger): duplicates arriving together move
money once, and a burst of random transfers conserves the total with no negative balance."""

from __future__ import annotations

import asyncio
import random

import grpc

from emoney.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from tests.fixtures.identity import bearer
from tests.fixtures.ledger import new_customer, request_id

CLIENTS = 8
TRANSFERS_PER_CLIENT = 15


async def test_concurrent_duplicates_move_money_once(stack):
    """Ten identical CreateTransfer calls sent at once (spread over both servers) answer one payment, one movement."""
    with grpc.insecure_channel(stack.endpoints.envoy) as setup:
        ana, bruno = new_customer(stack, setup, funded_minor=1_000), new_customer(stack, setup)
    request = payments_pb2.CreateTransferRequest(
        request_id=request_id(), from_account=ana.account, to_account=bruno.account, amount_minor=400, currency="EUR"
    )
    async with grpc.aio.insecure_channel(stack.endpoints.envoy) as channel:
        stub = payments_pb2_grpc.PaymentsServiceStub(channel)
        answers = await asyncio.gather(*(stub.CreateTransfer(request, metadata=bearer(ana.token), timeout=20) for _ in range(10)))
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        after = await accounts.GetAccount(accounts_pb2.GetAccountRequest(name=ana.account), metadata=bearer(ana.token), timeout=10)
    assert len({answer.payment.name for answer in answers}) == 1
    assert after.account.balance_minor == 600


async def test_random_transfers_conserve_the_total(stack):
    """Eight clients × fifteen random transfers among six citizens: the sum is unchanged, nobody is negative,
    every acknowledged transfer appears exactly once in the payer's statement."""
    with grpc.insecure_channel(stack.endpoints.envoy) as setup:
        people = [new_customer(stack, setup, funded_minor=2_000) for _ in range(6)]
    acknowledged: list[tuple[int, str]] = []

    async def client(number: int, stub) -> None:
        rng = random.Random(number)
        for _ in range(TRANSFERS_PER_CLIENT):
            sender, receiver = rng.sample(people, 2)
            try:
                reply = await stub.CreateTransfer(
                    payments_pb2.CreateTransferRequest(
                        request_id=request_id(), from_account=sender.account, to_account=receiver.account,
                        amount_minor=rng.randint(1, 700), currency="EUR",
                    ),
                    metadata=bearer(sender.token), timeout=20,
                )
                acknowledged.append((people.index(sender), reply.payment.name))
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()  # only "not enough money"

    async with grpc.aio.insecure_channel(stack.endpoints.envoy) as channel:
        stub = payments_pb2_grpc.PaymentsServiceStub(channel)
        await asyncio.gather(*(client(number, stub) for number in range(CLIENTS)))
        accounts = accounts_pb2_grpc.AccountsServiceStub(channel)
        balances, statements = [], []
        for person in people:
            balances.append((await accounts.GetAccount(accounts_pb2.GetAccountRequest(name=person.account), metadata=bearer(person.token), timeout=10)).account.balance_minor)
            entries, token = [], ""
            while True:
                page = await accounts.ListAccountEntries(
                    accounts_pb2.ListAccountEntriesRequest(account=person.account, page_size=100, page_token=token), metadata=bearer(person.token), timeout=10
                )
                entries += page.entries
                token = page.next_page_token
                if not token:
                    break
            statements.append(entries)
    assert sum(balances) == 6 * 2_000
    assert min(balances) >= 0
    assert acknowledged, "no transfer went through"
    for sender_index, payment in acknowledged:
        debits = [entry for entry in statements[sender_index] if entry.payment == payment and entry.amount_minor < 0]
        assert len(debits) == 1
    for person_entries, final_balance in zip(statements, balances):
        assert person_entries[-1].balance_after_minor == final_balance
