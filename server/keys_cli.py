"""`python -m server.keys_cli rotate|show`: rotate or list the access-token signing keys.

Reads VAULT_ADDR, VAULT_TOKEN and EMONEY_ACCESS_TOKEN_TTL_S from the environment,
like the server. Exit codes: 0 done, 1 the secrets store or the key set refused,
2 bad usage or configuration. Private keys are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone

import hvac
import requests

from domain.config import ConfigurationError, Settings, load_settings
from storage.secrets import KV_MOUNT, SECRET_PREFIX, build_secrets
from storage.signing_keys import DEFAULT_SECRET_NAME, KeySummary, SigningKeyError, SigningKeyStore

PROGRAM = "keys_cli"


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, got {raw!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {raw!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m server.{PROGRAM}", description="Manage access-token signing keys."
    )
    parser.add_argument(
        "--secret-name",
        default=DEFAULT_SECRET_NAME,
        help=f"the KV secret under {KV_MOUNT}/{SECRET_PREFIX} holding the key set (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rotate = commands.add_parser(
        "rotate", help="make a new key current; tokens signed earlier stay valid until they expire"
    )
    rotate.add_argument(
        "--max-token-ttl-s",
        type=_positive_int,
        help="the longest access-token lifetime: a retired key is dropped once its tokens expired "
        "(default: the servers' EMONEY_ACCESS_TOKEN_TTL_S)",
    )
    commands.add_parser("show", help="list key ids, which one is current, when each was created and retired")
    return parser


def _time(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary_line(key: KeySummary) -> str:
    state = "current" if key.current else "retired"
    retired = "" if key.retired_at is None else f"  retired {_time(key.retired_at)}"
    return f"  {key.kid}  {state}  created {_time(key.created_at)}{retired}"


async def _run(arguments: argparse.Namespace, settings: Settings) -> str:
    store = SigningKeyStore(build_secrets(settings), secret_name=arguments.secret_name)
    location = f"{KV_MOUNT}/{SECRET_PREFIX}{store.secret_name}"
    if arguments.command == "rotate":
        kid = await store.rotate(arguments.max_token_ttl_s or settings.access_token_ttl_s)
        return (
            f"rotated: {kid} is now the current signing key in {location}\n"
            "servers sign with it after their next key reload; tokens signed earlier stay valid until they expire"
        )
    summaries = await store.summaries()
    if not summaries:
        return f"no signing keys in {location} yet (a server creates the first at start-up, or run `rotate`)"
    return "\n".join([f"{len(summaries)} signing key(s) in {location}:", *map(_summary_line, summaries)])


def _fail(message: str, exit_code: int) -> int:
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as error:
        return _fail(f"configuration error: {error}", 2)
    if not settings.vault_token:
        return _fail(f"VAULT_TOKEN is not set (a token allowed to read and write {KV_MOUNT}/{SECRET_PREFIX}*)", 2)
    try:
        print(asyncio.run(_run(arguments, settings)))
    except requests.RequestException as error:
        # The type only: request errors quote URLs and headers, not worth the risk of echoing more.
        return _fail(f"cannot reach the secrets store at {settings.vault_address} ({type(error).__name__})", 1)
    except hvac.exceptions.Forbidden:
        return _fail(f"VAULT_TOKEN may not use {KV_MOUNT}/{SECRET_PREFIX}{arguments.secret_name}", 1)
    except hvac.exceptions.VaultError as error:
        return _fail(f"the secrets store refused the request ({type(error).__name__})", 1)
    except SigningKeyError as error:
        return _fail(str(error), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
