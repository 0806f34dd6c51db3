# Tianyuan: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export FLASK_APP := app
# Translation areas: catalogue directory and the sources it covers.
I18N_AREAS := core coop iot shop

.PHONY: demo test test-pg venv system-deps system-deps-test translations i18n-extract lint bench-quick clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

system-deps:
	@command -v mosquitto >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients; }

system-deps-test: system-deps
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk; }

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

test: venv system-deps-test translations lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The suite against PostgreSQL (installed and started on loopback by the script).
test-pg: venv system-deps-test translations
	bash .ci/with-postgres $(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-quick: venv system-deps
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) instance .pytest_cache
