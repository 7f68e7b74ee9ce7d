# Two entry points (see README): `make serve` installs only what serving needs (`pip install -e .`: no torch,
# ~370 MB) and serves the bundled model; `make test` installs everything (`.[all]`) and runs the whole suite.
# Both use .venv (creating it when missing). .ci/run calls `make test`.
PY ?= python3
VENV := .venv
SERVE_STAMP := $(VENV)/.installed-serve
STAMP := $(VENV)/.installed
PORT ?=

$(SERVE_STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[all]'
	touch $(STAMP) $(SERVE_STAMP)

.PHONY: install install-serve serve test lint audit security reliability load soak ui docker-check
install: $(STAMP)
install-serve: $(SERVE_STAMP)

# PORT=8001 make serve (or `make serve PORT=8001`) serves elsewhere; without PORT, SOUNDSCAPE_PORT or 8000.
serve: $(SERVE_STAMP)
	$(VENV)/bin/soundscape serve $(if $(PORT),--port $(PORT))

test: $(STAMP)
	$(VENV)/bin/ruff check .
	@# import rules ([tool.importlinter] in pyproject.toml): app without training/torch, soundscape without app,
	@# model_store without app/training/analyze/demo/audio I/O, training without app and without import cycles
	$(VENV)/bin/lint-imports
	@# dependency audit (~1 s): known vulnerabilities or yanked pins fail (exit 1); an unreachable index
	@# (exit 2) only warns, so network trouble cannot fail CI for reasons unrelated to the change.
	$(VENV)/bin/python scripts/audit_deps.py --extras dev,train,batch,ray || [ $$? -eq 2 ]
	@# the browser tests (tests/ui) drive Debian's chromium: installed here when missing (apt-get, as root);
	@# when it cannot be, they skip and say why
	-bash scripts/ensure_chromium.sh >/dev/null
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Dependency audit: pip-audit where PyPI's per-version JSON answers, otherwise the project-JSON fallback
# (scripts/audit_deps.py). `make test` runs it too, tolerating only an unreachable index (exit 2).
audit: $(STAMP)
	$(VENV)/bin/python scripts/audit_deps.py --extras dev,train,batch,ray

# Security lint (ruff's S rules, also part of `make test`) plus the dependency audit.
security: $(STAMP)
	$(VENV)/bin/ruff check --select S .
	$(MAKE) audit

# Fuzz, schemathesis, short load, reload under load, store faults, security tests (also in `make test`).
reliability: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests/reliability

# The full load run: writes bench/results/load.json and load.md.
load: $(STAMP)
	$(VENV)/bin/python bench/load.py --store model_store/default --concurrency 8 --duration 60 --seconds 60

# The soak run (30 minutes, mixed, slow, silent and disconnecting clients, two hot reloads): bench/results/soak.*
soak: $(STAMP)
	$(VENV)/bin/python bench/soak.py --minutes 30

# The web page in headless Chromium (tests/ui): screenshots and the draw time go to bench/results/ui/.
ui: $(STAMP)
	bash scripts/ensure_chromium.sh
	SOUNDSCAPE_UI_SCREENSHOTS=bench/results/ui $(VENV)/bin/python -m pytest -q tests/ui

# Builds the Dockerfile with podman (--isolation=chroot; a debootstrap stand-in for the FROM image when it
# cannot be pulled), runs the image's CMD as its USER in a chroot of the image (this sandbox cannot start
# containers) and checks /readyz, a prediction, the user, no torch and the size (scripts/docker_check.py).
DOCKER_CHECK_ARGS ?=
docker-check:
	$(PY) scripts/docker_check.py --report bench/results/docker_check.json $(DOCKER_CHECK_ARGS)
