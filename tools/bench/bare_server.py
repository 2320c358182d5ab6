"""The bench's references (issue 14): the least a gRPC server on this machine can do for a call.

    BENCH_BARE_DSN=postgresql://... python -m tools.bench.bare_server --port P [--pool N]

Plain `grpc.aio`, the same grpcio as the servers, no interceptors, no authentication, no Redis:

- `PlatformService/GetServerInfo` answers an empty reply (the **bare no-op**);
- `PaymentsService/CreateTransfer` moves `amount_minor` between two rows of `bench_bare_accounts` in
  **one SQL statement**, committed durably (synchronous_commit as shipped), and answers a minimal
  Payment (the **bare transfer**). The statement locks both rows in key order, so opposite transfers
  never deadlock; a CHECK keeps a balance from going below zero.

Same contract paths as the platform, so the same k6 scripts and the same Envoy configuration drive it
(tools/bench/references.py starts a second Envoy in front of these processes). The health service
answers SERVING for Envoy's health checks. Written by hand because it is the yardstick: a framework in
it would measure the framework.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from psycopg_pool import AsyncConnectionPool

from emoney.payments.v1 import payments_pb2, payments_pb2_grpc
from emoney.platform.v1 import platform_pb2, platform_pb2_grpc

TABLE = "bench_bare_accounts"
DSN_VARIABLE = "BENCH_BARE_DSN"  # with its password: never on the command line, which `ps` shows everyone
# One statement: lock both rows in key order (no deadlock between opposite transfers, whatever plan the
# planner picks for a small table), then move the money; a CHECK refuses a negative balance.
MOVE = f"""with locked as (select account from {TABLE} where account = any(array[%(from)s, %(to)s]::text[])
                               order by account for update)
           update {TABLE} set balance_minor = balance_minor + case when {TABLE}.account = %(from)s then -%(amount)s else %(amount)s end
             from locked where {TABLE}.account = locked.account"""


class BarePlatform(platform_pb2_grpc.PlatformServiceServicer):
    async def GetServerInfo(self, request, context):
        return platform_pb2.GetServerInfoResponse()


class BarePayments(payments_pb2_grpc.PaymentsServiceServicer):
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def CreateTransfer(self, request, context):
        async with self._pool.connection() as connection:
            cursor = await connection.execute(MOVE, {"from": request.from_account, "to": request.to_account,
                                                     "amount": request.amount_minor})
            if cursor.rowcount != 2:
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such account")
        return payments_pb2.CreateTransferResponse(payment=payments_pb2.Payment(
            name=f"payments/{uuid.uuid4()}", amount_minor=request.amount_minor, currency=request.currency))


async def serve(port: int, dsn: str, pool_size: int) -> None:
    pool = AsyncConnectionPool(dsn, min_size=pool_size, max_size=pool_size, kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True, timeout=30)
    server = grpc.aio.server()
    platform_pb2_grpc.add_PlatformServiceServicer_to_server(BarePlatform(), server)
    payments_pb2_grpc.add_PaymentsServiceServicer_to_server(BarePayments(pool), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.bare_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool", type=int, default=8, help="connections (default 8: the servers' EMONEY_DB_POOL_MAX_SIZE)")
    args = parser.parse_args()
    dsn = os.environ.get(DSN_VARIABLE)
    if not dsn:
        parser.error(f"{DSN_VARIABLE} must name the database (in the environment: a command line is public)")
    asyncio.run(serve(args.port, dsn, args.pool))


if __name__ == "__main__":
    main()
