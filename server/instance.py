"""Identity of this server process (for GetServerInfo and logs)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata


def _version() -> str:
    try:
        return metadata.version("emoney")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass(frozen=True)
class ServerInstance:
    service_names: tuple[str, ...]
    version: str = field(default_factory=_version)
    instance_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
