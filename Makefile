# Two commands matter: `make demo` and `make test`. Each bootstraps .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck imports pytest venv browser bench clean web jstest

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	@touch $(STAMP)

venv: $(STAMP)

## The whole flow end to end on the embedded default (SQLite + DuckDB + local data dir).
demo: $(STAMP) web
	$(BIN)/pprl demo $(DEMO_ARGS)

## Lint, types, architecture contract, then the test suite (SQLite and PostgreSQL).
test: $(STAMP) browser web lint typecheck imports jstest pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy linkage service

imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -n 2 --timeout 900 $(PYTEST_ARGS)

## The browser partner page: npm packages from the registry (locked), built into service/partner/static.
WEB := partner-web
$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --silent

web: $(WEB)/node_modules/.package-lock.json
	cd $(WEB) && node build.mjs

## The page's JavaScript against the shared vectors (tests/vectors/normalisation.json).
jstest: web
	cd $(WEB) && npm test --silent

## Debian's chromium for the DPO-page browser test (never a Playwright browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: install Debian's chromium package (browser tests will fail)"; fi; }
	@test -f tests/browser/axe/node_modules/axe-core/axe.min.js || \
	  (cd tests/browser/axe && npm ci --no-audit --no-fund --silent)  # axe-core for the accessibility checks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_hash.py
	$(BIN)/python benchmarks/bench_upload.py
	$(BIN)/python benchmarks/bench_link.py
	$(BIN)/python benchmarks/bench_load.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .pprl-demo
