"""The local platform for dev and tests: PostgreSQL, Redis, OpenBao, SeaweedFS, gRPC servers and Envoy.

Whoever uses this package starts and restarts processes (fork + exec) while gRPC clients of its own may
be busy: the tests, `make bench` (tools/bench), `make soak` (tools/faults). With gRPC's fork support on,
gRPC's fork handlers run in the forked child before exec and can crash it (SIGSEGV: a restarted server
or PostgreSQL died silently); the children exec at once and need none of it. gRPC reads the setting when
it is first imported, so it is set here, and every entry point imports `localstack` before anything
imports grpc (tests/conftest.py, tools/bench/__init__.py, tools/faults/__init__.py). The server
processes inherit it (they never fork).
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
