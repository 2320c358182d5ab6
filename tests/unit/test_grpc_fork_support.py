"""gRPC's fork support is off in every process that forks the stack's children (localstack/__init__.py):
each entry point imports localstack before anything imports grpc, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Records GRPC_ENABLE_FORK_SUPPORT at the moment grpc is first imported, then imports the entry point.
PROBE = """
import os, sys

seen = []

class Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and not seen:
            seen.append(os.environ.get("GRPC_ENABLE_FORK_SUPPORT"))
        return None

sys.meta_path.insert(0, Probe())
__import__(sys.argv[1])
print(seen)
"""


@pytest.mark.parametrize("entry_point", ["tests.conftest", "tools.bench.run", "tools.faults.run", "localstack.__main__"])
def test_grpc_is_first_imported_with_fork_support_off(entry_point: str) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "GRPC_ENABLE_FORK_SUPPORT"}
    completed = subprocess.run([sys.executable, "-c", PROBE, entry_point], cwd=ROOT, env=environment,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "['false']", completed.stdout
