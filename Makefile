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

.PHONY: install run demo serve test test-sqlite test-postgres lint schema bench clean catalogs

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

run: $(STAMP) $(CATALOGS)
	@if [ ! -f .demo-token ]; then $(BIN)/portal demo | tail -n 1 > .demo-token; fi
	@echo "GraphiQL: http://$(HOST):$(PORT)/graphql   staff token: $$(cat .demo-token)"
	$(BIN)/portal serve --host $(HOST) --port $(PORT)

demo: $(STAMP)
	$(BIN)/portal demo

serve: $(STAMP) $(CATALOGS)
	$(BIN)/portal serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(CATALOGS) lint test-sqlite test-postgres

test-sqlite: $(STAMP) $(CATALOGS)
	env -u PORTAL_TEST_POSTGRES_URL $(BIN)/python -m pytest

test-postgres: $(STAMP) $(CATALOGS)
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

clean:
	rm -rf $(VENV) portal.sqlite3* mail-outbox .demo-token
