"""Every RPC of the contract has one declared transaction style (server/services/transactions.py)."""

from __future__ import annotations

from emoney.accounts.v1 import accounts_pb2
from emoney.admin.v1 import admin_pb2
from emoney.auth.v1 import auth_pb2
from emoney.payments.v1 import payments_pb2
from emoney.platform.v1 import platform_pb2
from server.services.transactions import STYLE_OF_METHOD, Style


def contract_methods() -> set[str]:
    return {
        f"/{service.full_name}/{method.name}"
        for module in (accounts_pb2, admin_pb2, auth_pb2, payments_pb2, platform_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def test_every_rpc_has_one_declared_style():
    assert set(STYLE_OF_METHOD) == contract_methods()


def test_money_movements_never_run_in_a_transaction_the_service_opens():
    """Every call that moves money is a storage-owned transaction or a single SQL entry point call."""
    movements = {"CreateTransfer", "TopUp", "Withdraw", "ChargePaymentCode", "AuthorizePayment",
                 "CapturePayment", "VoidPayment", "RefundPayment"}
    styles = {method.rsplit("/", 1)[1]: style for method, style in STYLE_OF_METHOD.items() if "PaymentsService" in method}
    assert {styles[name] for name in movements} == {Style.ENTRY_POINT, Style.STORAGE_TRANSACTION}
