"""The bank workload under faults (issue 6): `python -m tools.faults`, `make soak`, tests/faults/.

This process forks children (servers, PostgreSQL, ...) while its own gRPC clients are busy, so gRPC's
fork support must be off before anything of this package imports grpc: importing localstack first does
that (localstack/__init__.py says why). Run the workload as its own process (`python -m tools.faults`),
not inside one that imported grpc before localstack.
"""

import localstack  # noqa: F401
