"""Python SDK and command-line tool for e-money payment terminals (native gRPC through Envoy).

    from terminal_sdk import TerminalClient, TerminalError

    with TerminalClient("127.0.0.1:8080", client_id, client_secret) as till:
        payment = till.charge(code, 1250, "EUR")
        refund = till.refund(payment.name, 250)

Over TLS (Envoy's terminal listener; the client certificate only when mutual TLS is on):

    with TerminalClient.with_tls("127.0.0.1:8443", client_id, client_secret, ca_path=".local/pki/ca.crt",
                                 client_cert_path=".local/pki/demo-terminal.crt",
                                 client_key_path=".local/pki/demo-terminal.key") as till:
        ...

The command-line tool is `python -m terminal_sdk --help` (or `emoney-terminal`).
"""

from terminal_sdk.client import (
    RELOGIN_REASONS,
    RETRYABLE_CODES,
    PaymentWatch,
    TerminalClient,
    TerminalError,
    tls_credentials,
)

__all__ = ["PaymentWatch", "RELOGIN_REASONS", "RETRYABLE_CODES", "TerminalClient", "TerminalError", "tls_credentials"]
