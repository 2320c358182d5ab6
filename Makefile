# e-Money platform. Two commands do everything on a fresh machine with Python 3.11 and make:
#   make run    create .venv, install, start the whole local stack, print where to connect
#   make test   the same set-up, then buf lint, the generated-code freshness check and pytest
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=
SOAK_ARGS ?=
# The back office (web/): npm packages pinned by web/package-lock.json, built with the machine's Node.js.
NPM ?= npm
WEB_DEPS := web/node_modules/.installed
WEB_DIST := web/dist/index.html
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/build.mjs web/tsconfig.json \
	$(shell find generated/ts -type f 2>/dev/null)

.PHONY: backup restore restore-drill acl venv proto proto-check lint migrate run test bench soak clean-state rotate-signing-key help web web-deps chromium

help:
	@echo "make run | make test | make bench | make soak | make web | make proto | make proto-check | make lint | make migrate | make clean-state"

$(INSTALLED): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(INSTALLED)

proto: venv web-deps
	$(BIN)/python tools/generate_protos.py

proto-check: venv web-deps
	$(BIN)/python tools/generate_protos.py --check

# npm packages of the back office (protoc-gen-es for `make proto`, esbuild, TypeScript), again only
# when package.json or the lock file changed.
$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

web-deps: $(WEB_DEPS)

# The back office: type-check, then bundle into web/dist/ (not committed), which Envoy serves at /.
$(WEB_DIST): $(WEB_DEPS) $(WEB_SOURCES)
	cd web && node_modules/.bin/tsc --noEmit -p . && node build.mjs

web: $(WEB_DIST)

# The browser tests drive Debian's Chromium (headless) with Playwright; no browser is downloaded.
chromium:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

# As root, PostgreSQL runs as the unprivileged `emoney` account; when the clone sits in a private folder
# (root's 0700 home, a `mktemp -d` folder), the stack gives that account alone access with ACL entries
# (setfacl, from Debian's `acl`). Installed here only when root and missing.
acl:
	@if [ "$$(id -u)" = 0 ] && ! command -v setfacl >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends acl; fi

lint: venv
	$(BIN)/buf lint

# Apply pending migrations as the schema owner (MIGRATION_DATABASE_URL). `make run` does this itself.
migrate: venv
	$(BIN)/python -m storage.migrate

run: venv web acl
	$(BIN)/python -m localstack

test: venv lint proto-check web chromium acl
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Make a new access-token signing key current (VAULT_ADDR / VAULT_TOKEN of the secrets store; without
# them, the local stack's OpenBao and token). Tokens signed with the previous key stay valid until they expire.
rotate-signing-key: venv
	@if [ -z "$${VAULT_TOKEN:-}" ] && [ -f .local/data/openbao-app-token.json ]; then \
	  export VAULT_ADDR="http://127.0.0.1:$${EMONEY_OPENBAO_PORT:-58200}"; \
	  export VAULT_TOKEN="$$($(BIN)/python -c 'import json; print(json.load(open(".local/data/openbao-app-token.json"))["token"])')"; \
	fi; $(BIN)/python -m server.keys_cli rotate

# Load test with k6 on its own throw-away stack: table, JSON and PNG chart in test-artifacts/bench/.
# BENCH_ARGS="--duration-s 10" for a shorter run; --smoke is what the test suite runs.
bench: venv acl
	$(BIN)/python -m tools.bench.run $(BENCH_ARGS)

# The bank workload under faults on its own throw-away stack (kill -9 a server, restart and crash
# PostgreSQL, stop Redis, OpenBao, S3), then the money invariants; figures and a JSON report in
# test-artifacts/faults/. SOAK_ARGS="--duration-s 600" for longer; `make test` runs a short one.
soak: venv acl
	$(BIN)/python -m tools.faults --duration-s 300 $(SOAK_ARGS)

# Backups of `make run`'s database (localstack/backup.py; the stack must be running). `make run` itself
# archives WAL continuously and takes a full backup daily and an incremental one every 6 hours.
# `make restore` restores the latest backup, or the instant TO="2026-12-05 16:00:00+00", into a new
# folder under .local/restores/ and keeps it running until Ctrl-C; the live database is never touched.
TO ?=
backup: venv
	$(BIN)/python -m localstack.backup take

restore: venv
	$(BIN)/python -m localstack.backup restore $(if $(TO),--to "$(TO)")

restore-drill: venv
	$(BIN)/python -m localstack.backup drill

# Forget the local stack's data (database, secrets, objects). Stop `make run` first.
clean-state:
	rm -rf .local
