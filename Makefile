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

.PHONY: venv proto proto-check lint migrate run test bench clean-state rotate-signing-key help

help:
	@echo "make run | make test | make bench | make proto | make proto-check | make lint | make migrate | make clean-state"

$(INSTALLED): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

venv: $(INSTALLED)

proto: venv
	$(BIN)/python tools/generate_protos.py

proto-check: venv
	$(BIN)/python tools/generate_protos.py --check

lint: venv
	$(BIN)/buf lint

# Apply pending migrations as the schema owner (MIGRATION_DATABASE_URL). `make run` does this itself.
migrate: venv
	$(BIN)/python -m storage.migrate

run: venv
	$(BIN)/python -m localstack

test: venv lint proto-check
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
bench: venv
	$(BIN)/python -m tools.bench.run $(BENCH_ARGS)

# Forget the local stack's data (database, secrets, objects). Stop `make run` first.
clean-state:
	rm -rf .local
