# Two entry points (see README): `make serve` installs everything and serves the bundled model;
# `make test` runs the whole suite (creating .venv when missing). .ci/run calls `make test`.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[all]'
	touch $(STAMP)

.PHONY: install serve test lint audit
install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/soundscape serve

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

audit: $(STAMP)
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off
