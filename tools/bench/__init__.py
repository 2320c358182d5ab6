"""`make bench`: k6 load against the whole local stack (see run.py)."""

# First, before any module of this package imports grpc: localstack turns gRPC's fork support off (the
# bench starts the stack and k6 by fork + exec after its own gRPC calls; see localstack/__init__.py).
import localstack  # noqa: F401
