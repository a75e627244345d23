# The two set-up commands: `make demo` and `make test`. Both create .venv and install first.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NATIVE := $(VENV)/.native
NATIVE_SRC := $(shell grep -v '^\#' native-modules.txt)

.PHONY: demo test lint bench clean chromium native pure

# Installed editable and pure; `native` then compiles the hot path in place.
$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@SEGUE_PURE=1 $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,embedded]'
	@touch $(STAMP)

# The hot path's modules (native-modules.txt) compiled with mypyc beside their sources, again
# whenever one of them changes; `make pure` removes them (the same behaviour, slower).
native: $(NATIVE)
$(NATIVE): $(STAMP) native-modules.txt $(NATIVE_SRC)
	@echo "compiling the hot path with mypyc (about a minute; log in $(VENV)/native.log)"
	@SEGUE_NATIVE=require $(BIN)/python setup.py -q build_ext --inplace >$(VENV)/native.log 2>&1 \
	  || { tail -30 $(VENV)/native.log; exit 1; }
	@touch $(NATIVE)

pure:
	@find segue flows operators models state -name '*.so' -delete
	@rm -f $(NATIVE)

demo: $(NATIVE)
	$(BIN)/segue demo

test: $(NATIVE) chromium
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

bench: $(NATIVE)
	@SEGUE_PURE=1 $(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,embedded,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	@find segue flows operators models state -name '*.so' -delete
