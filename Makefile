# Two commands: `make test` and `make demo`. Both set up everything they need.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Neural Amp Modeler's own models, the reference for the .nam import's tests (pyproject.toml's test extra)
NAM_PACKAGE := neural-amp-modeler==0.13.0
APT_PACKAGES := gcc qemu-user libc6-arm64-cross libstdc++6-arm64-cross libc6-armhf-cross binutils-arm-linux-gnueabihf \
                binutils-aarch64-linux-gnu gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf chromium openssh-server \
                g++ nodejs

.PHONY: test demo system-deps clean

# Debian packages: only when root (CI and fresh machines); otherwise say what is missing.
system-deps:
	@if [ "$$(id -u)" = 0 ]; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else \
	  for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo "warning: Debian package $$p is missing (run as root or apt-get install it)"; done; \
	fi

$(STAMP): pyproject.toml ide_extension/package-lock.json
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(NAM_PACKAGE)
	cd ide_extension && npm ci --no-audit --no-fund --silent
	touch $@

# one worker per core, each test file on one worker (its module fixtures built once)
test: system-deps $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile --durations=25

demo: system-deps $(STAMP)
	$(PY) -m service.demo

clean:
	rm -rf $(VENV) .pytest_cache
