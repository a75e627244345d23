# The two set-up commands: `make demo` and `make test`. Both create .venv and install first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean chromium

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,embedded]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/segue demo

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# Studio's browser tests drive Debian's chromium (browser downloads are not possible here and
# Playwright's own are never used); installed once, as root or through sudo.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (Studio's browser tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; \
	  command -v chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,embedded,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
