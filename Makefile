# The two commands of the quick start: `make demo` and `make test`. Each first checks the
# system packages it needs (scripts/system-packages: installs them as root, else stops with
# the command to run), then creates the virtual environment in .venv and installs the
# project into it when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/demo.yaml
PYTEST_ARGS ?=
# the suite mostly waits on servers and timers: three workers, each with its own PostgreSQL and
# mosquitto (session fixtures), a module's tests kept on one worker
PYTEST_WORKERS ?= 3

.PHONY: demo test test-quick check clean messages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo:
	bash scripts/system-packages demo
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/facility demo --scenario $(SCENARIO)

test:
	bash scripts/system-packages test
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-quick:
	bash scripts/system-packages test
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff mypy
	$(BIN)/ruff check facility gateway ingest rules api simulators stack tests bench
	$(BIN)/mypy && $(BIN)/mypy --explicit-package-bases bench

# The message catalogues (api/locale/*/LC_MESSAGES/messages.po): pick up new strings of the
# templates (_()), the pages' scripts (t()) and api/vocabulary.py (N_()), keep the translations;
# then fill in the new msgstr lines (zh_CN: every string; en: the code words, state:..., etc.).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k t -k N_ --no-location --sort-output -w 100 -o api/locale/messages.pot .
	$(BIN)/pybabel update -i api/locale/messages.pot -d api/locale -w 100 --no-fuzzy-matching --ignore-obsolete

clean:
	rm -rf $(VENV) .facility .pytest_cache test-artifacts
