# The two commands: `make run` and `make test`. Everything installs into ./.venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# GraphiQL's files, from the npm registry at the versions package-lock.json pins (the
# instance serves them itself: api/graphiql_page.py). Needs Node.js 18+ and npm.
GRAPHIQL := api/graphiql
GRAPHIQL_STAMP := $(GRAPHIQL)/node_modules/.installed
# The GraphQL-over-HTTP audit (graphql-http, the spec's reference implementation) that
# tests/api/test_graphql_http_audit.py runs against a live instance.
HTTP_AUDIT := tests/api/graphql_http_audit
HTTP_AUDIT_STAMP := $(HTTP_AUDIT)/node_modules/.installed

.PHONY: install run network test lint schema bench clean

install: $(STAMP) $(GRAPHIQL_STAMP) $(HTTP_AUDIT_STAMP)

# Each step says what it is doing in one line; the tools themselves stay quiet unless
# something goes wrong (their errors still show).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "Creating .venv with $(PYTHON)..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing Python packages into .venv (first run: a minute or two)..."
	@$(BIN)/python -m pip install -qq --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -qq --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

$(GRAPHIQL_STAMP): $(GRAPHIQL)/package.json $(GRAPHIQL)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed to install GraphiQL's files" \
		"from the npm registry: install Node.js, then run make install again." >&2; exit 1; }
	@echo "Installing GraphiQL's files from npm into $(GRAPHIQL)/node_modules..."
	@npm ci --prefix $(GRAPHIQL) --no-audit --no-fund --loglevel=error >/dev/null
	@touch $(GRAPHIQL_STAMP)

$(HTTP_AUDIT_STAMP): $(HTTP_AUDIT)/package.json $(HTTP_AUDIT)/package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed to install the" \
		"GraphQL-over-HTTP audit from the npm registry: install Node.js, then run make install again." >&2; exit 1; }
	@echo "Installing the GraphQL-over-HTTP audit (tests) from npm into $(HTTP_AUDIT)/node_modules..."
	@npm ci --prefix $(HTTP_AUDIT) --no-audit --no-fund --loglevel=error >/dev/null
	@touch $(HTTP_AUDIT_STAMP)

# `coopnet serve --dev` says what it starts, and on what address, before the slow steps.
run: install
	@$(BIN)/coopnet serve --dev

network: install
	$(BIN)/coopnet demo network

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

schema: install
	$(BIN)/coopnet schema export > schema.graphql

bench: install
	$(BIN)/python bench/cluster_page.py

clean:
	rm -rf var/
