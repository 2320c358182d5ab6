"""What the configuration takes from the descriptor set (`make proto`): services and streaming methods."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2

from envoy_config.routes import SERVICE_PACKAGE_PREFIX


def _descriptor_set(descriptor_path: Path) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor_path).read_bytes())


def service_names(descriptor_path: Path) -> list[str]:
    """Fully qualified names of every service in an ``emoney.*`` package of a descriptor set."""
    names = {
        f"{file.package}.{service.name}"
        for file in _descriptor_set(descriptor_path).file
        if file.package.startswith(SERVICE_PACKAGE_PREFIX)
        for service in file.service
    }
    return sorted(names)


def streaming_method_paths(descriptor_path: Path) -> list[str]:
    """gRPC paths (``/pkg.Service/Method``) of every streaming method in ``emoney.*`` packages."""
    paths = {
        f"/{file.package}.{service.name}/{method.name}"
        for file in _descriptor_set(descriptor_path).file
        if file.package.startswith(SERVICE_PACKAGE_PREFIX)
        for service in file.service
        for method in service.method
        if method.server_streaming or method.client_streaming
    }
    return sorted(paths)
