"""The README's command blocks run as written: "Calling it" (grpcurl and curl against the stack, login
with the printed password), and the engineers' grpcurl / buf curl block through Envoy and directly against a
server (login, an authenticated call, a stream that shows a payment made while it is open). A refused
login prints the server's message, not a Python traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from emoney.accounts.v1 import accounts_pb2
from emoney.payments.v1 import payments_pb2
from tests.fixtures.identity import bearer, demo_user, login_as
from tests.fixtures.ledger import accounts_stub, new_customer, new_shop, payment_code, payments_stub, request_id

ROOT = Path(__file__).resolve().parents[2]


def _readme_block(name: str = "engineer-examples") -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}:start -->\n```bash\n(.*?)```\n<!-- {name}:end -->", text, re.S)
    assert block, f"the README lost its {name} block"
    return block.group(1)


def _calling_it_block(stack, password: str) -> str:
    """The "Calling it" block with the test stack's addresses instead of make run's, and a password."""
    return (
        _readme_block("calling-it")
        .replace("127.0.0.1:8080", stack.endpoints.envoy)
        .replace("127.0.0.1:50051", stack.endpoints.grpc_servers[0])
        .replace("<printed password>", password)
    )


def _login_lines(block: str) -> str:
    """The block's `TOKEN=$(...)` login command."""
    found = re.search(r"^TOKEN=\$\(.*?'\)$", block, re.S | re.M)
    assert found, "the block lost its TOKEN=$(...) login"
    return found.group(0)


def _bash(script: str, environment: dict[str, str] | None = None, strict: bool = True) -> subprocess.CompletedProcess:
    flags = ["-euo", "pipefail"] if strict else []
    return subprocess.run(
        ["bash", *flags, "-c", script], cwd=ROOT, env=environment or dict(os.environ), capture_output=True, text=True, timeout=60
    )


def test_calling_it_block_runs(stack):
    """Every command of "Calling it" works as shown: reflection, JSON calls, health, login, calls with the token."""
    operator = demo_user(stack, "operator")
    completed = _bash(_calling_it_block(stack, operator.password))
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout
    assert "emoney.payments.v1.PaymentsService" in output  # list
    assert "CreateTransfer sends money from one of the caller's accounts" in output  # describe, with comments
    assert "The caller's account to debit" in output
    assert '"status": "SERVING"' in output  # health
    assert "HTTP/1.1 404" in output and "TENANT_NOT_FOUND" in output
    assert '"email":"operator@demo-city.example"' in output  # JSON GetCurrentUser
    # enums by name on the JSON face: the user's roles and status, and ListUsers filtered by role
    assert '"roles":["ROLE_OPERATOR"],"status":"USER_STATUS_ACTIVE"' in output
    assert '"users":[' in output and '"roles":["ROLE_CUSTOMER"]' not in output
    assert '"email": "operator@demo-city.example"' in output  # grpcurl GetCurrentUser


@pytest.mark.parametrize("block", ["calling-it", "engineer-examples"])
def test_a_refused_login_prints_the_servers_message_not_a_traceback(stack, block):
    """With a wrong password the login line shows what the server said (curl's JSON message through Python,
    grpcurl's own ERROR lines) and `login failed`; TOKEN stays empty, and no Python traceback."""
    operator = demo_user(stack, "operator")
    environment = {**os.environ, "ADDRESS": stack.endpoints.envoy, "EMAIL": operator.email, "PASSWORD": "not the password"}
    login = _login_lines(_calling_it_block(stack, "not the password") if block == "calling-it" else _readme_block())
    completed = _bash(f"{login}\necho \"token=[$TOKEN]\"", environment, strict=False)
    assert "Traceback" not in completed.stderr, completed.stderr
    assert "the credentials are not valid" in completed.stderr and "login failed" in completed.stderr, completed.stderr
    assert "token=[]" in completed.stdout


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
    # grpcurl prints the JSON names of the descriptors reflection serves: the stream shows the charge made while
    # it was open.
    assert '"event": "PAYMENT_EVENT_TYPE_CREATED"' in output
    assert '"kind": "PAYMENT_KIND_PAYMENT"' in output
    assert '"amountMinor": "300"' in output


def test_citizen_day_block_runs(stack):
    """A citizen's day in JSON, as written: sign-up with a phone, FindPayee's masked name, a transfer with a
    description, the limits, and a CSV statement that ends with that transfer."""
    ana = demo_user(stack, "customer")
    with grpc.insecure_channel(stack.endpoints.envoy) as channel:  # as `make run`'s demo story leaves her: an account, money
        token = bearer(login_as(stack, "customer"))
        accounts = accounts_stub(channel).ListAccounts(accounts_pb2.ListAccountsRequest(), metadata=token, timeout=10).accounts
        account = accounts[0] if accounts else accounts_stub(channel).CreateAccount(
            accounts_pb2.CreateAccountRequest(), metadata=token, timeout=10).account
        payments_stub(channel).TopUp(
            payments_pb2.TopUpRequest(request_id=request_id(), account=account.name, amount_minor=1_000, currency="EUR"),
            metadata=bearer(login_as(stack, "operator")), timeout=10)
    script = (_readme_block("citizen-day").replace("http://127.0.0.1:8080", f"http://{stack.endpoints.envoy}")
              .replace("<Ana'\"'\"'s printed password>", ana.password))
    completed = _bash(script)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    lines = completed.stdout.splitlines()
    assert lines[0].startswith("users/") and lines[1] == "Beatriz C." and lines[2] == "PAYMENT_STATUS_COMPLETED", lines
    assert json.loads(lines[3]).get("level", "") == "", lines[3]  # the demo tenant has no levels: no limits
    assert "welcome to the street" in lines[-1] and ",-2.50," in lines[-1], lines[-1]
