# Tianyuan: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export FLASK_APP := app
# Translation areas: catalogue directory and the sources it covers.
I18N_AREAS := core coop iot shop
# What `make lock` resolves: every extra, for Python 3.11 on any platform.
LOCK_ARGS := pyproject.toml --extra test --extra postgres --universal --python-version 3.11 --generate-hashes
# The resolver behind the lock: pinned, so `make lock` is repeatable.
UV := uv==0.13.9

.PHONY: demo test test-fast test-pg test-lowest venv lock system-deps system-deps-test translations \
	i18n-extract lint bench-quick clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The exact versions of requirements.lock (hash-checked), then the project itself.
$(VENV)/.installed: requirements.lock pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# Developers: after changing dependencies in pyproject.toml (or to take newer releases),
# recompute the lock and commit both files.
lock: venv
	$(BIN)/pip install --quiet '$(UV)'
	$(BIN)/uv pip compile $(LOCK_ARGS) --upgrade --quiet -o requirements.lock

system-deps:
	@command -v mosquitto >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients; }

system-deps-test: system-deps
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; }
	@# zbarimg reads the QR codes of printed labels and certificates back; poppler measures their PDFs
	@command -v zbarimg >/dev/null && command -v pdftoppm >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zbar-tools poppler-utils; }

translations: venv
	@for area in $(I18N_AREAS); do \
	  dir=$$( [ $$area = core ] && echo translations || echo $$area/translations ); \
	  [ -d $$dir ] && $(BIN)/pybabel compile -f -d $$dir || true; \
	done

# Developers: refresh the .po files after adding strings, then translate the new entries.
i18n-extract: venv
	@for area in $(I18N_AREAS); do \
	  if [ $$area = core ]; then dir=translations; src="core app.py templates/base.html templates/macros.html templates/core"; \
	  else dir=$$area/translations; src="$$area templates/$$area"; [ $$area = shop ] && src="$$src templates/trace"; fi; \
	  mkdir -p $$dir; \
	  $(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -o $$dir/messages.pot $$src; \
	  if [ -f $$dir/zh_Hans_CN/LC_MESSAGES/messages.po ]; then $(BIN)/pybabel update -N -i $$dir/messages.pot -d $$dir -l zh_Hans_CN; \
	  else $(BIN)/pybabel init -i $$dir/messages.pot -d $$dir -l zh_Hans_CN; fi; \
	done

demo: venv system-deps translations
	$(BIN)/flask db upgrade
	$(BIN)/flask demo seed --if-empty
	$(BIN)/flask demo run

# Everything: lint, format, types, then the whole suite (browser and broker tests included).
test: venv system-deps-test translations lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Under a minute: no browser, no broker, no slow tests, few hypothesis examples.
test-fast: venv translations
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-fast} $(BIN)/pytest -q -n auto --dist loadgroup -m "not e2e and not mqtt and not slow" $(PYTEST_ARGS)

# The suite against PostgreSQL (installed and started on loopback by the script).
test-pg: venv system-deps-test translations
	bash .ci/with-postgres $(BIN)/pytest $(PYTEST_ARGS)

# The declared lower bounds are true: the suite (no browser) at the oldest versions pyproject.toml allows.
test-lowest: venv system-deps translations
	$(BIN)/pip install --quiet '$(UV)'
	rm -rf .venv-lowest && $(PYTHON) -m venv .venv-lowest
	$(BIN)/uv pip compile pyproject.toml --extra test --extra postgres --resolution lowest-direct \
	  --python-version 3.11 --quiet -o .venv-lowest/requirements.txt
	$(BIN)/uv pip install --quiet --python .venv-lowest/bin/python -r .venv-lowest/requirements.txt
	$(BIN)/uv pip install --quiet --python .venv-lowest/bin/python --no-deps -e .
	HYPOTHESIS_PROFILE=fast .venv-lowest/bin/python -m pytest -q -p no:cacheprovider -m "not e2e" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench-quick: venv system-deps
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .venv-lowest instance .pytest_cache .mypy_cache
