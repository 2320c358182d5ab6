"""Command-line payment terminal: `python -m terminal_sdk [options] COMMAND ...` (also `emoney-terminal`).

    export EMONEY_TERMINAL_SECRET=...      # the secret shown once at registration
    python -m terminal_sdk --target 127.0.0.1:8080 --client-id term_... \\
        charge --code ABCD2345EFGH6789 --amount-minor 1250 --currency EUR

Over TLS (Envoy's terminal listener, 127.0.0.1:8443 in the local stack), name the CA that signed the
server's certificate, and with mutual TLS the terminal's certificate and key (PEM files):

    python -m terminal_sdk --target 127.0.0.1:8443 --ca .local/pki/ca.crt \\
        --client-cert .local/pki/demo-terminal.crt --client-key .local/pki/demo-terminal.key --client-id term_... list

`--tls` alone uses TLS with the system's trusted CAs.

The secret is never a command-line argument (other users of the machine could read it from the process
list): it is read from the environment variable named by `--client-secret-env` (EMONEY_TERMINAL_SECRET
by default), or asked for when standard input is a terminal.

Output is JSON on stdout (the canonical proto3 JSON mapping, lowerCamelCase, int64 as strings): one
indented object for a single payment; one compact object per line for `list` and `watch`.
Exit status: 0 done; 1 refused by the server or unreachable (gRPC code, reason and message on stderr;
a refused TLS handshake is UNAVAILABLE); 2 usage error (also an unreadable certificate file); 130 a money command interrupted by Ctrl-C (its request id is printed: repeat it with
`--request-id` to learn the outcome without paying twice).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
import uuid
from typing import Any, Callable, Sequence

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from emoney.payments.v1 import payments_pb2
from terminal_sdk.client import TerminalClient, TerminalError, tls_credentials

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MONEY_COMMANDS = frozenset({"charge", "authorize", "capture", "void", "refund"})
DEFAULT_SECRET_ENV = "EMONEY_TERMINAL_SECRET"
STATUS_PREFIX = "PAYMENT_STATUS_"
STATUS_NAMES = tuple(name for name, number in payments_pb2.PaymentStatus.items() if number != 0)


def _payment_name(value: str) -> str:
    """Accept `payments/{id}` or a bare id."""
    value = value.strip()
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value if value.startswith("payments/") else f"payments/{value}"


def _payment_status(value: str) -> str:
    """A PaymentStatus name: `PAYMENT_STATUS_COMPLETED`, or the short form `completed` (any case)."""
    name = value.strip().upper()
    if not name.startswith(STATUS_PREFIX):
        name = STATUS_PREFIX + name
    if name not in STATUS_NAMES:
        choices = ", ".join(name.removeprefix(STATUS_PREFIX).lower() for name in STATUS_NAMES)
        raise argparse.ArgumentTypeError(f"not a payment status: {value!r} (one of {choices})")
    return name


def _number(parse: Callable[[str], Any], what: str, zero_allowed: bool) -> Callable[[str], Any]:
    """An argparse type: `parse` the text, refusing what is not a number and what is below the bound."""
    def convert(value: str) -> Any:
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {value!r}") from None
        if zero_allowed and number < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {value!r}")
        if not zero_allowed and number <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than zero: {value!r}")
        return number

    return convert


_positive_int = _number(int, "a whole number", zero_allowed=False)
_non_negative_int = _number(int, "a whole number", zero_allowed=True)
_positive_float = _number(float, "a number", zero_allowed=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emoney-terminal",
        description="A payment terminal for the e-money API (native gRPC).",
        epilog="Exit status: 0 done, 1 refused by the server or unreachable, 2 usage error.",
    )
    parser.add_argument("--target", default=os.environ.get("EMONEY_TERMINAL_TARGET", "127.0.0.1:8080"),
                        help="host:port of the API (Envoy); default $EMONEY_TERMINAL_TARGET or 127.0.0.1:8080")
    parser.add_argument("--client-id", default=os.environ.get("EMONEY_TERMINAL_CLIENT_ID"),
                        help="the terminal's client id (term_...); default $EMONEY_TERMINAL_CLIENT_ID")
    parser.add_argument("--client-secret-env", default=DEFAULT_SECRET_ENV, metavar="NAME",
                        help=f"environment variable holding the client secret (default {DEFAULT_SECRET_ENV}); "
                             "when it is unset and stdin is a terminal, the secret is asked for")
    tls = parser.add_argument_group("TLS", "any of these switches TLS on (default: plaintext)")
    tls.add_argument("--tls", action="store_true", help="use TLS; without --ca, trust the system's CAs")
    tls.add_argument("--ca", default=os.environ.get("EMONEY_TERMINAL_CA") or None, metavar="PATH",
                     help="CA certificate (PEM) the server's certificate must chain to; default $EMONEY_TERMINAL_CA")
    tls.add_argument("--client-cert", default=os.environ.get("EMONEY_TERMINAL_CLIENT_CERT") or None, metavar="PATH",
                     help="this terminal's certificate (PEM), for mutual TLS; default $EMONEY_TERMINAL_CLIENT_CERT")
    tls.add_argument("--client-key", default=os.environ.get("EMONEY_TERMINAL_CLIENT_KEY") or None, metavar="PATH",
                     help="its private key (PEM); default $EMONEY_TERMINAL_CLIENT_KEY")
    parser.add_argument("--timeout", type=_positive_float, default=5.0, metavar="SECONDS", help="deadline of each attempt (default 5)")
    parser.add_argument("--max-attempts", type=_positive_int, default=4, metavar="N",
                        help="attempts per call on UNAVAILABLE / DEADLINE_EXCEEDED (default 4)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def money(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--request-id", help="idempotency key (default: a new UUID); repeat a failed command "
                                                  "with the same id to retry it without paying twice")
        return command

    charge = money("charge", "charge a customer's payment code")
    charge.add_argument("--code", required=True, help="the payment code the customer shows")
    charge.add_argument("--amount-minor", type=_positive_int, required=True, help="amount in minor units (1250 = 12.50)")
    charge.add_argument("--currency", required=True, type=str.upper, help="ISO-4217 code, e.g. EUR")

    authorize = money("authorize", "place a hold on the account behind a payment code")
    authorize.add_argument("--code", required=True)
    authorize.add_argument("--amount-minor", type=_positive_int, required=True)
    authorize.add_argument("--currency", required=True, type=str.upper)
    authorize.add_argument("--ttl-seconds", type=_non_negative_int, default=0, help="seconds until the hold releases itself (0: server default)")

    capture = money("capture", "capture all or part of a hold")
    capture.add_argument("--payment", type=_payment_name, required=True, help="the hold: payments/{id}")
    capture.add_argument("--amount-minor", type=_positive_int, required=True)

    void = money("void", "release a hold")
    void.add_argument("--payment", type=_payment_name, required=True, help="the hold: payments/{id}")

    refund = money("refund", "refund all or part of a payment")
    refund.add_argument("--payment", type=_payment_name, required=True, help="the payment: payments/{id}")
    refund.add_argument("--amount-minor", type=_positive_int, required=True)

    get = commands.add_parser("get", help="show one payment")
    get.add_argument("--payment", type=_payment_name, required=True)

    listing = commands.add_parser("list", help="list this terminal's payments, newest first (one JSON object per line)")
    listing.add_argument("--page-size", type=_positive_int, default=20)
    listing.add_argument("--limit", type=_positive_int, help="stop after this many payments")
    listing.add_argument("--status", type=_payment_status, default=payments_pb2.PAYMENT_STATUS_UNSPECIFIED,
                         help="only payments in this status: completed, authorized, ... (or PAYMENT_STATUS_COMPLETED, ...)")

    watch = commands.add_parser("watch", help="print payment events as they commit (one JSON object per line) until Ctrl-C")
    watch.add_argument("--count", type=_positive_int, help="stop after this many events")
    return parser


def _secret(parser: argparse.ArgumentParser, env_name: str) -> str:
    secret = os.environ.get(env_name, "")
    if secret:
        return secret
    if sys.stdin.isatty():
        try:
            secret = getpass.getpass("terminal client secret: ")
        except (EOFError, KeyboardInterrupt):
            secret = ""
    if not secret:
        parser.error(f"no client secret: set ${env_name} (or run interactively to be asked for it)")
    return secret


def _credentials(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """TLS channel credentials from the TLS options, or None for plaintext."""
    if not (args.tls or args.ca or args.client_cert or args.client_key):
        return None
    if bool(args.client_cert) != bool(args.client_key):
        parser.error("--client-cert and --client-key go together: give both or neither")
    try:
        return tls_credentials(args.ca, args.client_cert, args.client_key)
    except OSError as error:
        parser.error(f"cannot read {error.filename}: {error.strerror}")


def _print(message: Message, *, one_line: bool = False) -> None:
    text = json_format.MessageToJson(message, always_print_fields_with_no_presence=True, indent=None if one_line else 2)
    print(text, flush=True)


def _run(client: TerminalClient, args: argparse.Namespace) -> None:
    command = args.command
    if command == "charge":
        _print(client.charge(args.code, args.amount_minor, args.currency, request_id=args.request_id))
    elif command == "authorize":
        _print(client.authorize(args.code, args.amount_minor, args.currency, ttl_seconds=args.ttl_seconds, request_id=args.request_id))
    elif command == "capture":
        _print(client.capture(args.payment, args.amount_minor, request_id=args.request_id))
    elif command == "void":
        _print(client.void(args.payment, request_id=args.request_id))
    elif command == "refund":
        _print(client.refund(args.payment, args.amount_minor, request_id=args.request_id))
    elif command == "get":
        _print(client.get_payment(args.payment))
    elif command == "list":
        for number, payment in enumerate(client.list_payments(page_size=args.page_size, status=args.status), start=1):
            _print(payment, one_line=True)
            if args.limit and number >= args.limit:
                break
    elif command == "watch":
        with client.watch() as events:
            for number, event in enumerate(events, start=1):
                _print(event, one_line=True)
                if args.count and number >= args.count:
                    break
    else:  # pragma: no cover - argparse only lets known commands through
        raise AssertionError(command)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error
    logging.basicConfig(level=logging.WARNING, format="emoney-terminal: %(message)s")  # retries, on stderr
    if not args.client_id:
        parser.error("--client-id is required (or set $EMONEY_TERMINAL_CLIENT_ID)")
    credentials = _credentials(parser, args)
    secret = _secret(parser, args.client_secret_env)
    if args.command in MONEY_COMMANDS and not args.request_id:
        args.request_id = str(uuid.uuid4())  # chosen here, so an interrupted command can be repeated safely
    try:
        with TerminalClient(args.target, args.client_id, secret, credentials=credentials,
                            default_timeout_s=args.timeout, max_attempts=args.max_attempts) as client:
            _run(client, args)
    except TerminalError as error:
        print(f"error: {error.code.name} {error.reason or '-'}: {error.message}", file=sys.stderr)
        if credentials is not None and error.code == grpc.StatusCode.UNAVAILABLE and not error.reason:
            print("hint: over TLS a refused handshake is UNAVAILABLE too: check --ca (the CA of the server's certificate), "
                  "and pass --client-cert and --client-key if the listener requires mutual TLS", file=sys.stderr)
        request_id = error.request_id or (args.request_id if args.command in MONEY_COMMANDS else None)
        if request_id:
            print(f"request id: {request_id} (repeat with --request-id {request_id} to retry safely)", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        if args.command not in MONEY_COMMANDS:
            return EXIT_OK  # Ctrl-C is how `watch` (and a long `list`) ends
        print(f"interrupted: the outcome is unknown; repeat with --request-id {args.request_id} to finish it safely",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `... list | head`
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
