"""Server interceptors, one module per concern, applied in the order declared here.

Outermost first: request id and logging → metrics → request headers (a bound on
their size) → admission (a bound on the unary calls in progress) → authentication → authorization → rate limit → error mapping. Error mapping is innermost so every
layer above sees the final status code; the layers above it answer their own
refusals through the same mapping (`abort_with_domain_error`).
"""

from __future__ import annotations

from typing import Sequence

import grpc

from interceptors.admission import Admission, AdmissionInterceptor
from interceptors.authentication import AuthenticationInterceptor
from interceptors.authorization import AuthorizationInterceptor
from interceptors.error_mapping import ErrorMappingInterceptor
from interceptors.metrics import MetricsInterceptor, MetricsRegistry
from interceptors.rate_limit import RateLimitInterceptor, RateLimitPolicy
from interceptors.request_context import RequestContextInterceptor, TrustedNetworks
from interceptors.request_headers import RequestHeadersInterceptor
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
        RequestContextInterceptor(trusted_proxies),
        MetricsInterceptor(metrics),
        RequestHeadersInterceptor(max_metadata_bytes),
        AdmissionInterceptor(admission),
        AuthenticationInterceptor(key_refresher, sessions, (rate_limiter, rate_limit_policy)),
        AuthorizationInterceptor(),
        RateLimitInterceptor(rate_limiter, rate_limit_policy),
        ErrorMappingInterceptor(),
    ]
