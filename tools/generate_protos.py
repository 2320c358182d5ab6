"""Generate everything in `generated/` from `protos/` (run by `make proto`).

Writes Python messages, gRPC stubs, type stubs (.pyi), the descriptor set that
Envoy's gRPC-JSON transcoder loads, the OpenAPI document of the JSON face
built from it (openapi.json, tools/generate_openapi.py), and the back office's
TypeScript messages and service descriptors (ts/, protoc-gen-es from web/node_modules,
installed by `make web-deps`). With `--check`, generates into a temporary
folder and fails (exit 1) when the result differs from what is committed, which
is how CI catches a stale `generated/`.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc
import grpc_tools

try:
    from tools.generate_openapi import OPENAPI_NAME, write_openapi
except ImportError:  # run as `python tools/generate_protos.py`: tools/ is on sys.path
    from generate_openapi import OPENAPI_NAME, write_openapi

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
GENERATED = ROOT / "generated"
DESCRIPTOR_NAME = "emoney.binpb"
# google.rpc types travel inside error details; the transcoder must know them to
# render `grpc-status-details-bin` as JSON, so they go into the descriptor set.
EXTRA_DESCRIPTOR_FILES = ["google/rpc/error_details.proto", "google/rpc/status.proto"]
# The back office's TypeScript (Connect-ES v2: messages and service descriptors in one file per proto).
PROTOC_GEN_ES = ROOT / "web" / "node_modules" / ".bin" / "protoc-gen-es"
TYPESCRIPT_DIR = "ts"


def _proto_files() -> list[str]:
    return sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto"))


def _third_party_files() -> list[str]:
    return sorted(str(path.relative_to(THIRD_PARTY)) for path in THIRD_PARTY.rglob("*.proto"))


def _run_protoc(arguments: list[str]) -> None:
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    plugins = Path(sys.executable).parent
    command = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
        f"--plugin=protoc-gen-es={PROTOC_GEN_ES}",
        f"-I{PROTO_ROOT}", f"-I{THIRD_PARTY}", f"-I{well_known}", *arguments]
    if protoc.main(command) != 0:
        raise SystemExit(f"protoc failed: {' '.join(arguments)}")


def generate(output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    files = _proto_files()
    _run_protoc(
        [
            f"--python_out={output}",
            f"--grpc_python_out={output}",
            f"--mypy_out=quiet:{output}",
            f"--mypy_grpc_out=quiet:{output}",
            *files,
        ]
    )
    _run_protoc(
        [
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={output / DESCRIPTOR_NAME}",
            *files,
            *EXTRA_DESCRIPTOR_FILES,
        ]
    )
    write_openapi(output / DESCRIPTOR_NAME, output / OPENAPI_NAME)
    _generate_typescript(output / TYPESCRIPT_DIR, files)
    for package_dir in {path.parent for path in output.rglob("*_pb2.py")}:
        for directory in [package_dir, *package_dir.parents]:
            if directory == output or output not in directory.parents:
                break
            (directory / "__init__.py").touch()


def _generate_typescript(output: Path, files: list[str]) -> None:
    """Connect-ES messages and service descriptors for the contract and the google protos it uses
    (google.rpc error details are decoded by the back office; google.protobuf comes with @bufbuild/protobuf)."""
    if not PROTOC_GEN_ES.exists():
        raise SystemExit(f"{PROTOC_GEN_ES.relative_to(ROOT)} is missing: run `make web-deps` (npm ci in web/) first")
    output.mkdir(parents=True, exist_ok=True)
    _run_protoc([f"--es_out={output}", "--es_opt=target=ts", *files, *_third_party_files()])


def _differences(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in committed: {name}" for name in comparison.left_only]
    found += [f"missing from committed: {name}" for name in comparison.right_only]
    found += [f"differs: {name}" for name in comparison.diff_files]
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    found += [f"differs: {name}" for name in mismatch + errors if f"differs: {name}" not in found]
    for name in comparison.common_dirs:
        found += [f"{name}/{item}" for item in _differences(left / name, right / name)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated/ is stale")
    arguments = parser.parse_args()
    if not arguments.check:
        shutil.rmtree(GENERATED, ignore_errors=True)
        generate(GENERATED)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / "generated"
        generate(fresh)
        stale = _differences(GENERATED, fresh) if GENERATED.exists() else ["generated/ is missing"]
    if stale:
        print("generated/ is stale; run `make proto` and commit the result:", file=sys.stderr)
        for line in stale:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("generated/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
