"""The bank workload under faults (issue 6): `python -m tools.faults`, `make soak`, tests/faults/.

This process forks children (servers, PostgreSQL, ...) while its own gRPC clients are busy. With gRPC's
fork support on, its fork handlers run in the forked child before exec and can crash it (SIGSEGV: a
restarted server or PostgreSQL died silently); the children exec at once and need none of it. Read by
gRPC when it initialises, so it is set here, before anything of this package imports grpc — run the
workload as its own process (`python -m tools.faults`), not inside one that already uses gRPC.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
