"""The access policy covers the whole contract: every RPC is public or has roles; nothing is left to chance."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from interceptors.access_policy import METHOD_ROLES, PUBLIC_METHODS, allowed_roles, is_public
from localstack.stack import DESCRIPTOR_PATH


def _contract_methods() -> set[str]:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_PATH.read_bytes()).file
    return {
        f"/{file.package}.{service.name}/{method.name}"
        for file in files
        if file.package.startswith("emoney.")
        for service in file.service
        for method in service.method
    }


def test_every_rpc_is_either_public_or_has_roles():
    """A new RPC cannot ship without a decision about who may call it."""
    undecided = {method for method in _contract_methods() if not is_public(method) and not allowed_roles(method)}
    assert undecided == set()


def test_policy_names_only_real_rpcs():
    """No stale entries: every listed method exists in the contract."""
    assert (set(METHOD_ROLES) | set(PUBLIC_METHODS)) <= _contract_methods()


def test_public_and_role_lists_do_not_overlap():
    """A method is either public or role-gated, never both."""
    assert not set(PUBLIC_METHODS) & set(METHOD_ROLES)


def test_unknown_methods_are_denied():
    """Deny by default: a method in neither list allows no role."""
    assert allowed_roles("/emoney.nope.v1.Nope/Do") == frozenset()
    assert not is_public("/emoney.nope.v1.Nope/Do")


def test_health_and_reflection_are_public():
    """Probes and grpcurl discovery need no login."""
    assert is_public("/grpc.health.v1.Health/Check")
    assert is_public("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
