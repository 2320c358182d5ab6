"""How each kind of call uses the database — declared here, once.

    kind of call                          transaction                                              who opens it
    money movement with an entry point,   ENTRY_POINT: one call of a `payments_*_in` function      storage (ledger,
    and CreatePaymentCode                 on an autocommit connection — its own transaction,       payment_codes)
                                          one round trip
    money movement without one            STORAGE_TRANSACTION: one transaction on the primary:     storage (movements)
                                          access check, ledger function, live event, and the
                                          reply stored with the idempotency key at COMMIT
    read of a listing, statement, report  READ: a replica unit of work (read-your-writes kept),    the service: `read`
                                          READ ONLY, so nothing can be committed
    read of one row the caller may just   LOOKUP: a primary unit of work, READ ONLY —              the service: `lookup`
    have written                          one round trip cheaper than the replica's catch-up check
    change that moves no money            CHANGE: a primary unit of work holding the change and,  the service: `change`
                                          for identity and access changes, its audit event
                                          (server/services/changes.py); committed

The service layer opens units of work only through `Transactions`, whose three methods are the three
styles it owns; money movements it hands to storage whole. `STYLE_OF_METHOD` says which style each RPC
has (tests/unit/test_transaction_styles.py checks every RPC of the contract is listed). A call that
also reads before it writes (Login, SuspendTenant) is listed under the style of the transaction that
decides its outcome.
"""

from __future__ import annotations

import enum
import uuid

from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory


class Style(enum.Enum):
    ENTRY_POINT = "entry point"
    STORAGE_TRANSACTION = "storage transaction"
    READ = "read"
    LOOKUP = "lookup"
    CHANGE = "change"
    NONE = "no database"


class Transactions:
    """The units of work a service may open, one method per style (see the module)."""

    def __init__(self, units_of_work: UnitOfWorkFactory) -> None:
        self.units_of_work = units_of_work  # handed to storage for the money movements it runs whole

    def read(self, tenant_id: uuid.UUID | None) -> UnitOfWork:
        """READ: may run on a standby that has caught up with the primary; a READ ONLY transaction."""
        return self.units_of_work.reader(tenant_id)

    def lookup(self, tenant_id: uuid.UUID | None) -> UnitOfWork:
        """LOOKUP: on the primary; a READ ONLY transaction (storage/unit_of_work.py says how it ends)."""
        return self.units_of_work(tenant_id, read_only=True)

    def change(self, tenant_id: uuid.UUID | None) -> UnitOfWork:
        """CHANGE: on the primary; the caller audits the change where it is audited, and commits (else it rolls back)."""
        return self.units_of_work(tenant_id)


_AUTH = "/emoney.auth.v1.AuthService/"
_ADMIN = "/emoney.admin.v1.AdminService/"
_ACCOUNTS = "/emoney.accounts.v1.AccountsService/"
_PAYMENTS = "/emoney.payments.v1.PaymentsService/"

STYLE_OF_METHOD: dict[str, Style] = {
    "/emoney.platform.v1.PlatformService/GetServerInfo": Style.NONE,
    _AUTH + "GetTenant": Style.LOOKUP,
    _AUTH + "SignUp": Style.CHANGE,
    _AUTH + "Login": Style.CHANGE,
    _AUTH + "LoginTerminal": Style.LOOKUP,
    _AUTH + "RefreshToken": Style.CHANGE,
    _AUTH + "Logout": Style.CHANGE,
    _AUTH + "GetCurrentUser": Style.LOOKUP,
    _AUTH + "ChangePassword": Style.CHANGE,
    _ADMIN + "CreateTenant": Style.CHANGE,
    _ADMIN + "ListTenants": Style.READ,
    _ADMIN + "SuspendTenant": Style.CHANGE,
    _ADMIN + "ReactivateTenant": Style.CHANGE,
    _ADMIN + "CreateUser": Style.CHANGE,
    _ADMIN + "ListUsers": Style.READ,
    _ADMIN + "RegisterTerminal": Style.CHANGE,
    _ADMIN + "DisableTerminal": Style.CHANGE,
    _ADMIN + "ListTerminals": Style.READ,
    _ADMIN + "VerifyAuditChain": Style.READ,
    _ADMIN + "ListAuditEvents": Style.READ,
    _ADMIN + "ReconcileLedger": Style.READ,
    _ADMIN + "ListIdentityLevels": Style.READ,
    _ADMIN + "SetIdentityLevel": Style.CHANGE,
    _ADMIN + "SetUserLevel": Style.CHANGE,
    _ADMIN + "SetTerminalLimit": Style.CHANGE,
    _ADMIN + "UpdateTenantSettings": Style.CHANGE,
    _ACCOUNTS + "GetLimits": Style.READ,
    _ACCOUNTS + "ExportStatement": Style.CHANGE,
    _ACCOUNTS + "GetStatementExport": Style.READ,
    _ACCOUNTS + "CreateAccount": Style.CHANGE,
    _ACCOUNTS + "GetAccount": Style.LOOKUP,
    _ACCOUNTS + "ListAccounts": Style.READ,
    _ACCOUNTS + "ListAccountEntries": Style.READ,
    _ACCOUNTS + "GetBalanceAt": Style.READ,
    _ACCOUNTS + "FreezeAccount": Style.CHANGE,
    _ACCOUNTS + "UnfreezeAccount": Style.CHANGE,
    _ACCOUNTS + "CloseAccount": Style.CHANGE,
    _PAYMENTS + "CreateTransfer": Style.ENTRY_POINT,
    _PAYMENTS + "ChargePaymentCode": Style.ENTRY_POINT,
    _PAYMENTS + "AuthorizePayment": Style.ENTRY_POINT,
    _PAYMENTS + "TopUp": Style.STORAGE_TRANSACTION,
    _PAYMENTS + "Withdraw": Style.STORAGE_TRANSACTION,
    _PAYMENTS + "CapturePayment": Style.STORAGE_TRANSACTION,
    _PAYMENTS + "VoidPayment": Style.STORAGE_TRANSACTION,
    _PAYMENTS + "RefundPayment": Style.STORAGE_TRANSACTION,
    _PAYMENTS + "CreatePaymentCode": Style.ENTRY_POINT,
    _PAYMENTS + "FindPayee": Style.READ,
    _PAYMENTS + "GetPayment": Style.LOOKUP,
    _PAYMENTS + "ListPayments": Style.READ,
    _PAYMENTS + "WatchPayments": Style.LOOKUP,
    _PAYMENTS + "GetReceipt": Style.LOOKUP,
}
