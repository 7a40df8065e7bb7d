# menjin. The README's two set-up commands are `make demo` and `make test`; each installs what it
# needs on a fresh Debian / Raspberry Pi OS machine (Debian packages via apt-get when run as root,
# otherwise the exact apt-get line is printed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# command:debian-package pairs
DEMO_DEPS := mosquitto:mosquitto socat:socat
TEST_DEPS := $(DEMO_DEPS) chromium:chromium chromedriver:chromium-driver
# Real face models and photos for tests and the demo: MENJIN_MODELS / MENJIN_FACES, by default the
# shared folders next to the repository when they exist.
export MENJIN_MODELS ?= $(abspath $(CURDIR)/../shared/models)
export MENJIN_FACES ?= $(abspath $(CURDIR)/../shared/faces)

.PHONY: demo test lint demo-deps test-deps

$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(VENV)

define apt_install
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else echo "menjin needs:$$missing. Run: sudo apt-get install -y$$missing"; exit 1; fi; \
	fi
endef

demo-deps:
	$(call apt_install,$(DEMO_DEPS))

test-deps:
	$(call apt_install,$(TEST_DEPS))

demo: $(VENV) demo-deps
	$(BIN)/menjin demo

test: $(VENV) test-deps
	$(BIN)/python -m pytest

lint: $(VENV)
	$(BIN)/ruff check menjin daemon drivers vision station protocol tests bench
	$(BIN)/mypy --strict menjin drivers daemon protocol
	$(BIN)/python -m pytest -q tests/test_architecture.py -k contracts
