"""Who may call what — the one declared table.

Methods callable without login are listed here and nowhere else. Every other
method needs a valid access token (UNAUTHENTICATED otherwise) and one of the
roles listed for it (PERMISSION_DENIED otherwise). A method missing from both
lists is denied to everyone: deny by default. A test checks every RPC in the
contract appears here.
"""

from __future__ import annotations

from domain.principal import TERMINAL_ROLE, USER_ROLES

PUBLIC_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
PUBLIC_METHODS = frozenset(
    {
        "/emoney.platform.v1.PlatformService/GetServerInfo",
        "/emoney.auth.v1.AuthService/GetTenant",
        "/emoney.auth.v1.AuthService/SignUp",
        "/emoney.auth.v1.AuthService/Login",
        "/emoney.auth.v1.AuthService/LoginTerminal",
        "/emoney.auth.v1.AuthService/RefreshToken",
    }
)

ANY_USER = frozenset(USER_ROLES)
ANY_PRINCIPAL = ANY_USER | {TERMINAL_ROLE}
PLATFORM_ADMIN = frozenset({"platform_admin"})
BACK_OFFICE = frozenset({"operator", "tenant_admin"})
TENANT_ADMIN = frozenset({"tenant_admin"})
ACCOUNT_HOLDERS = frozenset({"customer", "merchant"}) | BACK_OFFICE
PAYMENT_PARTIES = ACCOUNT_HOLDERS | {TERMINAL_ROLE}
TERMINALS = frozenset({TERMINAL_ROLE})

METHOD_ROLES: dict[str, frozenset[str]] = {
    "/emoney.auth.v1.AuthService/Logout": ANY_USER,
    "/emoney.auth.v1.AuthService/GetCurrentUser": ANY_PRINCIPAL,
    "/emoney.auth.v1.AuthService/ChangePassword": ANY_USER,
    "/emoney.admin.v1.AdminService/CreateTenant": PLATFORM_ADMIN,
    "/emoney.admin.v1.AdminService/ListTenants": PLATFORM_ADMIN,
    "/emoney.admin.v1.AdminService/SuspendTenant": PLATFORM_ADMIN,
    "/emoney.admin.v1.AdminService/ReactivateTenant": PLATFORM_ADMIN,
    "/emoney.admin.v1.AdminService/CreateUser": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/ListUsers": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/RegisterTerminal": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/DisableTerminal": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/ListTerminals": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/VerifyAuditChain": BACK_OFFICE,
    # Platform administrators read their own (platform) tenant's log; RLS keeps every caller in their tenant.
    "/emoney.admin.v1.AdminService/ListAuditEvents": BACK_OFFICE | PLATFORM_ADMIN,
    "/emoney.admin.v1.AdminService/ReconcileLedger": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/ListIdentityLevels": BACK_OFFICE,
    # The ladder and the day's boundary are the tenant's rules: its administrators set them; operators place
    # customers on it and set terminals' limits.
    "/emoney.admin.v1.AdminService/SetIdentityLevel": TENANT_ADMIN,
    "/emoney.admin.v1.AdminService/UpdateTenantSettings": TENANT_ADMIN,
    "/emoney.admin.v1.AdminService/SetUserLevel": BACK_OFFICE,
    "/emoney.admin.v1.AdminService/SetTerminalLimit": BACK_OFFICE,
    "/emoney.accounts.v1.AccountsService/GetLimits": frozenset({"customer"}),
    "/emoney.accounts.v1.AccountsService/ExportStatement": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/GetStatementExport": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/CreateAccount": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/GetAccount": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/ListAccounts": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/ListAccountEntries": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/GetBalanceAt": ACCOUNT_HOLDERS,
    "/emoney.accounts.v1.AccountsService/FreezeAccount": BACK_OFFICE,
    "/emoney.accounts.v1.AccountsService/UnfreezeAccount": BACK_OFFICE,
    "/emoney.accounts.v1.AccountsService/CloseAccount": BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/CreateTransfer": frozenset({"customer", "merchant"}),
    "/emoney.payments.v1.PaymentsService/CreatePaymentCode": frozenset({"customer"}),
    "/emoney.payments.v1.PaymentsService/FindPayee": frozenset({"customer"}),
    "/emoney.payments.v1.PaymentsService/ChargePaymentCode": TERMINALS,
    "/emoney.payments.v1.PaymentsService/AuthorizePayment": TERMINALS,
    "/emoney.payments.v1.PaymentsService/CapturePayment": frozenset({"merchant", TERMINAL_ROLE}) | BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/VoidPayment": frozenset({"merchant", TERMINAL_ROLE}) | BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/RefundPayment": frozenset({"merchant", TERMINAL_ROLE}) | BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/TopUp": BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/Withdraw": BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/GetPayment": PAYMENT_PARTIES,
    "/emoney.payments.v1.PaymentsService/ListPayments": PAYMENT_PARTIES,
    "/emoney.payments.v1.PaymentsService/WatchPayments": frozenset({"merchant", TERMINAL_ROLE}) | BACK_OFFICE,
    "/emoney.payments.v1.PaymentsService/GetReceipt": PAYMENT_PARTIES,
}


def is_public(method: str) -> bool:
    return method in PUBLIC_METHODS or method.startswith(PUBLIC_METHOD_PREFIXES)


def allowed_roles(method: str) -> frozenset[str]:
    """Roles that may call an authenticated method; empty (nobody) when the method is not listed."""
    return METHOD_ROLES.get(method, frozenset())
