# Two commands on a fresh machine:
#   make run    install everything, create demo data on first run, serve GraphiQL at /graphql
#   make test   install everything, run the whole suite (SQLite; PostgreSQL too when
#               PORTAL_TEST_POSTGRES_URL is set, as .ci/run does)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install clients run demo serve test test-sqlite test-postgres lint schema bench bench-pages clean catalogs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Message catalogs (SPEC 9.2): the .po files are committed, the .mo files built here.
CATALOGS := $(patsubst %.po,%.mo,$(wildcard mail/locale/*/LC_MESSAGES/messages.po))

%.mo: %.po $(STAMP)
	$(BIN)/pybabel compile -i $< -o $@

install: $(STAMP) $(CATALOGS)

# After editing a message: re-extract the ids and merge them into every catalog, then
# translate what pybabel marked new or fuzzy (tests/mail/test_catalogs.py fails until then).
catalogs: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --omit-header -o mail/locale/messages.pot .
	$(BIN)/pybabel update -i mail/locale/messages.pot -d mail/locale --width 100 --ignore-obsolete

# Links in mail point at this server's own stand-in page unless PORTAL_LINK_BASE_URL is set.
PORTAL_LINK_BASE_URL ?= http://localhost:$(PORT)/portal/activate
DATABASE_URL = $(or $(PORTAL_DATABASE_URL),sqlite://portal.sqlite3)

# .demo-token is the staff token of the demo in the database it was made for
# (.demo-token.db holds that database URL's SHA-256, never the URL: it may hold a password).
# It is made again when missing, empty, or made for another PORTAL_DATABASE_URL, and
# only kept when `portal demo` succeeded.
# tests/clients: the Node front-end tools (graphql-http, relay-compiler, Apollo Client,
# graphql-codegen, TypeScript) at the versions of the committed package-lock.json.
CLIENTS_STAMP := tests/clients/node_modules/.package-lock.json
$(CLIENTS_STAMP): tests/clients/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: apt-get install nodejs npm"; exit 1; }
	cd tests/clients && npm ci --no-audit --no-fund --loglevel=error
	touch $(CLIENTS_STAMP)

clients: $(CLIENTS_STAMP)

run: $(STAMP) $(CATALOGS)
	@db=$$(printf '%s' '$(DATABASE_URL)' | sha256sum | cut -c1-64); \
	if [ ! -s .demo-token ] || [ "$$(cat .demo-token.db 2>/dev/null)" != "$$db" ]; then \
		rm -f .demo-token .demo-token.db; umask 077; \
		echo "creating the demo practice in $(firstword $(subst :, ,$(DATABASE_URL))) ..."; \
		PORTAL_LINK_BASE_URL='$(PORTAL_LINK_BASE_URL)' $(BIN)/portal demo > .demo-output || { cat .demo-output; rm -f .demo-output; exit 1; }; \
		tail -n 1 .demo-output > .demo-token && rm -f .demo-output && echo "$$db" > .demo-token.db; \
	fi
	@echo "GraphiQL: http://$(HOST):$(PORT)/graphql   staff token: $$(cat .demo-token)"
	PORTAL_LINK_BASE_URL='$(PORTAL_LINK_BASE_URL)' $(BIN)/portal serve --host $(HOST) --port $(PORT)

demo: $(STAMP)
	$(BIN)/portal demo

serve: $(STAMP) $(CATALOGS)
	PORTAL_LINK_BASE_URL='$(PORTAL_LINK_BASE_URL)' $(BIN)/portal serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(CATALOGS) clients lint test-sqlite test-postgres

test-sqlite: $(STAMP) $(CATALOGS) $(CLIENTS_STAMP)
	env -u PORTAL_TEST_POSTGRES_URL $(BIN)/python -m pytest

test-postgres: $(STAMP) $(CATALOGS) $(CLIENTS_STAMP)
	@if [ -n "$$PORTAL_TEST_POSTGRES_URL" ]; then \
		$(BIN)/python -m pytest; \
	else echo "PORTAL_TEST_POSTGRES_URL not set: PostgreSQL pass skipped"; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core models mail onboarding graph portal_cli.py

schema: $(STAMP)
	$(BIN)/python -m graph.sdl > schema.graphql

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The Onboarding page by shape: service vs honest vs same-SQL reference (issue 15).
bench-pages: $(STAMP)
	$(BIN)/python -m bench.pages --postgres-url $${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/portal_bench}

clean:
	rm -rf $(VENV) portal.sqlite3* mail-outbox .demo-token .demo-token.db tests/clients/node_modules
