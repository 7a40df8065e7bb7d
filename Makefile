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

.PHONY: demo test test-arm64 lint demo-deps test-deps

$(VENV): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	tools/headless-opencv.sh $(VENV)
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

# The named test subset on aarch64 in an emulated Debian arm64 root file system (root only; cached in
# /var/cache/menjin-arm64; see tools/arm64/test.sh and docs/performance.md).
test-arm64:
	tools/arm64/test.sh

lint: $(VENV)
	$(BIN)/ruff check daemon drivers vision station tests bench
	$(BIN)/mypy --strict drivers daemon
	$(BIN)/lint-imports
