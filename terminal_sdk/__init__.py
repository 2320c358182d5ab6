"""Python SDK and command-line tool for e-money payment terminals (native gRPC through Envoy).

    from terminal_sdk import TerminalClient, TerminalError

    with TerminalClient("127.0.0.1:8080", client_id, client_secret) as till:
        payment = till.charge(code, 1250, "EUR")
        refund = till.refund(payment.name, 250)

The command-line tool is `python -m terminal_sdk --help` (or `emoney-terminal`).
"""

from terminal_sdk.client import RELOGIN_REASONS, RETRYABLE_CODES, PaymentWatch, TerminalClient, TerminalError

__all__ = ["PaymentWatch", "RELOGIN_REASONS", "RETRYABLE_CODES", "TerminalClient", "TerminalError"]
