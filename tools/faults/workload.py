"""The bank workload: concurrent clients move money at random among a fixed set of accounts.

Half of the story is the client: every transfer gets one `request_id` (its idempotency key) and is
sent again with that same id after any retryable failure — UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
RESOURCE_EXHAUSTED, a reset connection, and also INTERNAL/UNKNOWN (which are counted as bugs) — until
the server answers it (acknowledged, or refused for good such as INSUFFICIENT_FUNDS) or `give_up_s`
has passed. Some clients speak native gRPC through Envoy, the others JSON over HTTP through Envoy.

Everything each attempt saw is recorded (`Attempt`), with its time on the run's clock, so that the
run can say what happened during each fault and the checks can compare the database with what
clients were told.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import grpc
import requests
from google.rpc import error_details_pb2, status_pb2

from emoney.auth.v1 import auth_pb2, auth_pb2_grpc
from emoney.payments.v1 import payments_pb2, payments_pb2_grpc

CURRENCY = "EUR"
ATTEMPT_TIMEOUT_S = 5.0
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 1.0
# Codes after which the same request is sent again. INTERNAL and UNKNOWN are bugs, but retrying them
# with the same request id is still safe and tells whether the server recovers.
RETRYABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "CONNECTION_ERROR",
     "UNAUTHENTICATED"}
)
HTTP_TO_CODE = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass
class Holder:
    """One account of the fixed set and how to act as its owner."""

    account: str  # accounts/{id}
    email: str
    password: str
    token: str


@dataclass
class Attempt:
    at_s: float  # on the run's clock, when the answer came
    face: str  # "grpc" or "json"
    code: str  # "OK", a gRPC code name, or CONNECTION_ERROR
    reason: str = ""  # the ErrorInfo reason, when there was one
    http_status: int = 0  # JSON face only


@dataclass
class Transfer:
    request_id: str
    face: str
    from_index: int
    to_index: int
    amount_minor: int
    started_s: float
    finished_s: float = 0.0
    outcome: str = ""  # acknowledged | rejected | gave_up
    payment_id: str = ""  # when acknowledged
    reason: str = ""  # when rejected
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class Answer:
    code: str
    reason: str = ""
    payment_id: str = ""
    http_status: int = 0


class BankWorkload:
    def __init__(
        self,
        envoy: str,
        tenant: str,
        holders: list[Holder],
        clock: Callable[[], float],
        grpc_clients: int,
        json_clients: int,
        max_amount_minor: int,
        give_up_s: float,
        seed: int,
    ) -> None:
        if len(holders) < 2:
            raise ValueError("a bank needs at least two accounts")
        self._envoy = envoy
        self._tenant = tenant
        self.holders = holders
        self._clock = clock
        self._grpc_clients = grpc_clients
        self._json_clients = json_clients
        self._max_amount_minor = max_amount_minor
        self._give_up_s = give_up_s
        self._seed = seed
        self.transfers: list[Transfer] = []
        self._token_lock = threading.Lock()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; a transfer under way then still runs to its end (at most give_up_s)."""
        executor = ThreadPoolExecutor(max_workers=max(1, self._json_clients), thread_name_prefix="bank-json")
        try:
            clients = [self._grpc_client(number, stop) for number in range(self._grpc_clients)]
            clients += [self._json_client(self._grpc_clients + number, stop, executor) for number in range(self._json_clients)]
            await asyncio.gather(*clients)
        finally:
            executor.shutdown(wait=True)

    # -- one transfer, retried with the same request id --------------------------------------------

    def _new_transfer(self, rng: random.Random, face: str) -> Transfer:
        from_index, to_index = rng.sample(range(len(self.holders)), 2)
        transfer = Transfer(
            request_id=str(uuid.uuid4()), face=face, from_index=from_index, to_index=to_index,
            amount_minor=rng.randint(1, self._max_amount_minor), started_s=self._clock(),
        )
        self.transfers.append(transfer)
        return transfer

    async def _settle(self, transfer: Transfer, rng: random.Random, send) -> None:
        """Send until answered for good or give_up_s has passed; backs off between attempts."""
        give_up_at = self._clock() + self._give_up_s
        delay_s = BACKOFF_FIRST_S
        while True:
            answer: Answer = await send(transfer)
            transfer.attempts.append(Attempt(self._clock(), transfer.face, answer.code, answer.reason, answer.http_status))
            if answer.code == "OK":
                transfer.outcome, transfer.payment_id = "acknowledged", answer.payment_id
                break
            if answer.code not in RETRYABLE:
                transfer.outcome, transfer.reason = "rejected", answer.reason or answer.code
                break
            if self._clock() >= give_up_at:
                transfer.outcome = "gave_up"
                break
            if answer.code == "UNAUTHENTICATED":
                await asyncio.to_thread(self._log_in_again, self.holders[transfer.from_index])
            await asyncio.sleep(delay_s * rng.uniform(0.5, 1.0))
            delay_s = min(delay_s * 2, BACKOFF_MAX_S)
        transfer.finished_s = self._clock()

    def _log_in_again(self, holder: Holder) -> None:
        """A fresh access token for the holder (tokens expire during a long soak); best effort."""
        with self._token_lock, grpc.insecure_channel(self._envoy) as channel:
            try:
                response = auth_pb2_grpc.AuthServiceStub(channel).Login(
                    auth_pb2.LoginRequest(tenant=self._tenant, email=holder.email, password=holder.password),
                    timeout=ATTEMPT_TIMEOUT_S,
                )
            except grpc.RpcError:
                return  # the next attempt fails the same way and we try again
            holder.token = response.tokens.access_token

    # -- native gRPC ---------------------------------------------------------------------------------

    async def _grpc_client(self, number: int, stop: asyncio.Event) -> None:
        rng = random.Random(self._seed * 1000 + number)
        async with grpc.aio.insecure_channel(self._envoy) as channel:
            stub = payments_pb2_grpc.PaymentsServiceStub(channel)

            async def send(transfer: Transfer) -> Answer:
                holder = self.holders[transfer.from_index]
                request = payments_pb2.CreateTransferRequest(
                    request_id=transfer.request_id, from_account=holder.account,
                    to_account=self.holders[transfer.to_index].account, amount_minor=transfer.amount_minor, currency=CURRENCY,
                )
                try:
                    reply = await stub.CreateTransfer(
                        request, metadata=(("authorization", f"Bearer {holder.token}"),), timeout=ATTEMPT_TIMEOUT_S
                    )
                except grpc.aio.AioRpcError as error:
                    return Answer(error.code().name, _grpc_reason(error))
                return Answer("OK", payment_id=reply.payment.payment_id)

            while not stop.is_set():
                await self._settle(self._new_transfer(rng, "grpc"), rng, send)

    # -- JSON over HTTP --------------------------------------------------------------------------------

    async def _json_client(self, number: int, stop: asyncio.Event, executor: ThreadPoolExecutor) -> None:
        rng = random.Random(self._seed * 1000 + number)
        session = requests.Session()
        url = f"http://{self._envoy}/v1/transfers"
        loop = asyncio.get_running_loop()

        def post(transfer: Transfer) -> Answer:
            holder = self.holders[transfer.from_index]
            body = {
                "requestId": transfer.request_id, "fromAccount": holder.account,
                "toAccount": self.holders[transfer.to_index].account,
                "amountMinor": str(transfer.amount_minor), "currency": CURRENCY,
            }
            try:
                response = session.post(
                    url, json=body, headers={"authorization": f"Bearer {holder.token}"},
                    timeout=(ATTEMPT_TIMEOUT_S, ATTEMPT_TIMEOUT_S),
                )
            except requests.RequestException:
                return Answer("CONNECTION_ERROR")
            return _json_answer(response)

        async def send(transfer: Transfer) -> Answer:
            return await loop.run_in_executor(executor, post, transfer)

        try:
            while not stop.is_set():
                await self._settle(self._new_transfer(rng, "json"), rng, send)
        finally:
            session.close()


def _grpc_reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return _reason_of(status_pb2.Status.FromString(value))
    return ""


def _reason_of(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def _json_answer(response: requests.Response) -> Answer:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict):
        return Answer("OK", payment_id=body.get("payment", {}).get("paymentId", ""), http_status=200)
    code = HTTP_TO_CODE.get(response.status_code, f"HTTP_{response.status_code}")
    reason = ""
    if isinstance(body, dict) and isinstance(body.get("code"), int):
        code = CODE_NAMES.get(body["code"], code)
        for detail in body.get("details") or ():
            if isinstance(detail, dict) and detail.get("reason"):
                reason = str(detail["reason"])
                break
    return Answer(code, reason, http_status=response.status_code)


def monotonic_clock() -> Callable[[], float]:
    """Seconds since now: the run's clock shared by the workload and the fault injector."""
    started = time.monotonic()
    return lambda: time.monotonic() - started
