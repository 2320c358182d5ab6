"""Metrics registry and its /metrics endpoint (in process, loopback only)."""

from __future__ import annotations

import asyncio

import grpc

from interceptors.metrics import MetricsRegistry
from server.metrics_endpoint import serve_metrics


def test_registry_counts_calls_and_buckets_latency():
    """Calls are counted per method and code; latency lands in cumulative buckets."""
    registry = MetricsRegistry()
    registry.record("/a.B/C", grpc.StatusCode.OK, 3.0)
    registry.record("/a.B/C", grpc.StatusCode.NOT_FOUND, 30.0)
    text = registry.render_prometheus()
    assert 'emoney_grpc_calls_total{method="/a.B/C",code="OK"} 1' in text
    assert 'emoney_grpc_calls_total{method="/a.B/C",code="NOT_FOUND"} 1' in text
    assert 'emoney_grpc_latency_ms_bucket{method="/a.B/C",le="5"} 1' in text
    assert 'emoney_grpc_latency_ms_bucket{method="/a.B/C",le="+Inf"} 2' in text
    assert 'emoney_grpc_latency_ms_count{method="/a.B/C"} 2' in text


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response


async def test_endpoint_serves_metrics_and_nothing_else():
    """GET /metrics answers 200 with the registry; any other path is 404."""
    registry = MetricsRegistry()
    registry.record("/a.B/C", grpc.StatusCode.OK, 1.0)
    server = await serve_metrics(registry, "127.0.0.1:0")
    port = server.sockets[0].getsockname()[1]
    try:
        ok = await _get(port, "/metrics")
        missing = await _get(port, "/admin")
    finally:
        server.close()
        await server.wait_closed()
    assert ok.startswith(b"HTTP/1.1 200") and b"emoney_grpc_calls_total" in ok
    assert missing.startswith(b"HTTP/1.1 404")


def test_group_commit_figures_are_shown_when_it_is_on():
    from storage.group_commit import GroupCommitStats

    registry = MetricsRegistry()
    assert "emoney_group_commit" not in registry.render_prometheus()  # off: nothing to show
    registry.group_commits = {
        "transfers": GroupCommitStats(batches=3, items=10, largest_batch=6, wait_seconds_total=0.012, longest_wait_s=0.004),
        "charges": GroupCommitStats(batches=1, items=2, largest_batch=2, wait_seconds_total=0.001, longest_wait_s=0.001),
    }
    text = registry.render_prometheus()
    assert 'emoney_group_commit_batches_total{of="transfers"} 3\n' in text
    assert 'emoney_group_commit_items_total{of="transfers"} 10\n' in text
    assert 'emoney_group_commit_largest_batch{of="transfers"} 6\n' in text
    assert 'emoney_group_commit_wait_seconds_total{of="transfers"} 0.012000\n' in text
    assert 'emoney_group_commit_longest_wait_seconds{of="transfers"} 0.004000\n' in text
    assert 'emoney_group_commit_items_total{of="charges"} 2\n' in text
    assert text.count("# TYPE emoney_group_commit_items_total counter") == 1
