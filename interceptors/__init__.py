"""Server interceptors: one module per concern, run in one pass by the server's one interceptor,
interceptors/pipeline.py (its docstring gives the order and says why one pass).
"""

from __future__ import annotations

from typing import Sequence

import grpc

from interceptors.admission import Admission
from interceptors.authentication import TokenAuthentication
from interceptors.metrics import MetricsRegistry
from interceptors.pipeline import CallPipeline
from interceptors.rate_limit import RateLimitPolicy, RateLimits
from interceptors.request_context import TrustedNetworks
from domain.tokens import KeyRingRefresher
from storage.rate_limits import RateLimiter
from storage.sessions import SessionStore


def build_interceptors(
    *,
    metrics: MetricsRegistry,
    trusted_proxies: TrustedNetworks,
    sessions: SessionStore,
    key_refresher: KeyRingRefresher,
    rate_limiter: RateLimiter,
    rate_limit_policy: RateLimitPolicy,
    admission: Admission,
    max_metadata_bytes: int,
) -> Sequence[grpc.aio.ServerInterceptor]:
    return [
        CallPipeline(
            identity=TokenAuthentication(key_refresher, sessions, (rate_limiter, rate_limit_policy)),
            rate_limits=RateLimits(rate_limiter, rate_limit_policy),
            admission=admission,
            metrics=metrics,
            trusted_proxies=trusted_proxies,
            max_metadata_bytes=max_metadata_bytes,
        )
    ]
