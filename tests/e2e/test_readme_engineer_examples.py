"""The README's grpcurl / buf curl block runs as written, through Envoy and directly against a server:
login, an authenticated call, and a stream that shows a payment made while it is open."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from emoney.payments.v1 import payments_pb2
from tests.fixtures.identity import bearer, demo_user
from tests.fixtures.ledger import new_customer, new_shop, payment_code, payments_stub, request_id

ROOT = Path(__file__).resolve().parents[2]


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- engineer-examples:start -->\n```bash\n(.*?)```\n<!-- engineer-examples:end -->", text, re.S)
    assert block, "the README lost its engineer-examples block"
    return block.group(1)


@pytest.mark.parametrize("through", ["envoy", "server"])
def test_readme_block_runs(stack, through):
    """Run the block with bash; while the stream is open a terminal charges a code, and the stream shows it."""
    address = stack.endpoints.envoy if through == "envoy" else stack.endpoints.grpc_servers[0]
    operator = demo_user(stack, "operator")
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:
        ana, shop = new_customer(stack, channel, funded_minor=1_000), new_shop(stack, channel)
        code = payment_code(channel, ana, 300)

        def charge() -> None:
            payments_stub(channel).ChargePaymentCode(
                payments_pb2.ChargePaymentCodeRequest(request_id=request_id(), code=code, amount_minor=300, currency="EUR"),
                metadata=bearer(shop.terminal_token), timeout=10,
            )

        environment = {**os.environ, "ADDRESS": address, "EMAIL": operator.email, "PASSWORD": operator.password}
        environment["PATH"] = f"{ROOT / '.venv' / 'bin'}:{environment['PATH']}"
        charger = threading.Timer(3.0, charge)
        charger.start()
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _readme_block()], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
        )
        charger.join()
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout
    assert '"email": "operator@demo-city.example"' in output  # GetCurrentUser
    assert '"users"' in output  # buf curl ListUsers
    # grpcurl prints proto field names: the stream shows the charge made while it was open.
    assert '"event": "created"' in output
    assert '"amount_minor": "300"' in output
