# The two commands: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)

DEMO_DB     ?= sqlite:///slotwise-demo.db
DEMO_KEY    ?= demo-operator-key
DEMO_PORT   ?= 8000
# Seals the webhook endpoints' signing secrets (config.py); a demo's own, never a production key.
DEMO_SECRET_KEY ?= demo-secret-key-for-webhook-signing-secrets

.PHONY: install demo test lint typecheck pytest postgres chromium screenshots lock clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: install
	SLOTWISE_DATABASE_URL=$${SLOTWISE_DATABASE_URL:-$(DEMO_DB)} \
	SLOTWISE_OPERATOR_KEY=$${SLOTWISE_OPERATOR_KEY:-$(DEMO_KEY)} \
	SLOTWISE_CLOCK=$${SLOTWISE_CLOCK:-simulated} \
	SLOTWISE_SECRET_KEY=$${SLOTWISE_SECRET_KEY:-$(DEMO_SECRET_KEY)} \
	sh -c '$(BIN)/slotwise migrate >/dev/null && $(BIN)/slotwise demo --port $(DEMO_PORT) && \
	       exec $(BIN)/slotwise serve --host 127.0.0.1 --port $(DEMO_PORT)'

postgres:
	scripts/ensure-postgres.sh

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy src

# The browser tests drive Debian's Chromium (Playwright's own download does not work here).
chromium:
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

screenshots: install chromium
	$(BIN)/python -m tests.web.screenshots

# The suite on two processes (pytest-xdist): each has its own test databases, and servers on free ports.
TEST_PROCESSES ?= 2
pytest: install postgres chromium wrk
	$(BIN)/pytest -q -n $(TEST_PROCESSES)

test: lint typecheck pytest

lock:
	$(BIN)/pip-compile -q --no-emit-index-url --no-emit-find-links --extra dev --strip-extras -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache slotwise-demo.db*

# The reliability campaign (docs/RELIABILITY.md): the same tests as `make test`, with hundreds of race
# trials, at least 50 SIGKILL trials per kind and database, 20 floods of 200 requests per database,
# and a longer schemathesis run.
RACE_TRIALS   ?= 100
CRASH_TRIALS  ?= 50
RECONCILE_TRIALS ?= 20
WEBHOOK_CRASH_TRIALS ?= 20
FLOOD_ROUNDS  ?= 20
FUZZ_EXAMPLES ?= 100
.PHONY: reliability
reliability: install postgres
	SLOTWISE_RACE_TRIALS=$(RACE_TRIALS) SLOTWISE_CRASH_TRIALS=$(CRASH_TRIALS) SLOTWISE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	SLOTWISE_FLOOD_ROUNDS=$(FLOOD_ROUNDS) SLOTWISE_RECONCILE_TRIALS=$(RECONCILE_TRIALS) \
	SLOTWISE_WEBHOOK_CRASH_TRIALS=$(WEBHOOK_CRASH_TRIALS) \
	$(BIN)/pytest -q -p no:cacheprovider tests/reliability

# SPEC §10 figures (docs/BENCHMARKS.md): slotwise's capacity check and add/remove path vs pgbench and raw sqlite3,
# then the request path over HTTP vs a bare FastAPI app on the same server (bench/http.py, load from wrk).
.PHONY: bench wrk
bench: install postgres wrk
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.sweep --orgs 100000 --workers 1,2
	$(BIN)/python -m bench.usage
	$(BIN)/python -m bench.webhooks

wrk:
	command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
