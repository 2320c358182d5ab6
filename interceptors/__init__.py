"""Server interceptors, one module per concern, applied in the order declared here.

Outermost first: request id and logging → metrics → (authentication →
authorization → rate limit, with the identity work) → error mapping. Error
mapping is innermost so every layer above sees the final status code.
"""

from __future__ import annotations

import grpc

from interceptors.error_mapping import ErrorMappingInterceptor
from interceptors.metrics import MetricsInterceptor, MetricsRegistry
from interceptors.request_context import RequestContextInterceptor


def build_interceptors(metrics: MetricsRegistry) -> list[grpc.aio.ServerInterceptor]:
    return [
        RequestContextInterceptor(),
        MetricsInterceptor(metrics),
        ErrorMappingInterceptor(),
    ]
