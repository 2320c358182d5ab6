"""A tiny HTTP endpoint serving `/metrics` in the Prometheus text format.

Off unless `EMONEY_METRICS_ADDRESS` is set. It answers GET /metrics and nothing
else, reads at most one small request head, and closes every connection.
"""

from __future__ import annotations

import asyncio

from interceptors.metrics import MetricsRegistry

MAX_REQUEST_HEAD_BYTES = 4096
READ_TIMEOUT_S = 5.0


async def serve_metrics(registry: MetricsRegistry, address: str) -> asyncio.Server:
    host, port = address.rsplit(":", 1)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].split()
        if len(request_line) >= 2 and request_line[0] == b"GET" and request_line[1] == b"/metrics":
            status, body = "200 OK", registry.render_prometheus().encode()
        else:
            status, body = "404 Not Found", b"only GET /metrics is served here\n"
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, int(port), limit=MAX_REQUEST_HEAD_BYTES)
