# menjin. The README's two set-up commands are `make demo` and `make test`; each installs what it
# needs on a fresh Debian / Raspberry Pi OS machine (Debian packages via apt-get when run as root,
# otherwise the exact apt-get line is printed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# command:debian-package pairs
DEMO_DEPS := mosquitto:mosquitto socat:socat
# a pair may name a file instead of a command: the CJK font the page tests render Chinese with
TEST_DEPS := $(DEMO_DEPS) chromium:chromium chromedriver:chromium-driver \
	/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc:fonts-noto-cjk
# Real face models and photos for tests and the demo: MENJIN_MODELS / MENJIN_FACES, by default the
# shared folders next to the repository when they exist.
export MENJIN_MODELS ?= $(abspath $(CURDIR)/../shared/models)
export MENJIN_FACES ?= $(abspath $(CURDIR)/../shared/faces)

.PHONY: demo test test-arm64 lint demo-deps test-deps i18n

# The venv counts as built only once everything is installed: an interrupted pip leaves no stamp,
# so the next run installs again instead of taking the half-built folder for up to date.
INSTALLED := $(VENV)/.installed
$(VENV): $(INSTALLED)
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	tools/headless-opencv.sh $(VENV)
	touch $(INSTALLED)

define apt_install
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -e "$$cmd" ] || missing="$$missing $$pkg"; done; \
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
	$(BIN)/ruff check menjin daemon drivers vision station protocol yamlconfig tests bench
	$(BIN)/mypy --strict menjin drivers daemon protocol yamlconfig
	$(BIN)/python -m pytest -q tests/test_architecture.py -k contracts

# Re-extract the station page's messages and merge them into the Chinese catalog (then translate
# the new entries in station/i18n/zh_CN/LC_MESSAGES/messages.po; the page compiles it at start-up).
i18n: $(VENV)
	$(BIN)/pybabel extract -F station/i18n/babel.cfg --no-location -k _ -k gettext -k CommandError \
	  -o station/i18n/messages.pot .
	$(BIN)/pybabel update -i station/i18n/messages.pot -d station/i18n -l zh_CN \
	  --no-fuzzy-matching --no-wrap --ignore-pot-creation-date
	rm station/i18n/messages.pot
