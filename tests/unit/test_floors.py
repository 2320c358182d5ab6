"""The code's floors (README "How a request flows through the floors"): no import runs back up.

    domain/         imports nothing of ours
    storage/        domain
    interceptors/   domain, storage
    server/         domain, storage, interceptors, the generated contract (services below servicers;
                    services import no protobuf: commands in, records out)
    composition     server/bootstrap.py, server/__main__.py, server/keys_cli.py: anything above
    localstack/, tools/, tests/: launchers and checks, outside the floors
    envoy_config/   Envoy's configuration (imports domain): outside the floors too

Every import counts, also one inside a function or under TYPE_CHECKING: a floor that needs a name from
above has it in the wrong place.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSITION_ROOTS = {"server.bootstrap", "server.__main__", "server.keys_cli"}
OUTSIDE = ("localstack", "tools", "tests", "terminal_sdk", "envoy_config")
# What each floor may not import (module prefixes); `emoney` is the generated contract.
FORBIDDEN = {
    "domain": ("storage", "interceptors", "server", "emoney", *OUTSIDE),
    "storage": ("interceptors", "server", "emoney", *OUTSIDE),
    "interceptors": ("server", "emoney", *OUTSIDE),
    # Services speak the domain: commands in, records out; the contract is the servicers' business.
    "server.services": ("server.servicers", "emoney", "google.protobuf", *COMPOSITION_ROOTS, *OUTSIDE),
    "server": (*COMPOSITION_ROOTS, *OUTSIDE),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str) -> set[str]:
    names: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def floor_of(module: str) -> str | None:
    if module in COMPOSITION_ROOTS:
        return None
    candidates = [floor for floor in FORBIDDEN if _is_under(module, floor)]
    return max(candidates, key=len) if candidates else None


def violations(module: str, source: str) -> list[str]:
    floor = floor_of(module)
    if floor is None:
        return []
    return sorted(
        f"{module} imports {name}"
        for name in imported_modules(source, module)
        for forbidden in FORBIDDEN[floor]
        if _is_under(name, forbidden)
    )


def test_no_import_runs_back_up():
    found = []
    for folder in ("domain", "storage", "interceptors", "server"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += violations(module_name(path), path.read_text())
    assert found == []


@pytest.mark.parametrize(
    "module, source",
    [
        ("domain.errors", "from storage.ledger import x"),
        ("domain.tokens", "def f():\n    import server.bootstrap"),
        ("storage.ledger", "from interceptors.call_state import current_method"),
        ("storage.ledger", "from emoney.payments.v1 import payments_pb2"),
        ("interceptors.metrics", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from server.health import x"),
        ("server.services.payments", "from server.servicers.converters import timestamp"),
        ("server.services.payments", "from emoney.payments.v1 import payments_pb2"),
        ("server.services.accounts", "def f():\n    import emoney.accounts.v1.accounts_pb2"),
        ("server.services.payments", "from google.protobuf.message import Message"),
        ("server.servicers.payments", "from server.bootstrap import build_application"),
        ("server.health", "from localstack.stack import LocalStack"),
    ],
)
def test_the_check_finds_an_import_that_runs_back_up(module, source):
    assert violations(module, source), f"{module}: {source!r} should have been refused"


@pytest.mark.parametrize(
    "module, source",
    [
        ("storage.ledger", "from domain.errors import NotFound"),
        ("interceptors.rate_limit", "from storage.rate_limits import RateLimiter"),
        ("server.servicers.payments", "from server.services.payments import PaymentsService\nimport emoney"),
        ("server.bootstrap", "from localstack.stack import LocalStack"),
    ],
)
def test_the_check_lets_an_import_down_through(module, source):
    assert violations(module, source) == []


def test_no_screen_of_the_back_office_imports_the_router():
    """web/src/main.ts routes to every screen; a screen importing it (the Screen type lived there) ties
    every screen to every other."""
    found = [path.name for path in sorted((ROOT / "web" / "src" / "screens").glob("*.ts"))
             if re.search(r"""from ["']\.\./main["']""", path.read_text())]
    assert found == []
